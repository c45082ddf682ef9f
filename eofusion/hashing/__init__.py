"""Deep hashing of patch descriptors (MiLAN-style metric learning) and Hamming search (torch + numpy, no DB)."""

from eofusion.hashing.codes import (
    Metric,
    bits_from_outputs,
    bits_to_signs,
    bits_to_text,
    hamming_distances,
    hamming_search,
    pack_bits,
    pairwise_distances,
    rerank,
    text_to_bits,
    unpack_bits,
)
from eofusion.hashing.losses import Labels, Mining, cross_triplet_loss, label_matrix, triplet_loss
from eofusion.hashing.model import (
    DeepHasher,
    HashingConfig,
    HashingNet,
    ProgressCallback,
    TrainingHistory,
    train_hashing,
)

__all__ = [
    "DeepHasher",
    "HashingConfig",
    "HashingNet",
    "Labels",
    "Metric",
    "Mining",
    "ProgressCallback",
    "TrainingHistory",
    "bits_from_outputs",
    "bits_to_signs",
    "bits_to_text",
    "cross_triplet_loss",
    "hamming_distances",
    "hamming_search",
    "label_matrix",
    "pack_bits",
    "pairwise_distances",
    "rerank",
    "text_to_bits",
    "train_hashing",
    "triplet_loss",
    "unpack_bits",
]
