"""One relevance-feedback round: fit an SVM on the user's labels, rank the pool, pick queries.

The pool is a ``(n, d)`` float32 descriptor matrix (rows are patches). A round

1. fits a binary SVM on the labelled rows (positives vs negatives, ``class_weight="balanced"``
   because a user labels a handful of relevant patches among many irrelevant ones);
2. scores every row of the pool with the fitted model, vectorised and chunked;
3. returns the ``n_top`` best-scored patches and a *query batch*: ``n_queries`` unlabelled patches
   near the decision boundary (the ones whose label teaches the model most) that are also
   mutually far apart, so one round never asks about ten copies of the same field.

Kernels (``RoundConfig.kernel``):

* ``"hellinger"`` (default): the square root of each histogram bin, then a *linear* SVM. The
  linear kernel on ``sqrt(x)`` is the Hellinger (Bhattacharyya) kernel ``sum_i sqrt(x_i y_i)``,
  a proper similarity for histograms that damps the dominance of large bins; because the map is
  explicit, the model is one weight vector and scoring a 340k pool is one matrix-vector product.
  Descriptors that sum to 1 map to unit vectors.
* ``"chi2"``: scikit-learn's ``AdditiveChi2Sampler`` (approximate explicit map of the additive
  chi-square kernel ``sum_i 2 x_i y_i / (x_i + y_i)``) then a linear SVM; also linear at scoring
  time, but the mapped vectors are ``2 * sample_steps - 1`` times longer.
* ``"linear"``: a linear SVM on the raw descriptor.
* ``"rbf"``: a Gaussian-kernel SVM on the raw descriptor; scored with chunked float32 kernel
  blocks (``exp(-gamma |x - sv|^2) @ dual_coef``), not per item.

When there is no negative yet (the first round of a session, after the user picked a few example
patches) no SVM can be trained: the pool is ranked by distance to the nearest positive in the
feature-mapped space (the Hellinger distance for the default kernel) and the queries are spread
among the nearest neighbours, which typically returns both new positives and the first hard
negatives.

Feature maps are row-wise, so a pool can be mapped once (:func:`prepare_pool`, e.g. at ingest)
and every later round is just fit + one product; a raw matrix is also accepted and then mapped
chunk by chunk on the fly.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.kernel_approximation import AdditiveChi2Sampler
from sklearn.svm import SVC

__all__ = [
    "KERNELS",
    "FeatureMap",
    "Kernel",
    "LinearModel",
    "Model",
    "NearestPositiveModel",
    "PreparedPool",
    "RbfModel",
    "RoundConfig",
    "RoundMetrics",
    "RoundResult",
    "THRESHOLDS",
    "Threshold",
    "calibrate_threshold",
    "feature_map_for",
    "fit_model",
    "model_from_bytes",
    "model_to_bytes",
    "prepare_pool",
    "run_round",
    "score_pool",
    "select_diverse",
]

Kernel = Literal["linear", "rbf", "hellinger", "chi2"]
KERNELS: tuple[Kernel, ...] = ("linear", "rbf", "hellinger", "chi2")
Threshold = Literal["zero", "cv"]
THRESHOLDS: tuple[Threshold, ...] = ("zero", "cv")
MapKind = Literal["identity", "sqrt", "chi2"]

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundConfig:
    """Parameters of one relevance-feedback round.

    The defaults are chosen for non-negative histogram descriptors that sum to 1 (the
    ``spectral``, ``wld`` and ``fused`` descriptors of :mod:`eofusion.features`); see
    ``bench/results_active_learning.md`` for the measurements behind them.

    Attributes:
        kernel: ``"hellinger"`` (default), ``"chi2"``, ``"linear"`` or ``"rbf"`` (see module doc).
        C: SVM soft-margin penalty. With the Hellinger map every descriptor is a unit vector, so
            the scale of ``C`` does not depend on the descriptor; ``C = 10`` is close to a hard
            margin (labels given by a user are trusted) while still tolerating a few mistakes.
            In the EuroSAT oracle the balanced accuracy after 40 labels varies by less than 0.01
            for ``C`` in ``[3, 100]`` (F1 rises slowly with ``C``) and drops by 0.02 at ``C = 1``.
        class_weight: ``"balanced"`` (default) reweights the classes by inverse frequency;
            ``None`` for equal weights.
        gamma: RBF width, ``"scale"`` (scikit-learn's ``1 / (d * var(X))`` on the labelled rows)
            or a number. Only used by ``kernel="rbf"``.
        chi2_sample_steps: ``sample_steps`` of ``AdditiveChi2Sampler`` (mapped dimension
            ``d * (2 * steps - 1)``). Only used by ``kernel="chi2"``.
        n_top: Number of top-ranked patches returned.
        n_queries: Size of the query batch.
        candidate_factor: The query batch is picked by greedy max-min distance among the
            ``candidate_factor * n_queries`` unlabelled patches closest to the boundary: large
            enough to contain several distinct regions, small enough to stay uncertain (5 is the
            low end of the usual 5-10x; on the 216-patch EuroSAT sample 10x, half the pool, costs
            0.006 of balanced accuracy, 1x-5x are equal within noise).
        include_labelled_in_top: Whether already labelled patches may appear in the top list (off:
            the user is shown patches he has not judged yet).
        seed: Seed of the SVM solver's random state (libsvm only uses it for probability
            estimates, which are off, so rounds are deterministic); kept for reproducibility.
        chunk_rows: Rows scored per block: bounds the temporaries of the feature map and of the
            RBF kernel block (``chunk_rows * n_support`` floats).
        threshold: Where the decision of a linear model lies. ``"zero"``: the SVM's own (decision > 0).
            ``"cv"``: calibrated inside the marks (:func:`calibrate_threshold`: cross-validated decision
            values of the labelled items only, the threshold that maximises their balanced accuracy);
            the shift is folded into the model's bias, so "predicted positive" stays ``score > 0``
            everywhere (rounds, accept-annotations, apply-model) and the model records it
            (``LinearModel.threshold_shift``).
        threshold_folds: Folds of that cross-validation (fewer when a class has fewer marks).
        cold_start: The queries of a round without negatives (positives only, a session's first):
            ``"nearest"`` (the unlabelled items nearest any positive, spread), ``"mean"`` (nearest the
            positives' mean, spread) or ``"kmeans"`` (one per k-means cluster of the pool: diverse first
            marks); see :mod:`eofusion.active.seeding` and the measurements in ``bench/RESULTS.md``.
        cold_start_sample: Unlabelled items the ``"kmeans"`` cold start clusters at most (a seeded draw).
    """

    kernel: Kernel = "hellinger"
    C: float = 10.0
    class_weight: Literal["balanced"] | None = "balanced"
    gamma: float | Literal["scale"] = "scale"
    chi2_sample_steps: int = 2
    n_top: int = 100
    n_queries: int = 10
    candidate_factor: int = 5
    include_labelled_in_top: bool = False
    seed: int = 0
    chunk_rows: int = 32768
    threshold: Threshold = "zero"
    threshold_folds: int = 5
    cold_start: Literal["nearest", "mean", "kmeans"] = "nearest"
    cold_start_sample: int = 20000

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"unknown kernel {self.kernel!r}; expected one of {', '.join(KERNELS)}")
        if not self.C > 0:
            raise ValueError(f"C must be > 0, got {self.C}")
        if self.class_weight not in ("balanced", None):
            raise ValueError(f"class_weight must be 'balanced' or None, got {self.class_weight!r}")
        if self.gamma != "scale" and not (isinstance(self.gamma, int | float) and self.gamma > 0):
            raise ValueError(f"gamma must be 'scale' or a positive number, got {self.gamma!r}")
        if self.chi2_sample_steps < 1 or self.chi2_sample_steps > 3:
            raise ValueError("chi2_sample_steps must be 1, 2 or 3 (AdditiveChi2Sampler's defaults)")
        if self.n_top < 0 or self.n_queries < 0:
            raise ValueError("n_top and n_queries must be >= 0")
        if self.candidate_factor < 1:
            raise ValueError("candidate_factor must be >= 1")
        if self.chunk_rows < 1:
            raise ValueError("chunk_rows must be >= 1")
        if self.threshold not in THRESHOLDS:
            raise ValueError(f"threshold must be one of {', '.join(THRESHOLDS)}, got {self.threshold!r}")
        if self.threshold_folds < 2:
            raise ValueError("threshold_folds must be >= 2")
        if self.cold_start not in ("nearest", "mean", "kmeans"):
            raise ValueError(f"unknown cold start {self.cold_start!r}; expected nearest, mean or kmeans")
        if self.cold_start_sample < 1:
            raise ValueError("cold_start_sample must be >= 1")


# --------------------------------------------------------------------------------------------
# Feature maps and prepared pools
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureMap:
    """Explicit, row-wise feature map applied before a linear (or RBF) SVM.

    Attributes:
        kind: ``"identity"``, ``"sqrt"`` (Hellinger) or ``"chi2"`` (additive chi-square).
        chi2_sample_steps: ``sample_steps`` of the chi-square map.
    """

    kind: MapKind = "identity"
    chi2_sample_steps: int = 2

    def output_dim(self, dim: int) -> int:
        """Dimension of the mapped vectors for ``dim``-dimensional descriptors."""
        return dim * (2 * self.chi2_sample_steps - 1) if self.kind == "chi2" else dim

    def transform(self, x: ArrayLike) -> F32:
        """Map descriptor rows.

        Args:
            x: ``(n, d)`` descriptors; non-negative for ``"sqrt"`` and ``"chi2"``.

        Returns:
            ``(n, output_dim(d))`` float32.

        Raises:
            ValueError: If a histogram map gets negative values.
        """
        arr = np.asarray(x, dtype=np.float32)
        if arr.ndim != 2:
            raise ValueError(f"expected a (n, d) descriptor matrix, got shape {arr.shape}")
        if self.kind == "identity":
            return arr
        if arr.size and float(arr.min()) < 0:
            raise ValueError(f"the {self.kind!r} feature map needs non-negative descriptors (histograms)")
        if self.kind == "sqrt":
            return np.sqrt(arr)
        sampler = AdditiveChi2Sampler(sample_steps=self.chi2_sample_steps)
        return np.asarray(sampler.fit_transform(arr), dtype=np.float32)


def feature_map_for(config: RoundConfig) -> FeatureMap:
    """The feature map a configuration's kernel needs.

    Args:
        config: Round configuration.

    Returns:
        ``sqrt`` for ``hellinger``, ``chi2`` for ``chi2``, ``identity`` for ``linear`` and ``rbf``.
    """
    kind: MapKind = "identity"
    if config.kernel == "hellinger":
        kind = "sqrt"
    elif config.kernel == "chi2":
        kind = "chi2"
    return FeatureMap(kind=kind, chi2_sample_steps=config.chi2_sample_steps)


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _row_sq_norms(x: F32, chunk_rows: int) -> F32:
    out = np.empty(x.shape[0], dtype=np.float32)
    for sl in _chunks(x.shape[0], chunk_rows):
        block = x[sl]
        out[sl] = np.einsum("ij,ij->i", block, block)
    return out


@dataclass(frozen=True, eq=False)
class PreparedPool:
    """A pool whose feature map was applied once, with cached squared row norms.

    Build it with :func:`prepare_pool`; pass it to :func:`run_round` instead of the raw matrix so
    that a round does not map the pool again.

    Attributes:
        features: ``(n, D)`` mapped float32 features (C-contiguous).
        feature_map: The map that produced them.
        sq_norms: ``(n,)`` squared L2 norms of the mapped rows (for distances).
    """

    features: F32
    feature_map: FeatureMap
    sq_norms: F32

    @property
    def n(self) -> int:
        """Number of pool items."""
        return int(self.features.shape[0])


def prepare_pool(descriptors: ArrayLike, config: RoundConfig | FeatureMap, chunk_rows: int = 32768) -> PreparedPool:
    """Apply a kernel's feature map to a whole pool once (chunked, float32).

    Args:
        descriptors: ``(n, d)`` descriptor matrix.
        config: Round configuration (its kernel decides the map) or a :class:`FeatureMap`.
        chunk_rows: Rows mapped per block, bounding temporaries.

    Returns:
        The prepared pool.

    Raises:
        ValueError: On a bad shape, an empty pool or non-finite values.
    """
    fmap = config if isinstance(config, FeatureMap) else feature_map_for(config)
    x = _check_pool(descriptors)
    if fmap.kind == "identity":
        features = np.ascontiguousarray(x, dtype=np.float32)
    else:
        features = np.empty((x.shape[0], fmap.output_dim(x.shape[1])), dtype=np.float32)
        for sl in _chunks(x.shape[0], chunk_rows):
            features[sl] = fmap.transform(x[sl])
    return PreparedPool(features=features, feature_map=fmap, sq_norms=_row_sq_norms(features, chunk_rows))


def _check_pool(descriptors: ArrayLike) -> F32:
    x = np.asarray(descriptors)
    if x.ndim != 2:
        raise ValueError(f"expected a (n, d) descriptor matrix, got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"empty descriptor matrix of shape {x.shape}")
    x = x.astype(np.float32, copy=False)
    # A full isfinite pass over 340k rows costs ~20 ms; only check small pools eagerly, large ones
    # are checked on the rows that are fitted (a NaN elsewhere only gives a NaN score).
    if x.size <= 10_000_000 and not np.isfinite(x).all():
        raise ValueError("descriptor matrix contains NaN or infinite values")
    return x


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LinearModel:
    """Linear SVM on feature-mapped descriptors: ``score(x) = phi(x) . weights + bias``.

    Attributes:
        feature_map: Map ``phi`` applied to raw descriptors.
        weights: ``(D,)`` float32 primal weight vector.
        bias: Intercept (a calibrated threshold already subtracted: predicted positive is ``score > 0``).
        n_support: Number of support vectors of the fitted SVM.
        threshold_shift: The calibrated threshold subtracted from the SVM's intercept (0: the SVM's own
            decision; see ``RoundConfig.threshold``).
    """

    feature_map: FeatureMap
    weights: F32
    bias: float
    n_support: int
    threshold_shift: float = 0.0

    def score_features(self, features: F32, sq_norms: F32 | None = None, chunk_rows: int = 32768) -> F32:
        """Decision values of already mapped rows.

        Args:
            features: ``(n, D)`` mapped features.
            sq_norms: Unused (uniform signature with the other models).
            chunk_rows: Rows per block.

        Returns:
            ``(n,)`` float32 decision values (> 0: predicted relevant).
        """
        out = np.empty(features.shape[0], dtype=np.float32)
        w = self.weights.astype(np.float32, copy=False)
        for sl in _chunks(features.shape[0], chunk_rows):
            # numpy's own einsum loop rather than BLAS sgemv: on the shared 2-core machines the
            # OpenBLAS float32 matrix-vector kernel measured 2-3x slower (90 vs 35 ms on 340k x 240)
            # and it is memory-bound anyway; results agree to float32 rounding.
            np.einsum("ij,j->i", features[sl], w, out=out[sl])
        out += np.float32(self.bias)
        return out


@dataclass(frozen=True, eq=False)
class RbfModel:
    """Gaussian-kernel SVM: ``score(x) = sum_j a_j exp(-gamma |x - sv_j|^2) + bias``.

    Attributes:
        feature_map: Map applied to raw descriptors before the kernel (identity by default).
        support_vectors: ``(m, D)`` float32.
        dual_coef: ``(m,)`` float32 signed dual coefficients ``y_j alpha_j``.
        bias: Intercept.
        gamma: Kernel width.
    """

    feature_map: FeatureMap
    support_vectors: F32
    dual_coef: F32
    bias: float
    gamma: float

    @property
    def n_support(self) -> int:
        """Number of support vectors."""
        return int(self.support_vectors.shape[0])

    def score_features(self, features: F32, sq_norms: F32 | None = None, chunk_rows: int = 32768) -> F32:
        """Decision values of already mapped rows, in ``(chunk_rows, m)`` float32 kernel blocks.

        Args:
            features: ``(n, D)`` mapped features.
            sq_norms: Optional cached ``(n,)`` squared norms of ``features``.
            chunk_rows: Rows per kernel block.

        Returns:
            ``(n,)`` float32 decision values.
        """
        sv = self.support_vectors
        sv_sq = np.einsum("ij,ij->i", sv, sv)
        out = np.empty(features.shape[0], dtype=np.float32)
        g = np.float32(self.gamma)
        for sl in _chunks(features.shape[0], chunk_rows):
            block = features[sl]
            xsq = sq_norms[sl] if sq_norms is not None else np.einsum("ij,ij->i", block, block)
            k = block @ sv.T  # (rows, m), reused in place below
            k *= -2.0
            k += xsq[:, None]
            k += sv_sq[None, :]
            np.maximum(k, 0.0, out=k)  # float32 cancellation can give tiny negative distances
            k *= -g
            np.exp(k, out=k)
            out[sl] = k @ self.dual_coef
        out += np.float32(self.bias)
        return out


@dataclass(frozen=True, eq=False)
class NearestPositiveModel:
    """Positives-only model: ``score(x) = -min_j |phi(x) - phi(p_j)|`` (higher = closer).

    Used while there is no negative example; it has no decision threshold.

    Attributes:
        feature_map: Map applied to raw descriptors.
        prototypes: ``(p, D)`` float32 mapped positive examples.
    """

    feature_map: FeatureMap
    prototypes: F32

    @property
    def n_support(self) -> int:
        """Number of prototypes (the positives)."""
        return int(self.prototypes.shape[0])

    def score_features(self, features: F32, sq_norms: F32 | None = None, chunk_rows: int = 32768) -> F32:
        """Negated distance to the nearest prototype, in ``(chunk_rows, p)`` blocks.

        Args:
            features: ``(n, D)`` mapped features.
            sq_norms: Optional cached ``(n,)`` squared norms of ``features``.
            chunk_rows: Rows per block.

        Returns:
            ``(n,)`` float32 scores ``<= 0``.
        """
        p = self.prototypes
        p_sq = np.einsum("ij,ij->i", p, p)
        out = np.empty(features.shape[0], dtype=np.float32)
        for sl in _chunks(features.shape[0], chunk_rows):
            block = features[sl]
            xsq = sq_norms[sl] if sq_norms is not None else np.einsum("ij,ij->i", block, block)
            d2 = block @ p.T
            d2 *= -2.0
            d2 += p_sq[None, :]
            nearest = d2.min(axis=1) + xsq
            out[sl] = -np.sqrt(np.maximum(nearest, 0.0))
        return out


Model = LinearModel | RbfModel | NearestPositiveModel


#: Format tag of :func:`model_to_bytes`; a blob without it (an old pickle) is not a model of this format.
MODEL_FORMAT = "eofusion-round-model/1"
_MODEL_TYPES = {LinearModel: "linear", RbfModel: "rbf", NearestPositiveModel: "nearest-positive"}
_MAP_KINDS: tuple[MapKind, ...] = ("identity", "sqrt", "chi2")


def model_to_bytes(model: Model) -> bytes:
    """A fitted model as an ``.npz`` archive: a JSON header (type, feature map, scalars) and float32 arrays.

    Only numbers and plain parameters are written, so reading it back (:func:`model_from_bytes`) runs no
    code: it is ``numpy.load(..., allow_pickle=False)`` and a JSON parse, unlike a pickle.

    Args:
        model: A model of :func:`fit_model`.

    Returns:
        The archive's bytes.
    """
    header: dict[str, Any] = {"format": MODEL_FORMAT, "type": _MODEL_TYPES[type(model)],
                              "feature_map": {"kind": model.feature_map.kind,
                                              "chi2_sample_steps": model.feature_map.chi2_sample_steps}}
    arrays: dict[str, NDArray[Any]]
    if isinstance(model, LinearModel):
        header.update(bias=float(model.bias), n_support=int(model.n_support))
        if model.threshold_shift:  # absent in older models and in uncalibrated ones: 0
            header["threshold_shift"] = float(model.threshold_shift)
        arrays = {"weights": model.weights}
    elif isinstance(model, RbfModel):
        header.update(bias=float(model.bias), gamma=float(model.gamma))
        arrays = {"support_vectors": model.support_vectors, "dual_coef": model.dual_coef}
    else:
        arrays = {"prototypes": model.prototypes}
    payload = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
               **{k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}}
    buf = io.BytesIO()
    np.savez(buf, **payload)  # type: ignore[arg-type]  # numpy's stub types **kwds like its allow_pickle flag
    return buf.getvalue()


def _array(archive: Any, name: str, ndim: int) -> F32:
    arr = np.asarray(archive[name])
    if arr.ndim != ndim or not np.issubdtype(arr.dtype, np.floating) or not np.isfinite(arr).all():
        raise ValueError(f"model array {name!r}: expected finite {ndim}-d floats, got {arr.dtype} {arr.shape}")
    return arr.astype(np.float32)


def _number(header: dict[str, Any], name: str) -> float:
    value = header.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ValueError(f"model parameter {name!r}: expected a finite number, got {value!r}")
    return float(value)


def model_from_bytes(data: bytes) -> Model:
    """Read a model written by :func:`model_to_bytes`; never unpickles.

    Raises:
        ValueError: Not such an archive (e.g. a pickle of an older version), or inconsistent contents.
    """
    if not data.startswith(b"PK\x03\x04"):
        raise ValueError("not a stored round model (an .npz archive)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            header = json.loads(bytes(np.asarray(archive["header"], dtype=np.uint8)).decode())
            if not isinstance(header, dict) or header.get("format") != MODEL_FORMAT:
                raise ValueError("stored round model: not of format " + MODEL_FORMAT)
            fm = header.get("feature_map")
            steps = fm.get("chi2_sample_steps") if isinstance(fm, dict) else None
            if not isinstance(fm, dict) or fm.get("kind") not in _MAP_KINDS or not isinstance(steps, int) \
                    or isinstance(steps, bool) or not 1 <= steps <= 16:
                raise ValueError(f"stored round model: bad feature map {fm!r}")
            fmap = FeatureMap(kind=fm["kind"], chi2_sample_steps=steps)
            kind = header.get("type")
            if kind == "linear":
                n_support = header.get("n_support")
                if not isinstance(n_support, int) or isinstance(n_support, bool) or n_support < 0:
                    raise ValueError(f"stored round model: bad n_support {n_support!r}")
                shift = _number(header, "threshold_shift") if "threshold_shift" in header else 0.0
                return LinearModel(fmap, _array(archive, "weights", 1), _number(header, "bias"), n_support, shift)
            if kind == "rbf":
                sv, coef = _array(archive, "support_vectors", 2), _array(archive, "dual_coef", 1)
                if sv.shape[0] != coef.shape[0]:
                    raise ValueError(f"stored round model: {sv.shape[0]} support vectors, {coef.shape[0]} coefficients")
                return RbfModel(fmap, sv, coef, _number(header, "bias"), _number(header, "gamma"))
            if kind == "nearest-positive":
                return NearestPositiveModel(fmap, _array(archive, "prototypes", 2))
            raise ValueError(f"stored round model: unknown type {kind!r}")
    except (KeyError, OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError, zipfile.BadZipFile) as err:
        raise ValueError(f"stored round model is damaged: {err}") from err


def score_pool(model: Model, pool: ArrayLike | PreparedPool, chunk_rows: int = 32768) -> F32:
    """Score every pool item with a model, vectorised and chunked.

    Args:
        model: A fitted model.
        pool: Raw ``(n, d)`` descriptors (mapped block by block) or a :class:`PreparedPool` built
            with the model's feature map.
        chunk_rows: Rows per block (bounds the temporaries of the map and of kernel blocks).

    Returns:
        ``(n,)`` float32 scores, higher = more relevant.

    Raises:
        ValueError: If a prepared pool was built with another feature map.
    """
    if isinstance(pool, PreparedPool):
        if pool.feature_map != model.feature_map:
            raise ValueError(f"pool was prepared with {pool.feature_map}, the model needs {model.feature_map}")
        return model.score_features(pool.features, pool.sq_norms, chunk_rows)
    x = np.asarray(pool, dtype=np.float32)
    if model.feature_map.kind == "identity":
        return model.score_features(x, None, chunk_rows)
    out = np.empty(x.shape[0], dtype=np.float32)
    for sl in _chunks(x.shape[0], chunk_rows):
        out[sl] = model.score_features(model.feature_map.transform(x[sl]), None, chunk_rows)
    return out


def fit_model(features: F32, y: NDArray[np.bool_], config: RoundConfig, feature_map: FeatureMap) -> Model:
    """Fit the model of a round on mapped labelled rows.

    Args:
        features: ``(m, D)`` mapped features of the labelled items.
        y: ``(m,)`` True for positives.
        config: Round configuration.
        feature_map: The map that produced ``features`` (stored in the model).

    Returns:
        A :class:`NearestPositiveModel` if ``y`` has no negative, otherwise a :class:`LinearModel`
        (``linear``, ``hellinger``, ``chi2``) or an :class:`RbfModel`.

    Raises:
        ValueError: If there is no positive.
    """
    if not y.any():
        raise ValueError("at least one positive example is needed")
    if y.all():
        return NearestPositiveModel(feature_map=feature_map, prototypes=np.ascontiguousarray(features))
    kernel = "rbf" if config.kernel == "rbf" else "linear"
    if kernel == "linear" and config.threshold == "cv":
        plain = fit_model(features, y, replace(config, threshold="zero"), feature_map)
        assert isinstance(plain, LinearModel)
        shift = calibrate_threshold(features, y, config)
        return LinearModel(feature_map=feature_map, weights=plain.weights, bias=plain.bias - shift,
                           n_support=plain.n_support, threshold_shift=shift)
    if kernel == "linear":
        fast = _fit_linear_libsvm(features, y, config)
        if fast is not None:
            weights, bias, n_sv = fast
            return LinearModel(feature_map=feature_map, weights=weights, bias=bias, n_support=n_sv)
    svm = SVC(
        kernel=kernel,
        C=config.C,
        gamma=config.gamma,
        class_weight=config.class_weight,
        random_state=config.seed,
    )
    # float64 for libsvm (it converts anyway); label 1 = positive so decision > 0 means relevant.
    svm.fit(features.astype(np.float64), y.astype(np.int64))
    bias = float(svm.intercept_[0])
    if kernel == "linear":
        weights = np.asarray(svm.coef_, dtype=np.float32).reshape(-1)
        return LinearModel(feature_map=feature_map, weights=weights, bias=bias, n_support=int(svm.n_support_.sum()))
    return RbfModel(
        feature_map=feature_map,
        support_vectors=np.ascontiguousarray(svm.support_vectors_, dtype=np.float32),
        dual_coef=np.asarray(svm.dual_coef_, dtype=np.float32).reshape(-1),
        bias=bias,
        gamma=float(svm._gamma),
    )


def calibrate_threshold(features: F32, y: NDArray[np.bool_], config: RoundConfig) -> float:
    """The decision threshold of a linear round model, from the marked items only.

    The marks are split in ``config.threshold_folds`` folds stratified by label (fewer when a class has
    fewer marks; the order inside each class is a permutation seeded by ``config.seed``, so the result
    depends on the marks alone); each fold is scored by an SVM fitted on the other folds, and the threshold
    is the one that maximises the balanced accuracy of those cross-validated decision values (the midpoint
    between two consecutive values; among equal ones the one nearest 0, the SVM's own). Nothing outside the
    marks is read: a user's session has nothing else.

    Args:
        features: ``(m, D)`` mapped features of the marked items.
        y: ``(m,)`` True for positives.
        config: Round configuration (``C``, ``class_weight``, ``threshold_folds``, ``seed``).

    Returns:
        The threshold (to subtract from the SVM's intercept); 0.0 with fewer than two marks of a class.
    """
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    k = min(config.threshold_folds, pos.size, neg.size)
    if k < 2:
        return 0.0
    rng = np.random.default_rng(config.seed)
    fold = np.empty(y.size, dtype=np.intp)
    for members in (pos, neg):
        fold[rng.permutation(members)] = np.arange(members.size) % k
    plain = replace(config, threshold="zero")
    cv = np.empty(y.size, dtype=np.float64)
    for f in range(k):
        held = fold == f
        model = fit_model(features[~held], y[~held], plain, FeatureMap())
        cv[held] = model.score_features(np.ascontiguousarray(features[held]))
    values = np.unique(cv)
    candidates = np.concatenate([[0.0], (values[:-1] + values[1:]) / 2.0, [values[0] - 1.0, values[-1] + 1.0]])
    above = cv[None, :] > candidates[:, None]
    bacc = (above[:, y].mean(axis=1) + (~above[:, ~y]).mean(axis=1)) / 2.0
    best = np.flatnonzero(bacc >= bacc.max() - 1e-12)
    return float(candidates[best[np.argmin(np.abs(candidates[best]))]])


def _fit_linear_libsvm(features: F32, y: NDArray[np.bool_], config: RoundConfig) -> tuple[F32, float, int] | None:
    """The linear ``SVC`` of :func:`fit_model` through scikit-learn's libsvm binding, without ``SVC.fit``.

    ``SVC.fit`` spends 10-30 ms in parameter and target validation around a libsvm call of about
    1 ms on 100 labels (a fifth of a server-side round at 340k patches); the inputs here are
    already validated. Same solver, same settings (SVC's defaults), same weights. Returns ``None``
    when the binding is not there (a future scikit-learn), and the caller falls back to ``SVC``.
    """
    try:
        from sklearn.svm import _libsvm
    except ImportError:  # pragma: no cover - depends on the installed scikit-learn
        return None
    labels = y.astype(np.float64)  # classes (False, True) -> (0, 1), as SVC's np.unique would map them
    if config.class_weight == "balanced":  # sklearn's compute_class_weight("balanced")
        counts = np.bincount(y.astype(np.int64), minlength=2).astype(np.float64)
        class_weight = y.size / (2.0 * counts)
    else:
        class_weight = np.empty(0, dtype=np.float64)
    try:
        _libsvm.set_verbosity_wrap(0)  # libsvm's verbosity is global: SVC.fit sets it before every fit too
        out = _libsvm.fit(
            np.ascontiguousarray(features, dtype=np.float64), labels, svm_type=0, kernel="linear", degree=3,
            gamma=1.0, coef0=0.0, tol=1e-3, C=float(config.C), nu=0.0, epsilon=0.0, class_weight=class_weight,
            sample_weight=np.empty(0, dtype=np.float64), shrinking=1, probability=0, cache_size=200.0,
            max_iter=-1, random_seed=int(config.seed))
    except TypeError:  # pragma: no cover - a changed private signature
        return None
    support_vectors, dual_coef, intercept = out[1], out[3], out[4]
    # libsvm's decision is for class 0 first: scikit-learn negates both for a binary problem.
    weights = -(np.asarray(dual_coef, dtype=np.float64) @ support_vectors).reshape(-1)
    return weights.astype(np.float32), -float(intercept[0]), int(support_vectors.shape[0])


# --------------------------------------------------------------------------------------------
# Query selection
# --------------------------------------------------------------------------------------------


def select_diverse(features: F32, k: int, first: int = 0) -> I64:
    """Greedy max-min (farthest-point) selection of ``k`` rows.

    Starts from row ``first`` and repeatedly adds the row whose distance to the nearest already
    selected row is largest. Exact duplicates of a selected row have distance 0 and are only taken
    when nothing else is left, so the batch never repeats one descriptor while others exist.

    Args:
        features: ``(m, D)`` candidate features, ordered by preference (ties go to earlier rows).
        k: Number of rows to select (capped at ``m``).
        first: Index of the first selected row.

    Returns:
        ``(min(k, m),)`` selected row indices, in selection order.
    """
    m = features.shape[0]
    k = min(k, m)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    f = features.astype(np.float64)
    sq = np.einsum("ij,ij->i", f, f)
    chosen = [first]
    min_d2 = np.maximum(sq + sq[first] - 2.0 * (f @ f[first]), 0.0)
    min_d2[first] = -1.0
    for _ in range(k - 1):
        nxt = int(np.argmax(min_d2))  # argmax takes the first maximum: the most uncertain among ties
        chosen.append(nxt)
        d2 = np.maximum(sq + sq[nxt] - 2.0 * (f @ f[nxt]), 0.0)
        np.minimum(min_d2, d2, out=min_d2)
        min_d2[chosen] = -1.0
    return np.asarray(chosen, dtype=np.int64)


def _smallest(values: F32, k: int) -> I64:
    """Indices of the ``k`` smallest finite values, sorted ascending (ties by index)."""
    finite = int(np.isfinite(values).sum())
    k = min(k, finite)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(values, k - 1)[:k] if k < values.shape[0] else np.arange(values.shape[0])
    order = np.lexsort((part, values[part]))
    return part[order].astype(np.int64)


# --------------------------------------------------------------------------------------------
# The round
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundMetrics:
    """Figures of one round.

    Attributes:
        n_pool: Pool size.
        n_positive: Labelled positives.
        n_negative: Labelled negatives.
        model: ``"svm-linear"``, ``"svm-rbf"`` or ``"nearest-positive"``.
        n_support: Support vectors (prototypes for the positives-only model).
        n_predicted_positive: Pool items with score > 0 (``None`` for the positives-only model,
            which has no threshold).
        train_balanced_accuracy: Balanced accuracy of ``score > 0`` on the labelled items
            (``None`` without negatives).
        fit_seconds: Time to map the labelled rows and fit.
        score_seconds: Time to score the whole pool.
        query_seconds: Time to rank and pick the query batch.
    """

    n_pool: int
    n_positive: int
    n_negative: int
    model: str
    n_support: int
    n_predicted_positive: int | None
    train_balanced_accuracy: float | None
    fit_seconds: float
    score_seconds: float
    query_seconds: float

    @property
    def total_seconds(self) -> float:
        """Fit + score + query time."""
        return self.fit_seconds + self.score_seconds + self.query_seconds


@dataclass(frozen=True, eq=False)
class RoundResult:
    """Outcome of :func:`run_round`. Arrays are read-only.

    Attributes:
        top_indices: ``(<= n_top,)`` pool indices, best first.
        top_scores: Their scores.
        query_indices: ``(<= n_queries,)`` unlabelled pool indices to show the user next, in
            selection order (the first is the one nearest the boundary).
        query_scores: Their scores.
        scores: ``(n,)`` scores of the whole pool (SVM decision values, > 0 = predicted relevant;
            negated distances for the positives-only model).
        model: The fitted model, enough to score new or other items (:func:`score_pool`).
        metrics: Counts and timings.
        config: The configuration used.
    """

    top_indices: I64
    top_scores: F32
    query_indices: I64
    query_scores: F32
    scores: F32
    model: Model
    metrics: RoundMetrics
    config: RoundConfig = field(default_factory=RoundConfig)

    def __post_init__(self) -> None:
        for name in ("top_indices", "top_scores", "query_indices", "query_scores", "scores"):
            getattr(self, name).flags.writeable = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (indices, scores, metrics; not the full pool scores)."""
        return {
            "top": [
                {"index": int(i), "score": float(s)} for i, s in zip(self.top_indices, self.top_scores, strict=True)
            ],
            "queries": [
                {"index": int(i), "score": float(s)} for i, s in zip(self.query_indices, self.query_scores, strict=True)
            ],
            "metrics": {**self.metrics.__dict__, "total_seconds": self.metrics.total_seconds},
        }


def _as_indices(values: ArrayLike | Sequence[int], n: int, what: str) -> I64:
    arr = np.asarray(values)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} must be integer pool indices, got dtype {arr.dtype}")
    idx = np.unique(arr.reshape(-1).astype(np.int64))
    if idx[0] < 0 or idx[-1] >= n:
        raise ValueError(f"{what} indices must be in [0, {n}), got values from {idx[0]} to {idx[-1]}")
    return idx


def _cold_start_candidates(pool: F32 | PreparedPool, fmap: FeatureMap, positives: I64, labelled: I64,
                           cfg: RoundConfig) -> I64:
    """Query candidates of a round without negatives, by ``cfg.cold_start`` ``"mean"`` or ``"kmeans"``.

    ``"mean"``: the ``candidate_factor * n_queries`` unlabelled items nearest the mean of the positives (mapped).
    ``"kmeans"``: one item per k-means cluster (:func:`eofusion.active.seeding.kmeans_seeds`) of at most
    ``cold_start_sample`` unlabelled items drawn with ``cfg.seed``, so a large pool costs a bounded k-means.
    """
    from eofusion.active.seeding import kmeans_seeds  # seeding builds on this module

    features = pool.features if isinstance(pool, PreparedPool) else pool
    n = features.shape[0]
    free = np.setdiff1d(np.arange(n, dtype=np.int64), labelled)
    if free.size == 0:
        return free
    if cfg.cold_start == "kmeans":
        rng = np.random.default_rng(cfg.seed)
        sample = np.sort(rng.choice(free, min(free.size, cfg.cold_start_sample), replace=False))
        rows = features[sample] if isinstance(pool, PreparedPool) else fmap.transform(features[sample])
        return sample[kmeans_seeds(rows, cfg.n_queries, cfg.seed)]
    mapped_pos = features[positives] if isinstance(pool, PreparedPool) else fmap.transform(features[positives])
    centre = mapped_pos.astype(np.float64).mean(axis=0)
    d2 = np.full(n, np.inf, dtype=np.float32)
    for sl in _chunks(n, cfg.chunk_rows):
        block = (features[sl] if isinstance(pool, PreparedPool) else fmap.transform(features[sl])).astype(np.float64)
        d2[sl] = ((block - centre) ** 2).sum(axis=1)
    d2[labelled] = np.inf
    return _smallest(d2, cfg.candidate_factor * cfg.n_queries)


def run_round(
    pool: ArrayLike | PreparedPool,
    positives: ArrayLike | Sequence[int],
    negatives: ArrayLike | Sequence[int] = (),
    config: RoundConfig | None = None,
) -> RoundResult:
    """Run one relevance-feedback round.

    Args:
        pool: ``(n, d)`` float32 descriptor matrix, or a :class:`PreparedPool` built with
            :func:`prepare_pool` for the same kernel (avoids mapping the pool every round).
        positives: Pool indices the user marked relevant (at least one).
        negatives: Pool indices marked irrelevant; may be empty in the first round.
        config: Round parameters; defaults to ``RoundConfig()``.

    Returns:
        The ranked top patches, the query batch, the whole-pool scores, the model and metrics.

    Raises:
        ValueError: Without positives, on out-of-range or non-integer indices, on an index labelled
            both positive and negative, or if a prepared pool's map does not match the kernel.
    """
    cfg = config or RoundConfig()
    fmap = feature_map_for(cfg)
    if isinstance(pool, PreparedPool):
        if pool.feature_map != fmap:
            raise ValueError(f"pool was prepared with {pool.feature_map} but kernel {cfg.kernel!r} needs {fmap}")
        n = pool.n
    else:
        raw = _check_pool(pool)
        n = raw.shape[0]

    pos = _as_indices(positives, n, "positives")
    neg = _as_indices(negatives, n, "negatives")
    if pos.size == 0:
        raise ValueError("run_round needs at least one positive example (got none)")
    both = np.intersect1d(pos, neg)
    if both.size:
        raise ValueError(f"indices labelled both positive and negative: {both[:10].tolist()}")

    t0 = time.perf_counter()
    labelled = np.concatenate([pos, neg])
    y = np.zeros(labelled.shape[0], dtype=bool)
    y[: pos.size] = True
    if isinstance(pool, PreparedPool):
        train = pool.features[labelled]
    else:
        train = fmap.transform(raw[labelled])
    if not np.isfinite(train).all():
        raise ValueError("labelled descriptors contain NaN or infinite values")
    model = fit_model(train, y, cfg, fmap)
    t1 = time.perf_counter()

    scores = score_pool(model, pool if isinstance(pool, PreparedPool) else raw, cfg.chunk_rows)
    t2 = time.perf_counter()

    # Rank: labelled items are pushed out with +inf on the negated scores.
    neg_scores = -scores
    neg_scores[np.isnan(neg_scores)] = np.inf
    unlabelled_key = neg_scores.copy()
    unlabelled_key[labelled] = np.inf
    top = _smallest(neg_scores if cfg.include_labelled_in_top else unlabelled_key, cfg.n_top)

    # Query candidates: unlabelled items nearest the boundary (SVM), or nearest the positives.
    n_cand = cfg.candidate_factor * cfg.n_queries
    if isinstance(model, NearestPositiveModel) and cfg.cold_start != "nearest":
        candidates = _cold_start_candidates(pool if isinstance(pool, PreparedPool) else raw, fmap, pos, labelled, cfg)
    elif isinstance(model, NearestPositiveModel):
        candidates = _smallest(unlabelled_key, n_cand)
    else:
        uncertainty = np.abs(scores)
        uncertainty[labelled] = np.inf
        uncertainty[np.isnan(uncertainty)] = np.inf
        candidates = _smallest(uncertainty, n_cand)
    if candidates.size and isinstance(model, NearestPositiveModel) and cfg.cold_start == "kmeans":
        queries = candidates  # already one per cluster
    elif candidates.size:
        cand_features = pool.features[candidates] if isinstance(pool, PreparedPool) else fmap.transform(raw[candidates])
        queries = candidates[select_diverse(cand_features, cfg.n_queries)]
    else:
        queries = candidates
    t3 = time.perf_counter()

    if isinstance(model, NearestPositiveModel):
        n_pred: int | None = None
        train_bacc: float | None = None
    else:
        n_pred = int(np.count_nonzero(scores > 0))
        pred = scores[labelled] > 0
        train_bacc = float((pred[y].mean() + (~pred[~y]).mean()) / 2.0)
    metrics = RoundMetrics(
        n_pool=n,
        n_positive=int(pos.size),
        n_negative=int(neg.size),
        model={LinearModel: "svm-linear", RbfModel: "svm-rbf", NearestPositiveModel: "nearest-positive"}[type(model)],
        n_support=model.n_support,
        n_predicted_positive=n_pred,
        train_balanced_accuracy=train_bacc,
        fit_seconds=t1 - t0,
        score_seconds=t2 - t1,
        query_seconds=t3 - t2,
    )
    return RoundResult(
        top_indices=top,
        top_scores=scores[top],
        query_indices=queries,
        query_scores=scores[queries],
        scores=scores,
        model=model,
        metrics=metrics,
        config=cfg,
    )
