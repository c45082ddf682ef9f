"""Static token embeddings distilled from a sentence transformer (model2vec's recipe), for fast bulk ingest.

A transformer embedding costs about ``2 x layers x 12 x d^2`` FLOPs per token: ~0.8 GFLOP for a
post of 39 tokens (the CrisisLexT26 mean) with MiniLM-L6, which bounds it to ~40-60 (float) or ~90
(int8) posts per CPU-second on these cores; a stream of 300 posts/s on two cores cannot afford it.
A static model looks each token up in a table and averages: ~0.1 ms per post, tokenizer included.

The table is distilled from the transformer itself, without a corpus (Tulkens and van Dongen,
model2vec, 2024):

1. every vocabulary token goes through the model alone (``[CLS] token [SEP]``), mean-pooled as the
   sentence model pools, which gives one 384-d vector per token;
2. the vectors are centred on the mean of the real tokens (special and ``[unused]`` tokens left out
   of the mean): the shared component otherwise dominates every cosine;
3. each row is weighted by smooth inverse frequency, ``a / (a + p(rank))`` with ``a = 1e-4`` and a
   Zipf estimate ``p`` from the token's rank in the vocabulary (WordPiece vocabularies are ordered
   roughly by frequency), so that frequent tokens weigh less, as SIF sentence embeddings do.

A text's vector is the sum of its tokens' rows, L2-normalised. model2vec also rotates the table by
PCA; a full-rank rotation leaves every cosine unchanged, and its signs depend on the LAPACK build, so
it is left out. Each text is embedded independently of the others (no batch effects), so a stored
post and the same text as a query get bit-identical vectors.

The cost is retrieval quality: on CrisisLexT26 (``bench/text_embedding.py --map``) the embedding
modality's MAP falls from 0.390 (MiniLM) to 0.224; it stays above BM25's 0.155.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Smooth-inverse-frequency constant (model2vec's and SIF's default).
SIF_A = 1e-4
#: Tokens per text at most: bounds the cost of a pathological (e.g. 1 MB) text.
MAX_TOKENS = 512


def distill_rows(embed_tokens: Callable[[NDArray[np.int64]], NDArray[np.floating]], input_ids: NDArray[np.int64],
                 batch_size: int = 2048) -> NDArray[np.float32]:
    """One vector per token, each token embedded alone by its model, ``(len(input_ids), d)``.

    The one distillation routine: ``embed_tokens`` says how a model embeds tokens alone (MiniLM:
    :func:`distill_token_vectors`; multilingual e5: :func:`eofusion.social.e5.distill_static_table`).

    Args:
        embed_tokens: ``ids -> (len(ids), d)``, each row the model's pooled output for that token alone.
        input_ids: Token ids to embed (usually the vocabulary).
        batch_size: Tokens per call.
    """
    out = [np.asarray(embed_tokens(input_ids[start:start + batch_size]), dtype=np.float32)
           for start in range(0, len(input_ids), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def distill_token_vectors(model: Any, input_ids: NDArray[np.int64], cls_id: int, sep_id: int,
                          batch_size: int = 2048) -> NDArray[np.float32]:
    """Mean-pooled output of ``model`` for each token alone (``[CLS] token [SEP]``), ``(len(input_ids), d)``.

    Args:
        model: A Hugging Face encoder (``last_hidden_state``), e.g. MiniLM's ``auto_model``.
        input_ids: Token ids to embed (usually the whole vocabulary).
        cls_id: The ``[CLS]`` id framing each token.
        sep_id: The ``[SEP]`` id framing each token.
        batch_size: Tokens per forward pass.
    """
    import torch

    def framed_forward(batch: NDArray[np.int64]) -> NDArray[np.float32]:
        with torch.no_grad():
            ids = torch.as_tensor(batch, dtype=torch.long)
            framed = torch.stack([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], dim=1)
            hidden = model(input_ids=framed, attention_mask=torch.ones_like(framed)).last_hidden_state
            pooled: NDArray[np.float32] = hidden.mean(dim=1).numpy().astype(np.float32)
            return pooled

    return distill_rows(framed_forward, input_ids, batch_size)


def zipf(ranks: NDArray[np.int64], vocab_size: int) -> NDArray[np.float64]:
    """Zipf probability of the tokens at ``ranks`` (0-based) in a frequency-ordered vocabulary of ``vocab_size``;
    rank 0 counts as 2, the first rank being left to the Zipf head, as model2vec does."""
    total = (1.0 / np.arange(2, vocab_size + 2, dtype=np.float64)).sum()
    out: NDArray[np.float64] = (1.0 / (np.asarray(ranks, np.float64) + 2.0)) / total
    return out


def sif_table(token_vectors: NDArray[np.floating], real: NDArray[np.bool_], a: float = SIF_A,
              p: NDArray[np.float64] | None = None) -> NDArray[np.float32]:
    """Centre the token vectors on the real tokens' mean and weight each row by its SIF weight.

    Args:
        token_vectors: ``(V, d)``, row = token id.
        real: ``(V,)`` True for tokens that occur in text (not special, not ``[unused]``).
        a: SIF constant.
        p: Each row's token probability; default: Zipf from the row order (:func:`zipf`; rows = the vocabulary).
    """
    if not real.any():
        raise ValueError("no real token to centre the table on")
    centred = token_vectors - token_vectors[real].mean(axis=0)
    if p is None:
        p = zipf(np.arange(len(token_vectors)), len(token_vectors))
    return (centred * (a / (a + p))[:, None]).astype(np.float32)


def pool(table: NDArray[np.float32], token_ids: Sequence[Sequence[int]]) -> NDArray[np.float32]:
    """Sum each text's token rows and L2-normalise, ``(n, d)``; a text without tokens gets a zero vector.

    Args:
        table: ``(V, d)`` weighted token table (:func:`sif_table`).
        token_ids: Token ids of each text, without special tokens.
    """
    from scipy.sparse import csr_matrix

    lens = np.fromiter((min(len(t), MAX_TOKENS) for t in token_ids), dtype=np.int64, count=len(token_ids))
    flat = np.concatenate([np.asarray(t[:MAX_TOKENS], dtype=np.int64) for t in token_ids]) if len(token_ids) else \
        np.zeros(0, np.int64)
    indptr = np.concatenate([[0], np.cumsum(lens)])
    # One row of token counts per text: the product sums each text's rows on its own, so a text's vector does not
    # depend on its batch-mates (and no (tokens x d) array is materialised).
    counts = csr_matrix((np.ones(len(flat), np.float32), flat, indptr), shape=(len(token_ids), table.shape[0]))
    sums = np.asarray(counts @ table, dtype=np.float32)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    out = np.divide(sums, norms, out=np.zeros_like(sums), where=norms > 0)
    return out


@dataclass(frozen=True)
class StaticModel:
    """A weighted token table and the tokenizer that indexes it; ``encode`` mirrors sentence-transformers'.

    Attributes:
        table: ``(V, d)`` float32 rows (:func:`sif_table`).
        tokenizer: A Hugging Face (fast) tokenizer of the distilled model.
    """

    table: NDArray[np.float32]
    tokenizer: Any

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens, cut at :data:`MAX_TOKENS`."""
        ids: list[list[int]] = self.tokenizer(list(texts), add_special_tokens=False, truncation=True,
                                              max_length=MAX_TOKENS)["input_ids"]
        return ids

    def encode(self, texts: Sequence[str], **_: Any) -> NDArray[np.float32]:
        """L2-normalised vectors of ``texts`` (keyword arguments of sentence-transformers are accepted, unused:
        there is no batch to size, and vectors are always normalised)."""
        return pool(self.table, self.token_ids(texts))
