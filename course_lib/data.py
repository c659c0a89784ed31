"""Datasets of the course: CiteULike-a (papers, users, tags) and RecSys Challenge 2015 sessions.

Three tiers:

* ``tiny``: a real excerpt committed in ``data/`` (built by ``scripts/build_tiny_data.py``);
  every notebook and test runs on it offline.
* ``small``: the hands-on tier: the 1,929 CiteULike-a papers with title and abstract and the RSC15
  100k slice.
* ``full``: all 16,980 CiteULike-a papers (titles for all, abstracts for the 1,929), and the full
  RSC15 clicks preprocessed by the learner with ``course preprocess-rsc15``.

``small`` and ``full`` files are looked up in ``$COURSE_DATA_DIR`` first (a local copy laid out as
``citeulike-a/...`` and ``yoochoose-rsc15-100k/...``), then in the download cache, and are fetched
from their public sources with a pinned sha256 when missing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

TEXT_FIELDS = ("title", "abstract", "title+abstract")


@dataclass
class CiteULike:
    """Users' paper libraries with the papers' text and tags.

    ``likes`` is ``(n_users, n_papers)``; row ``u`` is user ``u``'s library. ``paper_ids`` and
    ``user_ids`` give the original CiteULike-a index (0-based) of each column and row.
    """

    tier: str
    likes: sp.csr_matrix
    titles: list[str]
    abstracts: list[str]
    tag_names: list[str]
    paper_tags: sp.csr_matrix
    citations: sp.csr_matrix
    paper_ids: np.ndarray
    user_ids: np.ndarray

    @property
    def n_users(self) -> int:
        return self.likes.shape[0]

    @property
    def n_papers(self) -> int:
        return self.likes.shape[1]

    @property
    def n_tags(self) -> int:
        return len(self.tag_names)

    @property
    def has_abstract(self) -> np.ndarray:
        return np.array([bool(a) for a in self.abstracts])

    def texts(self, field: str = "title+abstract") -> list[str]:
        """The text of every paper: ``"title"``, ``"abstract"`` or ``"title+abstract"``."""
        if field == "title":
            return list(self.titles)
        if field == "abstract":
            return list(self.abstracts)
        if field == "title+abstract":
            return [f"{t}. {a}" if a else t for t, a in zip(self.titles, self.abstracts)]
        raise ValueError(f"field must be one of {TEXT_FIELDS}, got {field!r}")

    def user_library(self, user: int) -> np.ndarray:
        """Indices of the papers in one user's library."""
        check_ids([user], self.n_users, "user")
        return self.likes.indices[self.likes.indptr[user] : self.likes.indptr[user + 1]].copy()

    def paper_users(self, paper: int) -> np.ndarray:
        """Indices of the users who have one paper in their library."""
        check_ids([paper], self.n_papers, "paper")
        return self.likes[:, paper].nonzero()[0]

    def summary(self) -> dict[str, int]:
        return {
            "users": self.n_users,
            "papers": self.n_papers,
            "likes": int(self.likes.nnz),
            "tags": self.n_tags,
            "tag assignments": int(self.paper_tags.nnz),
            "papers with abstract": int(self.has_abstract.sum()),
        }


@dataclass
class Sessions:
    """Click sessions: frames with columns ``SessionId`` (int64), ``ItemId`` (int64), ``Time``
    (float64, Unix seconds), sorted by session then time.

    ``train``/``test`` is the paper's split (last day as test); ``train_tr``/``valid`` splits
    ``train`` again by its last day, for tuning.
    """

    tier: str
    train: pd.DataFrame
    test: pd.DataFrame
    train_tr: pd.DataFrame | None = None
    valid: pd.DataFrame | None = None
    meta: dict = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        rows = {}
        for name in ("train", "test", "train_tr", "valid"):
            df = getattr(self, name)
            if df is not None:
                rows[name] = {
                    "events": len(df),
                    "sessions": df["SessionId"].nunique(),
                    "items": df["ItemId"].nunique(),
                }
        return pd.DataFrame(rows).T


def check_ids(ids, n: int, what: str) -> np.ndarray:
    """Return ``ids`` as an int64 array, or raise a ValueError naming the bad ids and the range."""
    arr = np.asarray(ids)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} ids must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    bad = arr[(arr < 0) | (arr >= n)]
    if bad.size:
        shown = ", ".join(str(b) for b in bad[:5]) + (" ..." if bad.size > 5 else "")
        raise ValueError(f"{what} ids must be in [0, {n}), got {shown}")
    return arr


# --------------------------------------------------------------------------------------------
# Where files come from
# --------------------------------------------------------------------------------------------
import csv
import hashlib
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# A checkout has data/ at its top; a wheel (pip install of the repository, as on Colab) carries the
# same files as course_lib/_data (setup.py).
DATA_ROOT = REPO_ROOT / "data" if (REPO_ROOT / "data" / "tiny" / "SHA256SUMS").is_file() else Path(__file__).resolve().parent / "_data"
TINY_DIR = DATA_ROOT / "tiny"
DATA_DIR_ENV = "COURSE_DATA_DIR"
CACHE_DIR_ENV = "COURSE_CACHE_DIR"
TIERS = ("tiny", "small", "full")

_GH = "https://raw.githubusercontent.com"
_CITEULIKE = f"{_GH}/js05212/citeulike-a/91b603922d7f2d3db18071d4798bf78c9c5d1680"
_TITLES = f"{_GH}/ericproffitt/TopicModelsVB.jl/a91ae62af7fac40d27eb4776be8c79c59bac96b7/datasets/citeu/citeutitles.txt"
_ABSTRACTS = f"{_GH}/hebatef/citeulike-CDL/78833d8c0bcea80b8345b19a4fa067f41978361a/data/dummy/raw-data.csv"
_RSC15 = f"{_GH}/rn5l/session-rec/5dcd583cbd8d44703a5248b9a308945f24b91390/data/rsc15/prepared"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a larger tier: where it lives locally, where it comes from, its sha256."""

    relpath: str
    url: str
    sha256: str


REMOTE_FILES: dict[str, RemoteFile] = {
    f.relpath: f
    for f in [
        RemoteFile("citeulike-a/users.dat", f"{_CITEULIKE}/users.dat",
                   "53211d82c14ff261e595634d285ed9fbf8049cf81dcb751d924d695b9612a02c"),
        RemoteFile("citeulike-a/item-tag.dat", f"{_CITEULIKE}/item-tag.dat",
                   "0f7b432796a5038ed2631c02b99d70e636123673afc11bf9e051de5b49467890"),
        RemoteFile("citeulike-a/tags.dat", f"{_CITEULIKE}/tags.dat",
                   "c02b3e5ee1a57f88f3a598b2040018bb198f54cd0c11116fa7a0db905b6f60e3"),
        RemoteFile("citeulike-a/citations.dat", f"{_CITEULIKE}/citations.dat",
                   "78458ba6b6f013552c43f47dbec1c2d19073820155c40567744cd8a038044364"),
        RemoteFile("citeulike-a/titles.txt", _TITLES,
                   "bd4a62711f732185595348c06e6a5baa470e1ee4f61b981f13b25e1822d1e7ed"),
        RemoteFile("citeulike-a/abstracts_subset/raw-data.subset.csv", _ABSTRACTS,
                   "18341be9922b96f24bb85f6c04a4180d921015f028a3c029c22c1973e9f0a83f"),
        RemoteFile("yoochoose-rsc15-100k/yoochoose-clicks-100k_train_full.txt",
                   f"{_RSC15}/yoochoose-clicks-100k_train_full.txt",
                   "9842c90358298ee784fcf0c9dccb2eeb283ab04368e53bdeee896747f4c03e1e"),
        RemoteFile("yoochoose-rsc15-100k/yoochoose-clicks-100k_test.txt",
                   f"{_RSC15}/yoochoose-clicks-100k_test.txt",
                   "380410c606403531019e1ec0b4d192ef90492d594b9b5a91633b860618dd7136"),
        RemoteFile("yoochoose-rsc15-100k/yoochoose-clicks-100k_train_tr.txt",
                   f"{_RSC15}/yoochoose-clicks-100k_train_tr.txt",
                   "fb4c6381c8e5bc4de51553cb1ed210fb4016c87d2425d58344cd6b19e81c133a"),
        RemoteFile("yoochoose-rsc15-100k/yoochoose-clicks-100k_train_valid.txt",
                   f"{_RSC15}/yoochoose-clicks-100k_train_valid.txt",
                   "14fca72e690c19b0da391059b7cf2c1b611cddbd1248ce93578a039ddb26ea69"),
    ]
}
CITEULIKE_FILES = [k for k in REMOTE_FILES if k.startswith("citeulike-a/")]
RSC15_FILES = [k for k in REMOTE_FILES if k.startswith("yoochoose-rsc15-100k/")]


class DataMissingError(FileNotFoundError):
    """A data file is neither in the local copy, nor in the cache, nor downloadable now."""


class ChecksumError(ValueError):
    """A data file is there but its content is not the file the course was built on."""


def cache_dir() -> Path:
    """Where downloads go: ``$COURSE_CACHE_DIR`` or the user's cache directory."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("recsys-dl-course"))


def local_data_dir() -> Path | None:
    """The local copy named by ``$COURSE_DATA_DIR``, if any (for CI and offline machines)."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else None


def local_data_problem() -> str | None:
    """What is wrong with ``$COURSE_DATA_DIR`` (a typo'd path is otherwise silently ignored), or None."""
    local = local_data_dir()
    if local is None:
        return None
    if not local.exists():
        return f"{DATA_DIR_ENV}={local} does not exist: correct the path, or unset {DATA_DIR_ENV}"
    if not local.is_dir():
        return f"{DATA_DIR_ENV}={local} is a file, not a folder: point it at the folder that holds citeulike-a/"
    if not any((local / top).is_dir() for top in ("citeulike-a", "yoochoose-rsc15-100k")):
        return (f"{DATA_DIR_ENV}={local} has neither citeulike-a/ nor yoochoose-rsc15-100k/ in it: point it at "
                f"the folder that holds them, or unset {DATA_DIR_ENV}")
    return None


_VERIFIED: dict[tuple[str, float, int], str] = {}


def sha256_of(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_mtime, st.st_size)
    if key not in _VERIFIED:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _VERIFIED[key] = h.hexdigest()
    return _VERIFIED[key]


def _verify(path: Path, spec: RemoteFile) -> Path:
    digest = sha256_of(path)
    if digest != spec.sha256:
        raise ChecksumError(
            f"{path} is corrupt or a different version: its sha256 is {digest}, expected "
            f"{spec.sha256}. Delete it and run `course fetch` again (source: {spec.url}), or "
            f"point ${DATA_DIR_ENV} at a good copy."
        )
    return path


def locate(relpath: str, download: bool = True) -> Path:
    """Path of one larger-tier file, checked against its pinned sha256.

    Looks in ``$COURSE_DATA_DIR`` first, then in the cache; downloads into the cache when the file
    is in neither and ``download`` is true.
    """
    spec = REMOTE_FILES.get(relpath)
    if spec is None:
        raise ValueError(f"unknown data file {relpath!r}; known files: {sorted(REMOTE_FILES)}")
    local = local_data_dir()
    if local is not None and (local / relpath).is_file():
        return _verify(local / relpath, spec)
    cached = cache_dir() / relpath
    if cached.is_file():
        return _verify(cached, spec)
    if not download:
        raise DataMissingError(_missing_message([relpath]))
    return _download(spec, cached)


def _download(spec: RemoteFile, target: Path) -> Path:
    import pooch

    pooch.get_logger().setLevel("WARNING")  # one line per file is said by the caller, not by pooch
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        pooch.retrieve(spec.url, known_hash=f"sha256:{spec.sha256}", fname=target.name,
                       path=target.parent, progressbar=False)
    except ValueError as exc:  # pooch reports a hash mismatch as ValueError
        raise ChecksumError(f"downloaded {spec.url} but its sha256 is wrong: {exc}") from None
    except Exception as exc:  # no network, HTTP error, ...
        err = DataMissingError(_missing_message([spec.relpath], cause=exc))
        err.cause = exc
        raise err from None
    return target


def _offline(exc: Exception | None) -> bool:
    """True when ``exc`` says the network cannot be reached at all (not a single bad URL)."""
    return exc is not None and any(c.__name__ in ("ConnectionError", "Timeout") for c in type(exc).__mro__)


def _short_cause(exc: Exception) -> str:
    """One line for why a download failed; the network library's own message runs to several lines."""
    text = str(exc)
    for needle, say in (("NameResolution", "no network: the host name could not be resolved"),
                        ("Failed to establish a new connection", "no network: the connection was refused"),
                        ("ProxyError", "no network: the proxy refused the connection"),
                        ("timed out", "the connection timed out")):
        if needle in text or needle in type(exc).__name__:
            return say
    response = getattr(exc, "response", None)
    if getattr(response, "status_code", None):
        return f"the server answered HTTP {response.status_code}"
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first[:150]}"


def _missing_message(relpaths: list[str], cause: Exception | None = None) -> str:
    local = local_data_dir()
    lines = ["These data files are missing and could not be downloaded"
             + (f" ({_short_cause(cause)})" if cause else "") + ":"]
    for rel in relpaths:
        lines.append(f"  - {rel}  <-  {REMOTE_FILES[rel].url}")
    if local is None:
        where = "(not set)"
    elif not local.is_dir():
        where = f"{local} (which does not exist)"
    else:
        where = str(local)
    lines.append(f"Looked in: ${DATA_DIR_ENV}={where} and the cache {cache_dir()}.")
    lines.append(
        "Fix: connect to the internet and run `course fetch`, or download the files yourself and "
        f"set {DATA_DIR_ENV}=/path/to/copy (laid out as citeulike-a/... and yoochoose-rsc15-100k/...)."
        " The tiny tier (TIER='tiny') needs nothing."
    )
    return "\n".join(lines)


def tier_status() -> dict[str, str]:
    """Which tiers can be loaded right now without a download (for ``course check``)."""
    status = {"tiny": "present" if (TINY_DIR / "SHA256SUMS").is_file() else "MISSING (data/tiny)"}
    for label, rels in [("CiteULike small/full", CITEULIKE_FILES), ("RSC15 small", RSC15_FILES)]:
        missing, corrupt = 0, []
        for rel in rels:
            try:
                locate(rel, download=False)
            except DataMissingError:
                missing += 1
            except ChecksumError:
                corrupt.append(rel)
        if corrupt:
            status[label] = "CORRUPT: " + ", ".join(corrupt) + " (delete them and run `course fetch`)"
        elif missing:
            status[label] = f"not here yet ({missing} of {len(rels)} files to fetch)"
        else:
            status[label] = "present"
    full = cache_dir() / "rsc15-full"
    status["RSC15 full"] = "present" if (full / "rsc15_test.txt").is_file() else "not built (optional: course preprocess-rsc15)"
    return status


def fetch_all(relpaths: list[str] | None = None) -> list[Path]:
    """Download (or verify) every larger-tier file; used by ``course fetch``.

    Every file is tried, so one error lists every file that is missing (with the first reason the
    downloads failed) or corrupt, instead of stopping at the first one.
    """
    relpaths = relpaths or list(REMOTE_FILES)
    found, missing, corrupt, cause = [], [], [], None
    for rel in relpaths:
        try:
            # once the network is known to be down, only look for copies already here
            found.append(locate(rel, download=not _offline(cause)))
        except DataMissingError as exc:
            missing.append(rel)
            cause = cause or getattr(exc, "cause", None)
        except ChecksumError as exc:
            corrupt.append(str(exc))
    if corrupt or missing:
        text = "\n".join(corrupt + ([_missing_message(missing, cause=cause)] if missing else []))
        raise ChecksumError(text) if corrupt else DataMissingError(text)
    return found


def verify_tiny() -> None:
    """Check the committed tiny files against ``data/tiny/SHA256SUMS``."""
    sums = TINY_DIR / "SHA256SUMS"
    if not sums.is_file():
        raise DataMissingError(f"{sums} is missing: the tiny tier ships with the repository; "
                               "restore it with `git checkout data/` or rebuild it with scripts/build_tiny_data.py")
    for line in sums.read_text().splitlines():
        digest, rel = line.split(maxsplit=1)
        path = TINY_DIR / rel
        if not path.is_file():
            raise DataMissingError(f"{path} is missing; restore it with `git checkout data/`")
        got = sha256_of(path)
        if got != digest:
            raise ChecksumError(f"{path} was modified (sha256 {got}, expected {digest}); "
                                "restore it with `git checkout data/`")


# --------------------------------------------------------------------------------------------
# Parsers: every malformed line fails with file:line
# --------------------------------------------------------------------------------------------
def _read_text(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def parse_count_lists(path: Path, n_max: int | None = None, what: str = "index") -> list[np.ndarray]:
    """Parse the CiteULike ``N i1 ... iN`` format (users.dat, item-tag.dat, citations.dat)."""
    rows = []
    for lineno, line in enumerate(_read_text(path), start=1):
        parts = line.split()
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"{path}:{lineno}: expected integers 'N i1 ... iN', got {line[:60]!r}") from None
        if not values or values[0] != len(values) - 1:
            raise ValueError(f"{path}:{lineno}: the count {values[0] if values else '(empty line)'} "
                             f"does not match the {max(len(values) - 1, 0)} {what}es that follow")
        arr = np.asarray(values[1:], dtype=np.int64)
        if n_max is not None and arr.size and (arr.min() < 0 or arr.max() >= n_max):
            raise ValueError(f"{path}:{lineno}: {what} out of range [0, {n_max}): {arr[(arr < 0) | (arr >= n_max)][:3]}")
        rows.append(arr)
    return rows


def _lists_to_csr(rows: list[np.ndarray], n_cols: int) -> sp.csr_matrix:
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    indices = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    m = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(rows), n_cols))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def _normalise_title(title: str) -> str:
    # ASCII letters and digits only: titles.txt and the abstracts file encode dashes differently
    return " ".join("".join(ch.lower() if ch.isascii() and ch.isalnum() else " " for ch in title).split())


_MOJIBAKE_MARKS = ("Ã", "â€", "â\x80", "Â")


def repair_mojibake(text: str) -> str:
    """Undo UTF-8 text that was decoded as cp1252 (once or twice), as in some CiteULike titles.

    ``"cellâ€“cell"`` becomes ``"cell–cell"``; text that does not round-trip is left as it is.
    """
    for _ in range(3):
        if not any(m in text for m in _MOJIBAKE_MARKS):
            break
        raw = bytearray()
        try:
            for ch in text:
                try:
                    raw += ch.encode("cp1252")
                except UnicodeEncodeError:
                    if ord(ch) > 255:
                        raise
                    raw.append(ord(ch))
            text = bytes(raw).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            break
    return text


def read_abstracts_subset(csv_path: Path, titles: list[str]) -> tuple[np.ndarray, list[str]]:
    """Read the 1,929-paper title+abstract file and align it to CiteULike-a item indices.

    The file numbers its papers 0..1928, so each row is matched to ``titles`` by normalised title;
    rows come in increasing item order, which resolves the few duplicate titles.
    """
    with open(csv_path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        if header[:5] != ["doc.id", "title", "citeulike.id", "raw.title", "raw.abstract"]:
            raise ValueError(f"{csv_path}:1: unexpected header {header}")
        raw = []
        for lineno, row in enumerate(reader, start=2):
            if len(row) != 5:
                raise ValueError(f"{csv_path}:{lineno}: expected 5 fields, got {len(row)}")
            raw.append((row[3], row[4]))
    by_title: dict[str, list[int]] = {}
    for i, t in enumerate(titles):
        by_title.setdefault(_normalise_title(t), []).append(i)
    index, abstracts, last = [], [], -1
    for k, (title, abstract) in enumerate(raw):
        candidates = [i for i in by_title.get(_normalise_title(title), []) if i > last]
        if not candidates:
            raise ValueError(f"{csv_path}: paper {k} ({title[:50]!r}) matches no CiteULike-a title after item {last}")
        last = candidates[0]
        index.append(last)
        abstracts.append(abstract)
    return np.asarray(index, dtype=np.int64), abstracts


def read_sessions_file(path: Path) -> pd.DataFrame:
    """Read a ``SessionId<TAB>ItemId<TAB>Time`` file, checking every line."""
    try:
        df = pd.read_csv(path, sep="\t", dtype={"SessionId": np.int64, "ItemId": np.int64, "Time": np.float64})
    except ValueError as exc:
        # find the first bad line to name it
        for lineno, line in enumerate(_read_text(path), start=1):
            parts = line.split("\t")
            if lineno == 1:
                continue
            try:
                int(parts[0]), int(parts[1]), float(parts[2])
                if len(parts) != 3:
                    raise ValueError
            except (ValueError, IndexError):
                raise ValueError(f"{path}:{lineno}: expected 'SessionId<TAB>ItemId<TAB>Time', got {line[:60]!r}") from None
        raise ValueError(f"{path}: {exc}") from exc
    if list(df.columns) != ["SessionId", "ItemId", "Time"]:
        raise ValueError(f"{path}:1: expected the header 'SessionId ItemId Time', got {list(df.columns)}")
    return df.sort_values(["SessionId", "Time"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------
def _check_tier(tier: str) -> None:
    if tier not in TIERS:
        raise ValueError(f"tier must be one of {TIERS}, got {tier!r}")


def load_citeulike(tier: str = "tiny") -> CiteULike:
    """Load CiteULike-a at a tier (see the module docstring). Counts at ``full``: 5,551 users,
    16,980 papers, 204,986 likes."""
    _check_tier(tier)
    if tier == "tiny":
        return _load_citeulike_tiny()
    paths = {rel.split("/", 1)[1]: locate(rel) for rel in CITEULIKE_FILES}
    titles = [repair_mojibake(t) for t in _read_text(paths["titles.txt"])]
    n_papers = len(titles)
    likes = _lists_to_csr(parse_count_lists(paths["users.dat"], n_papers, "paper index"), n_papers)
    tag_names = _read_text(paths["tags.dat"])
    paper_tags = _lists_to_csr(parse_count_lists(paths["item-tag.dat"], len(tag_names), "tag index"), len(tag_names))
    citations = _lists_to_csr(parse_count_lists(paths["citations.dat"], n_papers, "paper index"), n_papers)
    sub_idx, sub_abstracts = read_abstracts_subset(paths["abstracts_subset/raw-data.subset.csv"], titles)
    abstracts = [""] * n_papers
    for i, a in zip(sub_idx, sub_abstracts):
        abstracts[i] = a
    data = CiteULike(tier, likes, titles, abstracts, tag_names, paper_tags, citations,
                     np.arange(n_papers, dtype=np.int64), np.arange(likes.shape[0], dtype=np.int64))
    if tier == "small":
        data = subset_papers(data, sub_idx, tier="small")
    return data


def subset_papers(data: CiteULike, papers, tier: str | None = None, min_user_likes: int = 1) -> CiteULike:
    """Keep some papers, the users with at least ``min_user_likes`` of them, and the tags they use."""
    papers = check_ids(papers, data.n_papers, "paper")
    likes = data.likes[:, papers].tocsr()
    users = np.flatnonzero(np.diff(likes.indptr) >= min_user_likes)
    likes = likes[users].tocsr()
    paper_tags = data.paper_tags[papers].tocsr()
    tags = np.flatnonzero(np.asarray(paper_tags.sum(axis=0)).ravel() > 0)
    return CiteULike(
        tier or data.tier, likes,
        [data.titles[i] for i in papers], [data.abstracts[i] for i in papers],
        [data.tag_names[t] for t in tags], paper_tags[:, tags].tocsr(),
        data.citations[papers][:, papers].tocsr(),
        data.paper_ids[papers], data.user_ids[users],
    )


def _load_citeulike_tiny() -> CiteULike:
    verify_tiny()
    d = TINY_DIR / "citeulike-a"
    papers = pd.read_csv(d / "papers.tsv", sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)
    n_papers = len(papers)
    tag_names = _read_text(d / "tags.dat")
    return CiteULike(
        "tiny",
        _lists_to_csr(parse_count_lists(d / "users.dat", n_papers, "paper index"), n_papers),
        papers["title"].tolist(), papers["abstract"].tolist(), tag_names,
        _lists_to_csr(parse_count_lists(d / "item-tag.dat", len(tag_names), "tag index"), len(tag_names)),
        _lists_to_csr(parse_count_lists(d / "citations.dat", n_papers, "paper index"), n_papers),
        papers["paper_id"].astype(np.int64).to_numpy(),
        np.asarray([int(x) for x in _read_text(d / "user_ids.txt")], dtype=np.int64),
    )


_SESSION_PARTS = {"train": "train_full", "test": "test", "train_tr": "train_tr", "valid": "train_valid"}


def load_sessions(tier: str = "tiny", full_dir: str | Path | None = None) -> Sessions:
    """Load RSC15 click sessions at a tier.

    ``small`` is the 100k slice (70,278 training events in 17,794 sessions over 2,933 items);
    ``full`` reads the output of ``course preprocess-rsc15`` from ``full_dir`` (default: the cache).
    """
    _check_tier(tier)
    if tier == "tiny":
        verify_tiny()
        files = {k: TINY_DIR / "rsc15" / f"{v}.txt" for k, v in _SESSION_PARTS.items()}
    elif tier == "small":
        files = {k: locate(f"yoochoose-rsc15-100k/yoochoose-clicks-100k_{v}.txt") for k, v in _SESSION_PARTS.items()}
    else:
        base = Path(full_dir) if full_dir else cache_dir() / "rsc15-full"
        files = {k: base / f"rsc15_{v}.txt" for k, v in _SESSION_PARTS.items()}
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise DataMissingError(
                "The full RSC15 tier is built from the registration-gated yoochoose-clicks.dat, which the "
                "course cannot download for you. Missing: " + ", ".join(missing) + ". Fix: get the file from "
                "the RecSys Challenge 2015 (or Kaggle 'recsys-challenge-2015') and run "
                f"`course preprocess-rsc15 path/to/yoochoose-clicks.dat --out {base}`."
            )
    frames = {k: read_sessions_file(p) for k, p in files.items()}
    return Sessions(tier, frames["train"], frames["test"], frames["train_tr"], frames["valid"],
                    meta={"files": {k: str(p) for k, p in files.items()}})
