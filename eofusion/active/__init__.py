"""Active learning core (pure numpy / scikit-learn): relevance-feedback rounds, cascaded pools,
oracle-driven validation and label cleaning.

    from eofusion.active import RoundConfig, prepare_pool, run_round

    pool = prepare_pool(descriptors, RoundConfig())      # once: Hellinger map of the whole pool
    result = run_round(pool, positives=[3, 17], negatives=[5], config=RoundConfig())
    result.top_indices, result.query_indices             # what to show, what to ask next
"""

from eofusion.active.cascade import accepted_from_scores, cascade_pools, restrict_fine_pool, to_local_indices
from eofusion.active.cleaning import SuspectLabel, find_suspect_labels, neighbour_disagreement
from eofusion.active.oracle import (
    METRICS,
    OracleConfig,
    OracleReport,
    compare_descriptors,
    evaluate_predictions,
    format_table,
    plot_accuracy,
    simulate,
    simulate_class,
    stratified_folds,
    write_json_report,
)
from eofusion.active.round import (
    KERNELS,
    FeatureMap,
    Kernel,
    LinearModel,
    Model,
    NearestPositiveModel,
    PreparedPool,
    RbfModel,
    RoundConfig,
    RoundMetrics,
    RoundResult,
    calibrate_threshold,
    feature_map_for,
    fit_model,
    prepare_pool,
    run_round,
    score_pool,
    select_diverse,
)
from eofusion.active.seeding import COLD_STARTS, ColdStart, cold_start_queries, kmeans_seeds

__all__ = [
    "COLD_STARTS",
    "KERNELS",
    "METRICS",
    "ColdStart",
    "FeatureMap",
    "Kernel",
    "LinearModel",
    "Model",
    "NearestPositiveModel",
    "OracleConfig",
    "OracleReport",
    "PreparedPool",
    "RbfModel",
    "RoundConfig",
    "RoundMetrics",
    "RoundResult",
    "SuspectLabel",
    "accepted_from_scores",
    "calibrate_threshold",
    "cascade_pools",
    "cold_start_queries",
    "compare_descriptors",
    "evaluate_predictions",
    "feature_map_for",
    "find_suspect_labels",
    "fit_model",
    "kmeans_seeds",
    "format_table",
    "neighbour_disagreement",
    "plot_accuracy",
    "prepare_pool",
    "restrict_fine_pool",
    "run_round",
    "score_pool",
    "select_diverse",
    "simulate",
    "simulate_class",
    "stratified_folds",
    "to_local_indices",
    "write_json_report",
]
