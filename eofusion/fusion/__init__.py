"""Late fusion of per-modality ranked lists (pure numpy, no I/O).

Importing this package registers the built-in fusers in :data:`fusers`::

    from eofusion.fusion import RankedList, fusers

    fuser = fusers.create("tensor")
    ranking = fuser([RankedList("visual", ids, scores), RankedList("social", ids2, s2)], k=20)
"""

from eofusion.fusion.base import (
    Candidates,
    FusedRanking,
    Fuser,
    FuserMetadata,
    Fusers,
    RankedList,
    ScoreFuser,
    UnknownFuserError,
    competition_ranks,
    fusers,
)
from eofusion.fusion.baselines import CombMNZFuser, CombSUMFuser, RRFFuser
from eofusion.fusion.tensor import TensorFuser

__all__ = [
    "Candidates",
    "CombMNZFuser",
    "CombSUMFuser",
    "FusedRanking",
    "Fuser",
    "FuserMetadata",
    "Fusers",
    "RRFFuser",
    "RankedList",
    "ScoreFuser",
    "TensorFuser",
    "UnknownFuserError",
    "competition_ranks",
    "fusers",
]
