"""Deep metric-learning hashing in the manner of MiLAN (Roy, Sumbul, Demir, Datcu 2020).

A small MLP maps a patch descriptor to ``K`` tanh outputs. Training minimises

    triplet(h) + quantization_weight * mean((|h| - 1)^2) + balance_weight * mean_k(mean_i h_ik)^2

where the triplet term pulls items sharing a label together in (normalised) Hamming space, the quantisation
term pushes outputs to ±1 so that taking the sign loses little, and the bit-balance term makes each bit
split the data in halves so that all ``2^K`` codes are usable. At search time ``sign(h)`` gives the bits.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import nn

from eofusion.hashing.codes import bits_from_outputs, bits_to_text, pack_bits
from eofusion.hashing.losses import Labels, Mining, label_matrix, triplet_loss
from eofusion.modelfile import load_payload, payload_bytes, save_payload

__all__ = [
    "DeepHasher",
    "HashingConfig",
    "HashingNet",
    "ProgressCallback",
    "TrainingHistory",
    "train_hashing",
]

ProgressCallback = Callable[[float, str], None]
"""``callback(fraction_done, message)``; fraction in ``[0, 1]``, called at most ~100 times per training."""

InputTransform = Literal["none", "sqrt"]

FORMAT = "eofusion-deep-hashing"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class HashingConfig:
    """Architecture and training parameters.

    Attributes:
        n_bits: Code length ``K`` (a multiple of 8 keeps packed codes byte-aligned; 32, 64, 128 are typical).
        hidden: Widths of the hidden layers (ReLU).
        dropout: Dropout after each hidden layer (training only).
        input_transform: ``"sqrt"`` takes the square root of the descriptor first; for histograms this turns
            the Hellinger distance into a Euclidean one, which suits an MLP better than raw frequencies.
        margin: Triplet margin as a fraction of the ``K`` bits (0.25 asks for a gap of ``K / 4`` bits).
        mining: ``"semi-hard"`` or ``"batch-hard"`` in-batch triplet mining. Semi-hard is the default: started
            from scratch on a few hundred items, batch-hard collapsed every code to one point in our runs.
        warmup_fraction: With batch-hard mining, the fraction of the epochs trained with semi-hard mining first.
        quantization_weight: Weight of the push of outputs towards ±1.
        balance_weight: Weight of the bit-balance term.
        epochs: Passes over the training data.
        batch_size: Items per step (the whole set when smaller).
        learning_rate: Adam learning rate.
        weight_decay: Adam (L2) weight decay.
        seed: Seeds weights, dropout and shuffling: the same data and seed give the same model.
    """

    n_bits: int = 64
    hidden: tuple[int, ...] = (128,)
    dropout: float = 0.1
    input_transform: InputTransform = "sqrt"
    margin: float = 0.25
    mining: Mining = "semi-hard"
    warmup_fraction: float = 0.2
    quantization_weight: float = 0.1
    balance_weight: float = 0.1
    epochs: int = 300
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_bits < 1:
            raise ValueError("n_bits must be >= 1")
        if any(h < 1 for h in self.hidden):
            raise ValueError("hidden widths must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.input_transform not in ("none", "sqrt"):
            raise ValueError(f"unknown input_transform {self.input_transform!r}")
        if self.mining not in ("batch-hard", "semi-hard"):
            raise ValueError(f"unknown mining {self.mining!r}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs must be >= 1 and batch_size >= 2")
        if not 0.0 <= self.warmup_fraction <= 1.0:
            raise ValueError("warmup_fraction must be in [0, 1]")
        if self.margin <= 0 or self.learning_rate <= 0:
            raise ValueError("margin and learning_rate must be > 0")
        if self.quantization_weight < 0 or self.balance_weight < 0 or self.weight_decay < 0:
            raise ValueError("loss weights and weight_decay must be >= 0")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HashingConfig:
        """Inverse of ``dataclasses.asdict`` (lists become tuples again)."""
        values = dict(data)
        values["hidden"] = tuple(values.get("hidden", ()))
        return cls(**values)


class HashingNet(nn.Module):
    """MLP with input standardisation and a tanh output layer of ``K`` units."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, input_dim: int, config: HashingConfig) -> None:
        """Build the layers (weights from the current torch RNG).

        Args:
            input_dim: Descriptor length.
            config: Architecture parameters.
        """
        super().__init__()
        self.input_dim = input_dim
        self.input_transform: InputTransform = config.input_transform
        # Standardisation statistics live in buffers so they travel with the state dict.
        self.register_buffer("mean", torch.zeros(input_dim))
        self.register_buffer("std", torch.ones(input_dim))
        layers: list[nn.Module] = []
        width = input_dim
        for h in config.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
            width = h
        layers.append(nn.Linear(width, config.n_bits))
        self.body = nn.Sequential(*layers)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the input transform (no standardisation)."""
        return torch.sqrt(x.clamp_min(0.0)) if self.input_transform == "sqrt" else x

    def fit_standardisation(self, x: torch.Tensor) -> None:
        """Set the mean and standard deviation of the transformed training descriptors."""
        z = self.preprocess(x)
        self.mean.copy_(z.mean(0))
        # Constant features (bins never hit) would divide by zero.
        self.std.copy_(z.std(0, unbiased=False).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Relaxed codes in ``(-1, 1)``."""
        z = (self.preprocess(x) - self.mean) / self.std
        return torch.tanh(self.body(z))


@dataclass
class TrainingHistory:
    """Per-epoch losses (means over steps) and full-set triplet losses before and after training.

    Attributes:
        loss: Total loss per epoch.
        triplet: Triplet term per epoch.
        quantization: Quantisation term per epoch.
        balance: Bit-balance term per epoch.
        initial_triplet: Triplet loss of the untrained network on the whole training set (eval mode).
        final_triplet: Same after training.
        seconds: Wall time of the training.
    """

    loss: list[float] = field(default_factory=list)
    triplet: list[float] = field(default_factory=list)
    quantization: list[float] = field(default_factory=list)
    balance: list[float] = field(default_factory=list)
    initial_triplet: float = math.nan
    final_triplet: float = math.nan
    seconds: float = 0.0


def _quantization_loss(h: torch.Tensor) -> torch.Tensor:
    return ((h.abs() - 1.0) ** 2).mean()


def _balance_loss(h: torch.Tensor) -> torch.Tensor:
    return (h.mean(0) ** 2).mean()


def _to_tensor(x: ArrayLike) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


class DeepHasher:
    """A trained hashing network with its configuration and metadata; encodes descriptors to bits."""

    def __init__(self, net: HashingNet, config: HashingConfig, metadata: dict[str, Any] | None = None) -> None:
        """Wrap a network.

        Args:
            net: The (trained) network.
            config: Its configuration.
            metadata: JSON-serialisable facts: training data summary, metrics, descriptor name, ...
        """
        self.net = net.eval()  # frozen from here on: inference reads a numpy copy of its weights
        self._layers = [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy())
                        for m in net.body if isinstance(m, nn.Linear)]
        self._scale = (net.mean.numpy().copy(), net.std.numpy().copy())
        self.config = config
        self.metadata: dict[str, Any] = dict(metadata or {})

    @property
    def input_dim(self) -> int:
        """Descriptor length the network expects."""
        return self.net.input_dim

    @property
    def n_bits(self) -> int:
        """Code length ``K``."""
        return self.config.n_bits

    def outputs(self, descriptors: ArrayLike, batch_size: int = 65536) -> NDArray[np.float32]:
        """Relaxed codes (tanh outputs) for descriptors.

        Args:
            descriptors: ``(n, input_dim)`` (or ``(input_dim,)``).
            batch_size: Rows per forward pass (bounds memory on large archives).

        Returns:
            ``(n, K)`` float32 in ``(-1, 1)``.

        Raises:
            ValueError: On a wrong descriptor length.
        """
        x = np.atleast_2d(np.asarray(descriptors, dtype=np.float32))
        if x.shape[1] != self.input_dim:
            raise ValueError(f"expected descriptors of length {self.input_dim}, got {x.shape[1]}")
        out = np.empty((x.shape[0], self.n_bits), dtype=np.float32)
        for start in range(0, x.shape[0], batch_size):
            out[start : start + batch_size] = self._forward(x[start : start + batch_size])
        return out

    def _forward(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        # Inference in numpy: one query through torch cost 0.3 ms idle and 3 ms beside other processes
        # (its thread pool), ten times the Hamming index scan it feeds; numpy takes ~20 us.
        mean, std = self._scale
        z = np.sqrt(np.maximum(x, 0.0)) if self.net.input_transform == "sqrt" else x
        h = (z - mean) / std
        for i, (w, b) in enumerate(self._layers):
            h = h @ w + b
            if i < len(self._layers) - 1:
                np.maximum(h, 0.0, out=h)  # ReLU; dropout is the identity at inference
        return np.tanh(h).astype(np.float32, copy=False)

    def bits(self, descriptors: ArrayLike) -> NDArray[np.uint8]:
        """``(n, K)`` bits ``sign(h) > 0``."""
        return bits_from_outputs(self.outputs(descriptors))

    def encode(self, descriptors: ArrayLike) -> NDArray[np.uint8]:
        """``(n, ceil(K / 8))`` packed codes for :func:`~eofusion.hashing.codes.hamming_distances`."""
        return pack_bits(self.bits(descriptors))

    def encode_text(self, descriptors: ArrayLike) -> list[str]:
        """pgvector ``bit(K)`` literals, one per descriptor."""
        texts = bits_to_text(np.atleast_2d(self.bits(descriptors)))
        assert isinstance(texts, list)
        return texts

    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.net.parameters())

    def save(self, path: str | Path) -> None:
        """Write state dict, configuration and metadata to one file (``torch.save``; plain types only).

        Args:
            path: Destination; written to a temporary name then renamed, so readers never see half a file.
        """
        save_payload(self._payload(), path)

    def to_bytes(self) -> bytes:
        """The same content as :meth:`save`, in memory (e.g. for a database ``bytea`` or an asset upload)."""
        return payload_bytes(self._payload())

    def _payload(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "input_dim": self.input_dim,
            "config": asdict(self.config),
            "state_dict": {k: v.detach().clone() for k, v in self.net.state_dict().items()},
            "metadata": self.metadata,
        }

    @classmethod
    def load(cls, source: str | Path | bytes) -> DeepHasher:
        """Read a model written by :meth:`save` or :meth:`to_bytes`.

        Args:
            source: A path or the bytes.

        Returns:
            The model, in eval mode.

        Raises:
            ValueError: If the content is unreadable or not a hashing model of a known format version.
        """
        payload = load_payload(source, FORMAT, FORMAT_VERSION, "deep-hashing model")
        config = HashingConfig.from_dict(payload["config"])
        net = HashingNet(int(payload["input_dim"]), config)
        net.load_state_dict(payload["state_dict"])
        return cls(net, config, payload.get("metadata") or {})

    def mlm_metadata(self, name: str | None = None) -> dict[str, Any]:
        """Fields of the STAC Machine Learning Model (``mlm``) extension describing this model.

        Args:
            name: ``mlm:name``; defaults to ``metadata["name"]`` or one derived from the descriptor and ``K``.

        Returns:
            A dict of ``mlm:*`` properties, ready to merge into a STAC item's ``properties``.
        """
        cfg = self.config
        descriptor = self.metadata.get("descriptor") or "descriptor"
        model_name = name or self.metadata.get("name") or f"eofusion-hashing-{descriptor}-{cfg.n_bits}bit"
        layers = [self.input_dim, *cfg.hidden, cfg.n_bits]
        return {
            "mlm:name": model_name,
            "mlm:architecture": "MLP (" + "-".join(str(w) for w in layers) + ", ReLU, tanh) deep metric hashing",
            "mlm:tasks": ["similarity-search"],
            "mlm:framework": "pytorch",
            "mlm:framework_version": torch.__version__.split("+")[0],
            "mlm:pretrained": False,
            "mlm:pretrained_source": None,  # the MLM schema requires an explicit null when trained from scratch
            "mlm:total_parameters": self.n_parameters(),
            "mlm:accelerator": "amd64" if platform.machine() in ("x86_64", "AMD64") else None,
            "mlm:accelerator_constrained": False,
            "mlm:batch_size_suggestion": 65536,
            "mlm:input": [
                {
                    "name": f"{descriptor} descriptor",
                    "bands": [],
                    "input": {"shape": [-1, self.input_dim], "dim_order": ["batch", "embedding"],
                              "data_type": "float32"},
                    "description": (
                        f"Patch descriptor '{descriptor}' of length {self.input_dim}"
                        + (", square-rooted then standardised inside the model" if cfg.input_transform == "sqrt"
                           else ", standardised inside the model")
                    ),
                    "pre_processing_function": None,
                }
            ],
            "mlm:output": [
                {
                    "name": "hash code",
                    "tasks": ["similarity-search"],
                    "result": {"shape": [-1, cfg.n_bits], "dim_order": ["batch", "embedding"],
                               "data_type": "float32"},
                    "description": (
                        f"{cfg.n_bits} tanh outputs; bit = output > 0, stored as pgvector bit({cfg.n_bits}) and "
                        "searched by Hamming distance, then re-ranked with the full descriptor"
                    ),
                    "post_processing_function": {
                        "format": "python",
                        "expression": "eofusion.hashing.codes:bits_from_outputs",
                    },
                }
            ],
            "mlm:hyperparameters": {
                **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
                "loss": "triplet + quantization + bit balance",
                "optimizer": "adam",
            },
        }


def train_hashing(
    descriptors: ArrayLike,
    labels: Labels,
    config: HashingConfig | None = None,
    *,
    progress: ProgressCallback | None = None,
    descriptor_name: str | None = None,
) -> tuple[DeepHasher, TrainingHistory]:
    """Train a hashing network on labelled descriptors.

    Args:
        descriptors: ``(n, d)`` descriptors of the labelled items.
        labels: One label per item, a collection of labels per item (multi-label), or an ``(n, C)`` indicator
            matrix. Items sharing a label are positives.
        config: Parameters; defaults to ``HashingConfig()``.
        progress: Optional ``callback(fraction, message)`` for job progress.
        descriptor_name: Name of the descriptor kind, recorded in the metadata.

    Returns:
        ``(model, history)``.

    Raises:
        ValueError: On fewer than two items, mismatched lengths or non-finite descriptors.
    """
    cfg = config or HashingConfig()
    x_np = np.asarray(descriptors, dtype=np.float32)
    if x_np.ndim != 2 or x_np.shape[0] < 2:
        raise ValueError(f"expected (n >= 2, d) descriptors, got shape {x_np.shape}")
    if not np.isfinite(x_np).all():
        raise ValueError("descriptors contain non-finite values")
    lab_mat, classes = label_matrix(labels)
    if lab_mat.shape[0] != x_np.shape[0]:
        raise ValueError(f"{lab_mat.shape[0]} label rows for {x_np.shape[0]} descriptors")

    started = time.perf_counter()
    x = torch.from_numpy(x_np)
    y = torch.from_numpy(lab_mat.astype(np.float32))
    n = x.shape[0]
    history = TrainingHistory()
    report_every = max(1, cfg.epochs // 100)

    # fork_rng: seed weights and dropout without disturbing the caller's global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = HashingNet(x.shape[1], cfg)
        net.fit_standardisation(x)
        gen = torch.Generator().manual_seed(cfg.seed)
        optim = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        history.initial_triplet = _full_triplet(net, x, y, cfg)
        if progress is not None:
            progress(0.0, f"training {cfg.n_bits}-bit hashing on {n} items")
        warmup = round(cfg.warmup_fraction * cfg.epochs) if cfg.mining == "batch-hard" else 0

        def mining_for(epoch: int) -> Mining:
            # Batch-hard from a fresh network collapses all codes together; semi-hard first spreads them.
            return "semi-hard" if epoch < warmup else cfg.mining

        for epoch in range(cfg.epochs):
            net.train()
            perm = torch.randperm(n, generator=gen)
            sums = np.zeros(4)
            steps = 0
            for start in range(0, n, cfg.batch_size):
                idx = perm[start : start + cfg.batch_size]
                if idx.numel() < 2:
                    continue
                h = net(x[idx])
                trip, _ = triplet_loss(h, y[idx], cfg.margin, mining_for(epoch))
                quant = _quantization_loss(h)
                bal = _balance_loss(h)
                loss = trip + cfg.quantization_weight * quant + cfg.balance_weight * bal
                optim.zero_grad()
                loss.backward()
                optim.step()
                sums += [loss.item(), trip.item(), quant.item(), bal.item()]
                steps += 1
            means = sums / max(steps, 1)
            history.loss.append(float(means[0]))
            history.triplet.append(float(means[1]))
            history.quantization.append(float(means[2]))
            history.balance.append(float(means[3]))
            if progress is not None and ((epoch + 1) % report_every == 0 or epoch + 1 == cfg.epochs):
                progress((epoch + 1) / cfg.epochs, f"epoch {epoch + 1}/{cfg.epochs}: loss {means[0]:.4f}")
        history.final_triplet = _full_triplet(net, x, y, cfg)
    net.eval()
    history.seconds = time.perf_counter() - started

    counts = lab_mat.sum(axis=0)
    metadata: dict[str, Any] = {
        "descriptor": descriptor_name,
        "input_dim": int(x.shape[1]),
        "n_bits": cfg.n_bits,
        "layers": [int(x.shape[1]), *cfg.hidden, cfg.n_bits],
        "training_data": {
            "n_items": int(n),
            "multi_label": bool((lab_mat.sum(axis=1) > 1).any()),
            "classes": [str(c) for c in classes],
            "items_per_class": {str(c): int(k) for c, k in zip(classes, counts, strict=True)},
        },
        "training": {
            "initial_triplet_loss": history.initial_triplet,
            "final_triplet_loss": history.final_triplet,
            "final_loss": history.loss[-1],
            "seconds": round(history.seconds, 3),
        },
        "metrics": {},
    }
    return DeepHasher(net, cfg, metadata), history


_MAX_MONITOR_ITEMS = 4096


def _full_triplet(net: HashingNet, x: torch.Tensor, y: torch.Tensor, cfg: HashingConfig) -> float:
    """Triplet loss over the training set in eval mode (for before/after comparisons).

    Large sets are represented by a fixed subset (the first items) to bound the ``n^2`` distance matrix.
    """
    net.eval()
    x, y = x[:_MAX_MONITOR_ITEMS], y[:_MAX_MONITOR_ITEMS]
    with torch.no_grad():
        value, _ = triplet_loss(net(x), y, cfg.margin, cfg.mining)
    return float(value)
