"""Evaluation metrics for retrieval and classification (pure numpy, no I/O)."""

from eofusion.evaluation.classification import (
    PerClassScores,
    balanced_accuracy,
    confusion_matrix,
    overall_accuracy,
    precision_recall_f1,
)
from eofusion.evaluation.retrieval import (
    average_precision,
    mean_average_precision,
    precision_at_k,
    recall_at_k,
    recall_at_k_with_ties,
    relevance_mask,
)

__all__ = [
    "PerClassScores",
    "average_precision",
    "balanced_accuracy",
    "confusion_matrix",
    "mean_average_precision",
    "overall_accuracy",
    "precision_at_k",
    "precision_recall_f1",
    "recall_at_k",
    "recall_at_k_with_ties",
    "relevance_mask",
]
