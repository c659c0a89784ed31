"""The text pipeline of Ask the GRU (Bansal et al. 2016, section 4.1.2): "very mild preprocessing".

Numbers become ``<NUM>``, words with a total frequency below 5 become ``<UNK>``, stop words and
frequent words are kept. On top of that, the CiteULike abstracts carry LaTeX/BibTeX markup
(``Barab\\{\\'a\\}si``, ``\\&``, ``{T}he``, ``$\\alpha$``), which :func:`tokenize` strips.

Decisions (the paper does not state them):

* Tokens are maximal runs of letters and digits; every other character separates tokens, so
  punctuation is dropped (the paper's Figure 2 keeps it) and ``graph-theoretic`` becomes
  ``graph theoretic`` (pass ``keep_hyphens=True`` to keep in-word hyphens). Splitting gives fewer
  ``<UNK>`` on a small corpus: ``protein-protein`` is rare, ``protein`` is not.
* Accents are dropped (``barabási`` and ``Barab\\{\\'a\\}si`` both give ``barabasi``).
* A token is a number when it is digits with optional ``.``/``,`` groups (``2000``, ``3.5``,
  ``1,000``) and is not glued to letters: ``p53`` and ``2000s`` stay words.
* ``<PAD>`` is id 0, ``<UNK>`` id 1 and ``<NUM>`` id 2 in every vocabulary, then words by
  decreasing corpus frequency, ties alphabetically, so a vocabulary is a deterministic function
  of the corpus.
* Long documents keep their first ``max_len`` tokens (the title comes first in
  ``CiteULike.texts("title+abstract")``).
"""
from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import scipy.sparse as sp

PAD = "<PAD>"
UNK = "<UNK>"
NUM = "<NUM>"
SPECIALS = (PAD, UNK, NUM)
PAD_ID, UNK_ID, NUM_ID = 0, 1, 2

# LaTeX accent commands written with a symbol: \'a, \"{u}, \^o, \~n, \`e, \=a, \.z
_ACCENT = re.compile(r"\\[`'^\"~=.](?=\{?[A-Za-z])")
_COMMAND = re.compile(r"\\([A-Za-z]+)")
_ESCAPED = re.compile(r"\\([&%$#_{}\\])")
# Formatting commands whose name is not a word of the text.
_DROP_COMMANDS = {
    "textendash", "textemdash", "textit", "textbf", "textrm", "textsc",
    "texttt", "textsuperscript", "textsubscript", "emph", "it", "em", "bf", "rm", "sc", "tt", "sf",
    "cite", "ref", "url", "mathscr", "mathcal", "mathbf", "mathrm", "mathit", "mathbb", "bbb",
    "scr", "left", "right", "mbox", "hbox", "textasciitilde",
}
# Letters written as commands; they sit inside words, so they are joined, not separated.
_LETTER_COMMANDS = {"ss": "ss", "aa": "a", "ae": "ae", "oe": "oe", "o": "o", "l": "l", "i": "i", "j": "j"}
# {\textless}i{\textgreater} is an HTML tag in disguise: turned back into "<i>", then dropped.
_ANGLE_COMMANDS = {"textless": "<", "textgreater": ">"}
_HTML_TAG = re.compile(r"</?[A-Za-z][^<>]{0,20}>")
_NUMBER = r"\d+(?:[.,]\d+)*(?![^\W_])"
_TOKEN = re.compile(rf"({_NUMBER})|([^\W_]+)")
_TOKEN_HYPHEN = re.compile(rf"({_NUMBER})|([^\W_]+(?:-[^\W_]+)*)")


def _latex_command(match: re.Match) -> str:
    name = match.group(1)
    if name.lower() in _ANGLE_COMMANDS:
        return _ANGLE_COMMANDS[name.lower()]
    if name.lower() in _DROP_COMMANDS:
        return " "
    if name.lower() in _LETTER_COMMANDS:
        return _LETTER_COMMANDS[name.lower()]
    return f" {name} "  # \alpha -> alpha, \times -> times: the command name is the word


def clean_latex(text: str) -> str:
    """Remove the LaTeX/BibTeX markup found in CiteULike abstracts, keeping the words."""
    for _ in range(3):  # some abstracts are escaped twice: &amp;quot; -> &quot; -> "
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    # BibTeX exports often double the backslash ({\\textless}); one is enough for what follows.
    text = re.sub(r"\\+", r"\\", text)
    text = _ACCENT.sub("", text)
    text = _ESCAPED.sub(lambda m: "" if m.group(1) in "{}" else " ", text)
    text = _COMMAND.sub(_latex_command, text)
    text = text.replace("{", "").replace("}", "").replace("$", " ")
    text = _HTML_TAG.sub(" ", text)
    # NFKD splits "á" into "a" + a combining accent, which is then dropped.
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch))


def tokenize(text: str, keep_hyphens: bool = False) -> list[str]:
    """Lowercased word tokens of ``text`` with numbers replaced by ``<NUM>`` (module docstring)."""
    if not isinstance(text, str):
        raise ValueError(f"tokenize expects a string, got {type(text).__name__}; "
                         "pass one document at a time")
    pattern = _TOKEN_HYPHEN if keep_hyphens else _TOKEN
    return [NUM if num else word for num, word in pattern.findall(clean_latex(text).lower())]


def _as_token_docs(docs: Iterable, keep_hyphens: bool = False) -> list[list[str]]:
    """Accept raw texts or already tokenised documents."""
    out = []
    for i, doc in enumerate(docs):
        if isinstance(doc, str):
            out.append(tokenize(doc, keep_hyphens=keep_hyphens))
        elif isinstance(doc, (list, tuple, np.ndarray)):
            out.append([str(t) for t in doc])
        else:
            raise ValueError(f"document {i} is a {type(doc).__name__}; expected a string or a list of tokens")
    return out


class Vocabulary:
    """Word <-> id mapping with ``<PAD>``=0, ``<UNK>``=1, ``<NUM>``=2.

    ``counts[i]`` is the corpus frequency of word ``i``; ``counts[UNK_ID]`` is the total frequency
    of the words mapped to ``<UNK>`` and ``counts[PAD_ID]`` is 0.
    """

    pad_id, unk_id, num_id = PAD_ID, UNK_ID, NUM_ID

    def __init__(self, itos: Sequence[str], counts: Sequence[int] | None = None):
        itos = list(itos)
        if tuple(itos[:3]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}, got {tuple(itos[:3])}")
        if len(set(itos)) != len(itos):
            raise ValueError("vocabulary words must be unique")
        self.itos = itos
        self.stoi = {w: i for i, w in enumerate(itos)}
        self.counts = np.zeros(len(itos), dtype=np.int64) if counts is None else np.asarray(counts, dtype=np.int64)
        if self.counts.shape != (len(itos),):
            raise ValueError(f"counts has shape {self.counts.shape}, expected ({len(itos)},)")

    @classmethod
    def build(cls, token_docs: Iterable, min_count: int = 5, max_size: int | None = None) -> "Vocabulary":
        """Words with total frequency >= ``min_count`` (Ask the GRU uses 5); the rest is ``<UNK>``.

        ``token_docs`` are token lists (or raw strings, tokenised with :func:`tokenize`).
        ``max_size`` caps ``len(vocab)`` including the three special tokens.
        """
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        if max_size is not None and max_size < len(SPECIALS):
            raise ValueError(f"max_size must be >= {len(SPECIALS)} (room for {SPECIALS}), got {max_size}")
        freq = Counter()
        for doc in _as_token_docs(token_docs):
            freq.update(doc)
        n_num = freq.pop(NUM, 0)
        n_unk = freq.pop(UNK, 0)
        freq.pop(PAD, None)
        words = sorted((w for w, c in freq.items() if c >= min_count), key=lambda w: (-freq[w], w))
        if max_size is not None:
            words = words[: max_size - len(SPECIALS)]
        kept = set(words)
        n_unk += sum(c for w, c in freq.items() if w not in kept)
        counts = [0, n_unk, n_num] + [freq[w] for w in words]
        return cls(list(SPECIALS) + words, counts)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, word: str) -> bool:
        return word in self.stoi

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words, {int(self.counts.sum())} tokens counted)"

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Token ids; words outside the vocabulary get ``UNK_ID``, and so does a literal ``<PAD>``
        token (id 0 must only ever mean padding, or the masks would lie)."""
        if isinstance(tokens, str):
            raise ValueError("encode expects a list of tokens; call tokenize(text) first")
        return [self.stoi.get(t, UNK_ID) or UNK_ID for t in tokens]

    def decode(self, ids: Iterable[int], skip_pad: bool = True) -> list[str]:
        """Words of ``ids`` (padding dropped unless ``skip_pad=False``)."""
        ids = np.asarray(ids if hasattr(ids, "__len__") else list(ids)).ravel()  # lists, arrays, tensors
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"word ids must be integers, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            bad = ids[(ids < 0) | (ids >= len(self))][0]
            raise ValueError(f"word ids must be in [0, {len(self)}), got {bad}")
        return [self.itos[i] for i in ids.tolist() if not (skip_pad and i == PAD_ID)]


@dataclass
class EncodedCorpus:
    """Right-padded word ids of every document.

    ``ids`` int64 ``(n_docs, width)`` with 0 as padding, ``mask`` float32 ``(n_docs, width)`` with
    1.0 on real tokens, ``lengths`` int64 ``(n_docs,)``. ``width`` is the longest document after
    truncation (at most ``max_len``), not always ``max_len``: titles do not need 300 columns.
    ``n_truncated`` / ``n_empty`` count the documents cut to ``max_len`` / padded with one
    ``<UNK>`` because they had no token.
    """

    ids: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    n_truncated: int = 0
    n_empty: int = 0

    def __len__(self) -> int:
        return self.ids.shape[0]

    @property
    def width(self) -> int:
        return self.ids.shape[1]


def encode_corpus(texts_or_token_docs: Iterable, vocab: Vocabulary, max_len: int = 300,
                  allow_empty: bool = False, keep_hyphens: bool = False) -> EncodedCorpus:
    """Encode, truncate to the first ``max_len`` tokens and right-pad every document.

    An empty document (no token at all) raises a ValueError naming it, unless ``allow_empty``:
    then it becomes a single ``<UNK>`` (a GRU needs at least one step) and is counted in
    ``n_empty``.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    docs = _as_token_docs(texts_or_token_docs, keep_hyphens=keep_hyphens)
    if not docs:
        raise ValueError("encode_corpus got no documents")
    encoded, n_truncated, n_empty = [], 0, 0
    for i, doc in enumerate(docs):
        ids = vocab.encode(doc)
        if not ids:
            if not allow_empty:
                raise ValueError(f"document {i} has no tokens; drop it, or pass allow_empty=True "
                                 "to encode it as a single <UNK>")
            ids, n_empty = [UNK_ID], n_empty + 1
        if len(ids) > max_len:
            ids, n_truncated = ids[:max_len], n_truncated + 1
        encoded.append(ids)
    lengths = np.array([len(d) for d in encoded], dtype=np.int64)
    out = np.zeros((len(encoded), int(lengths.max())), dtype=np.int64)  # (n_docs, width)
    for i, d in enumerate(encoded):
        out[i, : len(d)] = d
    mask = (np.arange(out.shape[1])[None, :] < lengths[:, None]).astype(np.float32)  # (n_docs, width)
    return EncodedCorpus(out, mask, lengths, n_truncated, n_empty)


def count_matrix(docs, vocab: Vocabulary) -> sp.csr_matrix:
    """Bag-of-words counts ``(n_docs, len(vocab))`` int64; the ``<PAD>`` column is always 0.

    ``docs`` is an :class:`EncodedCorpus` (counts the truncated text), token lists or raw texts.
    """
    if isinstance(docs, EncodedCorpus):
        rows, cols = np.nonzero(docs.mask)
        cols = docs.ids[rows, cols]
        n_docs = len(docs)
    else:
        encoded = [vocab.encode(d) for d in _as_token_docs(docs)]
        n_docs = len(encoded)
        rows = np.repeat(np.arange(n_docs), [len(d) for d in encoded])
        cols = np.fromiter((i for d in encoded for i in d), dtype=np.int64, count=len(rows))
    if cols.size and cols.max() >= len(vocab):
        raise ValueError(f"word id {cols.max()} is outside the vocabulary of {len(vocab)} words; "
                         "encode the corpus with this vocabulary")
    keep = cols != PAD_ID
    data = np.ones(int(keep.sum()), dtype=np.int64)
    counts = sp.csr_matrix((data, (rows[keep], cols[keep])), shape=(n_docs, len(vocab)))
    counts.sum_duplicates()
    return counts


def _idf_from_counts(counts: sp.csr_matrix, smooth_idf: bool) -> np.ndarray:
    n_docs = counts.shape[0]
    df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float64)
    if smooth_idf:
        # as if one extra document contained every word once: no division by zero, idf >= 1
        idf = np.log((1.0 + n_docs) / (1.0 + df)) + 1.0
    else:
        idf = np.zeros_like(df)
        seen = df > 0
        idf[seen] = np.log(n_docs / df[seen])  # unseen words get 0: they never occur anyway
    idf[PAD_ID] = 0.0
    return idf


def idf_vector(docs, vocab: Vocabulary, smooth_idf: bool = False) -> np.ndarray:
    """``idf[w] = log(N / df(w))`` for every vocabulary word, shape ``(len(vocab),)``.

    With ``smooth_idf``: ``log((1 + N) / (1 + df)) + 1``. ``idf[PAD_ID]`` is 0, and so is the
    idf of a word that occurs in no document (unsmoothed). Used to weight word vectors
    (the "TF-IDF weighted word vectors" content encoder of the hands-on task).
    """
    return _idf_from_counts(count_matrix(docs, vocab), smooth_idf)


def tfidf_matrix(docs, vocab: Vocabulary, sublinear_tf: bool = False, smooth_idf: bool = False,
                 normalize: bool = True) -> sp.csr_matrix:
    """TF-IDF ``(n_docs, len(vocab))`` float64 csr: ``tf * idf`` with ``tf`` the raw count
    (``1 + log(count)`` if ``sublinear_tf``) and ``idf`` from :func:`idf_vector`; rows
    L2-normalised when ``normalize`` (an all-zero row stays zero). Column ``PAD_ID`` is 0.
    """
    counts = count_matrix(docs, vocab)
    idf = _idf_from_counts(counts, smooth_idf)
    tf = counts.astype(np.float64)
    if sublinear_tf:
        tf.data = 1.0 + np.log(tf.data)
    out = sp.csr_matrix(tf @ sp.diags(idf))
    if normalize:
        norms = np.sqrt(np.asarray(out.multiply(out).sum(axis=1)).ravel())
        out = sp.csr_matrix(sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ out)
    out.eliminate_zeros()
    return out


def prepare_text(texts: Sequence[str], min_count: int = 5, max_len: int = 300,
                 max_size: int | None = None, allow_empty: bool = False,
                 keep_hyphens: bool = False) -> tuple[Vocabulary, EncodedCorpus]:
    """Tokenise ``texts``, build the vocabulary on the full (untruncated) documents, encode.

    The vocabulary sees every document, test papers included: it uses no like, so the cold-start
    protocol stays clean (Ask the GRU builds one vocabulary for the whole corpus too).
    """
    docs = _as_token_docs(texts, keep_hyphens=keep_hyphens)
    vocab = Vocabulary.build(docs, min_count=min_count, max_size=max_size)
    return vocab, encode_corpus(docs, vocab, max_len=max_len, allow_empty=allow_empty)
