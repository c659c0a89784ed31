"""Pretrained word vectors aligned with a course vocabulary (content level (a) of the hands-on task).

Two sources, one result type:

* :func:`train_cbow` trains word2vec CBOW (Mikolov et al. 2013) with gensim on the course corpus,
  as Ask-the-GRU (Bansal et al. 2016, section 5) pre-trains its word embeddings; the result is
  cached on disk, keyed by a hash of the corpus and of the settings, so a notebook re-run is instant.
* :func:`load_word_vectors` reads a standard word2vec or GloVe *text* file that a learner has.

Both return :class:`WordVectors`: a ``(len(vocab), dim)`` float32 matrix whose row ``i`` is the
vector of ``vocab.itos[i]`` (row 0, the padding token, is always zero), plus which rows were found,
so the coverage of the vocabulary can be reported before the vectors are used.

Settings and inputs are checked before any work (:mod:`course_lib.validation`), and a vector file
with NaN or infinite values is refused with the line that has them.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from course_lib.data import cache_dir
from course_lib.validation import check_choice, check_int, check_nonnegative

PAD_ID = 0  # course_lib.text puts <PAD> at id 0


@dataclass
class WordVectors:
    """Word vectors aligned with a vocabulary.

    ``matrix`` is ``(len(vocab), dim)`` float32, ``found`` ``(len(vocab),)`` bool (True where the
    source had a vector for the word), ``source`` a short description of where they came from.
    """

    matrix: np.ndarray
    found: np.ndarray
    source: str

    def __post_init__(self):
        self.matrix = np.asarray(self.matrix, dtype=np.float32)
        self.found = np.asarray(self.found, dtype=bool)
        if self.matrix.ndim != 2:
            raise ValueError(f"matrix must have shape (vocab_size, dim), got shape {self.matrix.shape}")
        if self.found.shape != (self.matrix.shape[0],):
            raise ValueError(f"found must have one entry per row of matrix, shape ({self.matrix.shape[0]},), "
                             f"got {self.found.shape}")
        if not np.all(np.isfinite(self.matrix)):
            raise ValueError(f"matrix has NaN or inf in {int((~np.isfinite(self.matrix)).any(axis=1).sum())} rows; "
                             "word vectors must be finite")

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def coverage(self, counts: np.ndarray | None = None) -> dict:
        """How much of the vocabulary (and, given corpus ``counts`` per id, of the tokens) has a vector.

        The padding row is left out of both ratios: it never has a vector and is never a token.
        """
        found = self.found[1:]
        report = {
            "source": self.source,
            "dim": self.dim,
            "vocab_size": int(found.size),
            "found": int(found.sum()),
            "missing": int(found.size - found.sum()),
            "type_coverage": float(found.mean()) if found.size else 0.0,
        }
        if counts is not None:
            counts = np.asarray(counts, dtype=np.float64)[1:]
            if counts.shape != found.shape:
                raise ValueError(
                    f"counts has {counts.size + 1} entries but the vocabulary has {found.size + 1}; "
                    "pass vocab.counts of the vocabulary the vectors were aligned with"
                )
            total = counts.sum()
            report["token_coverage"] = float(counts[found].sum() / total) if total else 0.0
        return report


def _stable_hash(text: str) -> int:
    # gensim seeds some vectors with hash(word); Python's str hash changes between processes,
    # a CRC does not, so the same seed gives the same vectors in every run.
    return zlib.crc32(text.encode("utf-8"))


def _check_vocab(vocab) -> None:
    if not (hasattr(vocab, "itos") and hasattr(vocab, "stoi")):
        raise ValueError(f"vocab must be a course_lib.text.Vocabulary (with itos and stoi), got {type(vocab).__name__}")


def _vocab_docs(token_docs: Iterable[Sequence[str]], vocab) -> list[list[str]]:
    """Map out-of-vocabulary tokens to the vocabulary's unknown token, drop padding."""
    _check_vocab(vocab)
    if isinstance(token_docs, str):
        raise ValueError("token_docs is one text; pass a list of token lists: [tokenize(t) for t in texts]")
    itos = vocab.itos
    unk = itos[1]
    out = []
    for i, doc in enumerate(token_docs):
        if isinstance(doc, str):
            raise ValueError(f"document {i} of token_docs is a string ({doc[:30]!r}), not a list of tokens; "
                             "pass [tokenize(t) for t in texts] (one document? wrap its tokens as [tokens])")
        out.append([t if t in vocab.stoi else unk for t in doc if t != itos[PAD_ID]])
    return out


def corpus_hash(docs: Sequence[Sequence[str]]) -> str:
    """sha256 of a tokenised corpus (document boundaries included); the cache key of its vectors."""
    h = hashlib.sha256()
    for doc in docs:
        h.update("\x1f".join(doc).encode("utf-8"))
        h.update(b"\x1e")
    return h.hexdigest()


def train_cbow(
    token_docs: Sequence[Sequence[str]],
    vocab,
    dim: int = 100,
    window: int = 5,
    negative: int = 5,
    epochs: int = 20,
    sample: float = 1e-3,
    seed: int = 0,
    use_cache: bool = True,
    cache_path: str | Path | None = None,
) -> WordVectors:
    """Train word2vec CBOW with negative sampling (gensim) on the course corpus.

    The corpus is ``token_docs`` (lists of tokens) with every word outside ``vocab`` replaced by
    the unknown token, so every vocabulary word seen in the corpus gets a vector and row ``i`` of
    the result belongs to ``vocab.itos[i]``. ``workers=1`` and a fixed seed make the run
    deterministic. The matrix is cached as ``.npz`` under ``cache_path`` (default
    :func:`course_lib.data.cache_dir` ``/ "word2vec"``, under ``$COURSE_CACHE_DIR`` when set), keyed
    by :func:`corpus_hash` and the settings.
    """
    dim, window, epochs = check_int("dim", dim), check_int("window", window), check_int("epochs", epochs)
    negative = check_int("negative", negative)  # hierarchical softmax is off: negative sampling must be on
    sample, seed = check_nonnegative("sample", sample), check_int("seed", seed, minimum=0)
    docs = [d for d in _vocab_docs(token_docs, vocab) if d]
    if not docs:
        raise ValueError("token_docs has no tokens: train_cbow needs a non-empty tokenised corpus")
    settings = dict(dim=dim, window=window, negative=negative, epochs=epochs, sample=sample, seed=seed,
                    vocab=corpus_hash([vocab.itos]))
    key = hashlib.sha256((corpus_hash(docs) + json.dumps(settings, sort_keys=True)).encode()).hexdigest()[:20]
    path = Path(cache_path) if cache_path is not None else cache_dir() / "word2vec"
    file = path / f"cbow_{key}.npz"
    if use_cache and file.exists():
        with np.load(file) as z:
            return WordVectors(z["matrix"], z["found"], f"word2vec CBOW (cached {file.name})")

    from gensim.models import Word2Vec

    model = Word2Vec(
        sentences=docs, vector_size=dim, window=window, min_count=1, sg=0, cbow_mean=1, hs=0,
        negative=negative, sample=sample, epochs=epochs, seed=seed, workers=1, hashfxn=_stable_hash,
    )
    matrix = np.zeros((len(vocab), dim), dtype=np.float32)
    found = np.zeros(len(vocab), dtype=bool)
    for i, word in enumerate(vocab.itos):
        if i != PAD_ID and word in model.wv.key_to_index:
            matrix[i] = model.wv[word]
            found[i] = True
    if use_cache:
        path.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(".tmp.npz")
        np.savez(tmp, matrix=matrix, found=found)
        os.replace(tmp, file)  # atomic, so a half-written file is never read back
    return WordVectors(matrix, found, f"word2vec CBOW trained on {len(docs)} documents")


def load_word_vectors(
    path: str | Path,
    vocab,
    dim: int | None = None,
    lowercase: bool = True,
    missing: str = "zeros",
    seed: int = 0,
) -> WordVectors:
    """Read a word2vec or GloVe text file and align it with ``vocab``.

    Both formats are ``word v1 v2 ... vd`` per line; word2vec adds a ``n_words dim`` header line,
    which is detected and skipped. ``.gz`` files are read directly. Only vocabulary words are kept.
    ``dim`` is the dimension the model expects: a file of another dimension is an error, as is a
    file sharing no word with the vocabulary. Words without a vector get zeros (``missing="zeros"``)
    or small random vectors of the same scale as the found ones (``missing="random"``, seeded).
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"word vector file {str(path)!r} does not exist")
    _check_vocab(vocab)
    missing = check_choice("missing", missing, ("zeros", "random"))
    dim = None if dim is None else check_int("dim", dim)
    seed = check_int("seed", seed, minimum=0)
    opener = gzip.open if path.suffix == ".gz" else open
    rows: dict[int, np.ndarray] = {}
    file_dim = None
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            parts = line.rstrip().split(" ")
            if line_no == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                file_dim = int(parts[1])  # word2vec header: "n_words dim"
                continue
            if len(parts) < 2:
                continue
            if file_dim is None:
                file_dim = len(parts) - 1
            if len(parts) - 1 != file_dim:
                raise ValueError(
                    f"{path.name} line {line_no} has {len(parts) - 1} numbers, earlier lines have {file_dim}; "
                    "is this a word2vec/GloVe text file (binary files are not supported)?"
                )
            word = parts[0].lower() if lowercase else parts[0]
            idx = vocab.stoi.get(word)
            if idx is not None and idx != PAD_ID and idx not in rows:
                try:
                    vec = np.asarray(parts[1:], dtype=np.float32)
                except ValueError:
                    raise ValueError(f"{path.name} line {line_no}: the vector of {parts[0]!r} has a value that is "
                                     f"not a number ({' '.join(parts[1:4])} ...)") from None
                if not np.all(np.isfinite(vec)):
                    raise ValueError(f"{path.name} line {line_no}: the vector of {parts[0]!r} has NaN or inf values; "
                                     "the file is damaged or was written by a training run that diverged")
                rows[idx] = vec
    if file_dim is None:
        raise ValueError(f"{path.name} contains no vectors")
    if dim is not None and file_dim != dim:
        raise ValueError(
            f"{path.name} has {file_dim}-dimensional vectors but the model expects dim={dim}; "
            f"use a file with {dim}-dimensional vectors or set the model's word dimension to {file_dim}"
        )
    if not rows:
        raise ValueError(
            f"{path.name} shares no word with the vocabulary ({len(vocab)} words); check the language "
            "and the casing (lowercase=True lowercases the file's words to match course_lib.text.tokenize)"
        )
    matrix = np.zeros((len(vocab), file_dim), dtype=np.float32)
    found = np.zeros(len(vocab), dtype=bool)
    for idx, vec in rows.items():
        matrix[idx] = vec
        found[idx] = True
    if missing == "random":
        scale = float(matrix[found].std())
        rng = np.random.default_rng(seed)
        fill = ~found
        fill[PAD_ID] = False
        matrix[fill] = rng.normal(0.0, scale, size=(int(fill.sum()), file_dim)).astype(np.float32)
    return WordVectors(matrix, found, f"{path.name}")
