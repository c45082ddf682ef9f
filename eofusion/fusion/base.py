"""Typed plug-in model for late (rank-level) fusion of per-modality result lists.

The design follows titiler's ``titiler.core.algorithm.base``: a fuser is a pydantic model whose
fields are its parameters (validated, JSON-schema documented) with class-level metadata
(``name``, ``title``, ``description``) and a single ``__call__``. Fusers are looked up by name in a
:class:`Fusers` registry; the module-level :data:`fusers` holds the built-in ones (registered when
:mod:`eofusion.fusion` is imported) and any plug-in registered with ``@fusers.register``.

Everything here is pure: numpy in, numpy out, no I/O.

Conventions shared by all built-in fusers:

* Ranks are 1-based (rank 1 is the best item of a list) and follow the scores: items with equal
  scores in a list share a rank, the best of their positions (competition ranking, "1224"). A
  modality that cannot tell items apart (every post at the same gazetteer place, retweets with
  the same text) then casts the same vote for them, instead of whatever order its query engine
  happened to return them in.
* Scores of a :class:`RankedList` are "higher is better" and given best first; a modality that
  produces distances must negate them.
* Input lists are put in a canonical order (sorted by modality name) and per-item contributions
  are summed in sorted order, so the result does not depend on the order of the input lists,
  bit for bit.
* Ties in the fused score are broken by the item's best position in any list, then by item id,
  so the output is deterministic and fusing a single list returns exactly that list.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

__all__ = [
    "Candidates",
    "FusedRanking",
    "Fuser",
    "FuserMetadata",
    "Fusers",
    "RankedList",
    "ScoreFuser",
    "UnknownFuserError",
    "competition_ranks",
    "fusers",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False, init=False)
class RankedList:
    """The result list of one modality, best first.

    Attributes:
        modality: Name of the modality (e.g. ``"visual"``, ``"social"``); unique within one fusion.
        ids: Item ids, best first, without duplicates.
        scores: Similarity of each item (higher is better), non-increasing, same length as ``ids``.

    Raises:
        TypeError: If ``ids`` is a plain string or contains non-string ids.
        ValueError: On duplicate ids, a length mismatch, non-finite or increasing scores.
    """

    modality: str
    ids: tuple[str, ...]
    scores: FloatArray

    def __init__(self, modality: str, ids: Sequence[str], scores: npt.ArrayLike) -> None:
        """Validate and store the list; ``scores`` may be any array-like of floats.

        Args:
            modality: Name of the modality.
            ids: Item ids, best first.
            scores: Scores aligned with ``ids``, higher is better, non-increasing.
        """
        if isinstance(ids, str):
            # A bare string is a Sequence[str] of characters: almost certainly a caller bug.
            raise TypeError("ids must be a sequence of item ids, not a single string")
        ids_t = tuple(ids)
        if not all(isinstance(i, str) for i in ids_t):
            raise TypeError(f"item ids of modality {modality!r} must all be str")
        if len(set(ids_t)) != len(ids_t):
            raise ValueError(f"duplicate item ids in the list of modality {modality!r}")
        arr = np.array(scores, dtype=np.float64).reshape(-1)
        if arr.shape[0] != len(ids_t):
            raise ValueError(f"modality {modality!r}: {len(ids_t)} ids but {arr.shape[0]} scores")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"modality {modality!r}: scores must be finite")
        if np.any(np.diff(arr) > 0):
            raise ValueError(
                f"modality {modality!r}: scores must be non-increasing (best first); "
                "negate distances before building a RankedList"
            )
        arr.setflags(write=False)  # the dataclass is frozen; keep its array frozen too
        # Frozen dataclass: fields can only be set through object.__setattr__.
        object.__setattr__(self, "modality", modality)
        object.__setattr__(self, "ids", ids_t)
        object.__setattr__(self, "scores", arr)

    @classmethod
    def from_ids(cls, modality: str, ids: Sequence[str]) -> RankedList:
        """Build a list from ids only, for modalities that return an order without scores.

        The synthetic scores decrease linearly (``n, n-1, ..., 1``), so score-based fusers see
        evenly spaced scores after min-max normalisation.

        Args:
            modality: Name of the modality.
            ids: Item ids, best first.

        Returns:
            The ranked list.
        """
        n = len(ids)
        return cls(modality, ids, np.arange(n, 0, -1, dtype=np.float64))

    def __len__(self) -> int:
        """Number of items in the list."""
        return len(self.ids)


@dataclass(frozen=True, eq=False)
class FusedRanking:
    """The fused result, best first.

    Attributes:
        ids: Item ids, best first.
        scores: Fused score of each item (higher is better, non-increasing).
        modalities: Modality names, in the (sorted) order of the columns of ``rank_matrix``.
        rank_matrix: ``(len(ids), len(modalities))`` 1-based rank of each item in each modality
            (tied scores share the best rank), ``0`` where the item is absent from that list.
        fuser: Name of the fuser that produced the ranking.
    """

    ids: tuple[str, ...]
    scores: FloatArray
    modalities: tuple[str, ...]
    rank_matrix: IntArray
    fuser: str = ""

    def __len__(self) -> int:
        """Number of fused items."""
        return len(self.ids)

    @property
    def ranks(self) -> tuple[dict[str, int], ...]:
        """Per item, ``{modality: rank}`` for the modalities whose list contains it."""
        return tuple(
            {m: int(r) for m, r in zip(self.modalities, row, strict=True) if r > 0} for row in self.rank_matrix
        )

    def rank_of(self, item_id: str, modality: str) -> int | None:
        """Rank of one fused item in one modality.

        Args:
            item_id: Id of an item of this ranking.
            modality: Name of a modality of this ranking.

        Returns:
            The 1-based rank, or None if the item is not in that modality's list.

        Raises:
            KeyError: If the item or the modality is not part of this ranking.
        """
        try:
            row = self.ids.index(item_id)
        except ValueError:
            raise KeyError(f"item {item_id!r} is not in this ranking") from None
        try:
            col = self.modalities.index(modality)
        except ValueError:
            raise KeyError(f"modality {modality!r} is not in this ranking") from None
        rank = int(self.rank_matrix[row, col])
        return rank if rank > 0 else None

    def to_records(self) -> list[dict[str, Any]]:
        """JSON-friendly rows ``{"id", "score", "ranks"}``, best first."""
        return [
            {"id": i, "score": float(s), "ranks": r} for i, s, r in zip(self.ids, self.scores, self.ranks, strict=True)
        ]


@dataclass(frozen=True, eq=False)
class Candidates:
    """All items of the input lists with their per-modality ranks and scores (the sparse tensor).

    Each row is one item's rank vector, i.e. the coordinates of its single non-zero entry in the
    M-order binary tensor of the tensor-based fusion; no dense tensor is ever built.

    Attributes:
        ids: Unique item ids, sorted (the row index therefore is also the id tie-break order).
        modalities: Modality names, sorted.
        ranks: ``(n, M)`` 1-based ranks, ``0`` where absent; items with equal scores in a list
            share the best of their positions.
        scores: ``(n, M)`` original scores, NaN where absent.
        lengths: ``(M,)`` length of each list.
        positions: ``(n, M)`` 1-based positions in each list as given, ``0`` where absent; equal
            to ``ranks`` where a list has no tied scores. Used only to break fused ties.
    """

    ids: npt.NDArray[np.str_]
    modalities: tuple[str, ...]
    ranks: IntArray
    scores: FloatArray
    lengths: IntArray
    positions: IntArray

    @property
    def present(self) -> npt.NDArray[np.bool_]:
        """``(n, M)`` mask of the items present in each list."""
        return self.ranks > 0

    @classmethod
    def from_lists(cls, lists: Sequence[RankedList]) -> Candidates:
        """Gather the union of the lists, vectorised.

        Args:
            lists: One ranked list per modality, in any order.

        Returns:
            The candidates, with modalities in sorted order.

        Raises:
            ValueError: If two lists have the same modality name.
        """
        ordered = sorted(lists, key=lambda rl: rl.modality)
        modalities = tuple(rl.modality for rl in ordered)
        if len(set(modalities)) != len(modalities):
            raise ValueError(f"duplicate modality names: {sorted(modalities)}")
        n_mod = len(ordered)
        lengths = np.array([len(rl) for rl in ordered], dtype=np.int64)
        flat_ids = np.concatenate([np.asarray(rl.ids, dtype=np.str_) for rl in ordered] or [np.empty(0, dtype=np.str_)])
        flat_scores = np.concatenate([rl.scores for rl in ordered] or [np.empty(0, dtype=np.float64)])
        # np.unique sorts, which gives the id order used for deterministic tie-breaking.
        ids, row = np.unique(flat_ids, return_inverse=True)
        col = np.repeat(np.arange(n_mod), lengths)
        pos = np.concatenate([np.arange(1, n + 1) for n in lengths] or [np.empty(0, np.int64)])
        tied = np.concatenate([competition_ranks(rl.scores) for rl in ordered] or [np.empty(0, np.int64)])
        positions = np.zeros((ids.shape[0], n_mod), dtype=np.int64)
        positions[row, col] = pos
        ranks = np.zeros((ids.shape[0], n_mod), dtype=np.int64)
        ranks[row, col] = tied
        scores = np.full((ids.shape[0], n_mod), np.nan, dtype=np.float64)
        scores[row, col] = flat_scores
        return cls(ids=ids, modalities=modalities, ranks=ranks, scores=scores, lengths=lengths,
                   positions=positions)


def competition_ranks(scores: FloatArray) -> IntArray:
    """1-based ranks of non-increasing scores, equal scores sharing the best rank ("1224").

    Args:
        scores: Scores, best first (non-increasing).

    Returns:
        ``1 +`` the number of strictly better scores, for every entry.
    """
    negated = -np.asarray(scores, dtype=np.float64)  # non-decreasing, so searchsorted applies
    return np.searchsorted(negated, negated, side="left").astype(np.int64) + 1


class FuserMetadata(BaseModel):
    """Description of a fuser, e.g. for a ``/fusers`` listing endpoint."""

    name: str
    title: str
    description: str = ""
    parameters: dict[str, Any] = {}


class Fuser(BaseModel, abc.ABC):
    """Base class of rank fusers.

    Subclasses declare their parameters as pydantic fields and set the class-level metadata.
    Instances are immutable and reject unknown parameters.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str] = ""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @abc.abstractmethod
    def __call__(self, lists: Sequence[RankedList], k: int) -> FusedRanking:
        """Fuse per-modality lists into one ranking.

        Args:
            lists: One ranked list per modality (any order; modality names unique).
            k: Maximum number of fused items to return (at least 1).

        Returns:
            The top-``k`` fused items.
        """

    @classmethod
    def metadata(cls) -> FuserMetadata:
        """Name, title, description and parameter JSON schema of this fuser."""
        schema = cls.model_json_schema()
        return FuserMetadata(
            name=cls.name,
            title=cls.title,
            description=cls.description,
            parameters=schema.get("properties", {}),
        )


class ScoreFuser(Fuser):
    """A fuser defined by a per-item score computed from the :class:`Candidates`.

    Implements ``__call__`` once (validation, canonical order, tie-breaking, truncation), so a
    subclass only writes :meth:`score`.
    """

    @abc.abstractmethod
    def score(self, candidates: Candidates) -> FloatArray:
        """Fused score of every candidate.

        Args:
            candidates: The union of the input lists (non-empty, at least one modality).

        Returns:
            ``(n,)`` scores, higher is better, aligned with ``candidates.ids``.
        """

    def __call__(self, lists: Sequence[RankedList], k: int) -> FusedRanking:
        """Fuse the lists and return the top-``k`` items (see :meth:`Fuser.__call__`)."""
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        cand = Candidates.from_lists(lists)
        n = cand.ids.shape[0]
        if n == 0:
            return FusedRanking(
                ids=(),
                scores=np.empty(0, dtype=np.float64),
                modalities=cand.modalities,
                rank_matrix=np.empty((0, len(cand.modalities)), dtype=np.int64),
                fuser=self.name,
            )
        scores = np.asarray(self.score(cand), dtype=np.float64)
        # Items absent everywhere cannot occur (every candidate comes from some list), so the
        # sentinel only has to exceed every real position.
        best_position = np.where(cand.present, cand.positions, np.iinfo(np.int64).max).min(axis=1)
        # lexsort: last key is primary -> score desc, then best position asc, then id (row) asc.
        order = np.lexsort((np.arange(n), best_position, -scores))[:k]
        return FusedRanking(
            ids=tuple(str(i) for i in cand.ids[order]),
            scores=scores[order],
            modalities=cand.modalities,
            rank_matrix=cand.ranks[order],
            fuser=self.name,
        )


class UnknownFuserError(KeyError):
    """Raised when a fuser name is not registered."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        """Keep the requested name and the known names for the message."""
        self.name = name
        self.known = sorted(known)
        super().__init__(name)

    def __str__(self) -> str:
        """Human-readable message (KeyError would otherwise print only the repr of the key)."""
        return f"unknown fuser {self.name!r}; known fusers: {', '.join(self.known) or '(none)'}"


F = TypeVar("F", bound=type[Fuser])


class Fusers:
    """Registry of fuser classes by name.

    Args:
        initial: Fuser classes to register at creation.
    """

    def __init__(self, initial: Iterable[type[Fuser]] = ()) -> None:
        """Create a registry, optionally pre-filled."""
        self._data: dict[str, type[Fuser]] = {}
        for fuser in initial:
            self.register(fuser)

    def register(self, fuser: F, *, overwrite: bool = False) -> F:
        """Register a fuser class under its ``name``; usable as a class decorator.

        Args:
            fuser: A concrete :class:`Fuser` subclass with a ``name``.
            overwrite: Replace an existing fuser of the same name instead of failing.

        Returns:
            The class itself, unchanged.

        Raises:
            TypeError: If ``fuser`` is not a concrete Fuser subclass.
            ValueError: If the name is missing, or already registered and ``overwrite`` is False.
        """
        if not (isinstance(fuser, type) and issubclass(fuser, Fuser)):
            raise TypeError(f"{fuser!r} is not a Fuser subclass")
        if getattr(fuser, "__abstractmethods__", None):
            raise TypeError(f"{fuser.__name__} is abstract and cannot be registered")
        name = getattr(fuser, "name", "")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{fuser.__name__} has no name")
        if name in self._data and not overwrite:
            raise ValueError(f"a fuser named {name!r} is already registered; use overwrite=True")
        self._data[name] = fuser
        return fuser

    def get(self, name: str) -> type[Fuser]:
        """Fuser class registered under ``name``.

        Args:
            name: Registered fuser name.

        Returns:
            The fuser class.

        Raises:
            UnknownFuserError: If the name is not registered (the message lists the known names).
        """
        try:
            return self._data[name]
        except KeyError:
            raise UnknownFuserError(name, self._data) from None

    def create(self, name: str, **params: Any) -> Fuser:
        """Instantiate the fuser ``name`` with ``params``.

        Args:
            name: Registered fuser name.
            **params: Fuser parameters (validated by pydantic).

        Returns:
            The fuser instance.

        Raises:
            UnknownFuserError: If the name is not registered.
            pydantic.ValidationError: If the parameters are invalid or unknown.
        """
        return self.get(name)(**params)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._data)

    def metadata(self) -> list[FuserMetadata]:
        """Metadata of every registered fuser, sorted by name."""
        return [self._data[n].metadata() for n in self.names()]

    def __getitem__(self, name: str) -> type[Fuser]:
        """Same as :meth:`get`."""
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` is registered."""
        return name in self._data

    def __iter__(self) -> Iterator[str]:
        """Iterate over the registered names, sorted."""
        return iter(self.names())

    def __len__(self) -> int:
        """Number of registered fusers."""
        return len(self._data)


fusers = Fusers()
"""The default registry; built-in fusers register themselves here on import."""
