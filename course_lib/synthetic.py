"""Planted data: small datasets whose hidden structure is known, for tests and quick demos.

:func:`planted_citeulike` hides each paper's topic either in word ORDER (``order_matters=True``:
a bag of words sees nothing, a sequence model can read it, the case Ask the GRU argues for in
section 3.2) or in word CHOICE (``order_matters=False``: a bag of words suffices).
:func:`planted_word_order` hides a paper's kind in which of two marker words comes first,
anywhere in the text, not only as an adjacent bigram (or, for comparison, in which word occurs).
:func:`planted_sessions` plants first-order transitions between items (what GRU4Rec should learn).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from course_lib.data import CiteULike, Sessions
from course_lib.clicks import preprocess_clicks
from course_lib.splits import session_split_by_time

N_FILLER = 150
START_TIME = 1_396_000_000.0  # April 2014, when RSC15 was recorded


def signal_words(n_topics: int) -> dict[str, list[str]]:
    """The planted words: pair ``k`` is ``sig{k}a``/``sig{k}b``, topic ``t``'s own words are
    ``topic{t}a``/``topic{t}b`` (used only when ``order_matters=False``)."""
    return {
        "pair_a": [f"sig{k}a" for k in range(n_topics)],
        "pair_b": [f"sig{k}b" for k in range(n_topics)],
        "topic_a": [f"topic{t}a" for t in range(n_topics)],
        "topic_b": [f"topic{t}b" for t in range(n_topics)],
    }


def _zipf(n: int, shift: float = 10.0) -> np.ndarray:
    p = 1.0 / (np.arange(n) + shift)
    return p / p.sum()


def _draw_likes(rng: np.random.Generator, n_users: int, n_papers: int, likes_per_user: int,
                weight_of_user) -> sp.csr_matrix:
    """(n_users, n_papers) 0/1 likes: user ``u`` likes ``likes_per_user`` distinct papers drawn with
    probabilities proportional to ``weight_of_user(u)`` (n_papers,)."""
    rows, cols = [], []
    for u in range(n_users):
        p = weight_of_user(u)
        cols.append(rng.choice(n_papers, size=likes_per_user, replace=False, p=p / p.sum()))
        rows.append(np.full(likes_per_user, u))
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    return sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n_users, n_papers))


def planted_citeulike(n_users: int = 300, n_papers: int = 400, n_topics: int = 6, doc_len: int = 40,
                      likes_per_user: int = 12, order_matters: bool = True, seed: int = 0) -> CiteULike:
    """A CiteULike-like dataset where users like papers of their favourite topics.

    Papers: topic ``t = j % n_topics`` (then shuffled). The abstract has ``doc_len`` tokens: one
    two-word unit per pair ``k = 0..n_topics-1`` and ``doc_len - 2 * n_topics`` filler words
    ``w000..w149`` drawn from one Zipf distribution for all topics, in random order (a unit stays
    two adjacent words, and every signal word occurs once, so no other adjacent pair of signal
    words can arise by chance).

    * ``order_matters=True``: unit ``k`` is ``"sig{k}a sig{k}b"`` except unit ``t``, written
      ``"sig{t}b sig{t}a"``. Every abstract holds exactly the same signal words, and the filler
      does not depend on the topic, so the word counts carry no information about the topic;
      the one reversed pair (a bigram, i.e. word order) gives it away.
    * ``order_matters=False``: unit ``t`` is replaced by ``"topic{t}a topic{t}b"``, the other
      units are as above: the topic is in which words occur.

    Titles are four filler words (no topic). Tags: ``topic{t}``, one per paper (``paper_tags``
    recovers the planted topics). Users: a main topic (taste 0.7), a second topic (0.2) and 0.1
    spread over all topics; each user likes ``likes_per_user`` distinct papers drawn with
    probability ``taste[topic] * popularity`` (popularity lognormal, sigma 1). Citations: each
    paper cites two papers of its topic (symmetric, binary).
    """
    if n_topics < 2:
        raise ValueError(f"n_topics must be >= 2, got {n_topics}")
    if doc_len < 2 * n_topics:
        raise ValueError(f"doc_len={doc_len} cannot hold the 2 * n_topics = {2 * n_topics} signal words; "
                         f"use doc_len >= {2 * n_topics}")
    if n_papers < n_topics or n_users < 1:
        raise ValueError(f"need n_papers >= n_topics and n_users >= 1, got {n_papers}, {n_users}")
    if not 1 <= likes_per_user <= n_papers:
        raise ValueError(f"likes_per_user must be in [1, n_papers={n_papers}], got {likes_per_user}")
    rng = np.random.default_rng(seed)
    words = signal_words(n_topics)
    filler = np.array([f"w{i:03d}" for i in range(N_FILLER)])
    filler_p = _zipf(N_FILLER)
    topics = rng.permutation(np.arange(n_papers) % n_topics)

    abstracts, titles = [], []
    n_filler = doc_len - 2 * n_topics
    for t in topics:
        units = []
        for k in range(n_topics):
            a, b = words["pair_a"][k], words["pair_b"][k]
            if k != t:
                units.append([a, b])
            elif order_matters:
                units.append([b, a])
            else:
                units.append([words["topic_a"][t], words["topic_b"][t]])
        units += [[w] for w in rng.choice(filler, size=n_filler, p=filler_p)]
        order = rng.permutation(len(units))
        abstracts.append(" ".join(w for i in order for w in units[i]))
        titles.append(" ".join(rng.choice(filler, size=4, p=filler_p)))

    # users: (n_users, n_topics) tastes
    main = rng.integers(n_topics, size=n_users)
    second = (main + 1 + rng.integers(n_topics - 1, size=n_users)) % n_topics
    taste = np.full((n_users, n_topics), 0.1 / n_topics)
    taste[np.arange(n_users), main] += 0.7
    taste[np.arange(n_users), second] += 0.2
    popularity = rng.lognormal(0.0, 1.0, size=n_papers)
    likes = _draw_likes(rng, n_users, n_papers, likes_per_user, lambda u: taste[u, topics] * popularity)

    paper_tags = sp.csr_matrix((np.ones(n_papers, np.float32), (np.arange(n_papers), topics)),
                               shape=(n_papers, n_topics))
    cite_rows, cite_cols = [], []
    for t in range(n_topics):
        members = np.flatnonzero(topics == t)
        if members.size < 2:
            continue
        for j in members:
            others = members[members != j]
            cited = rng.choice(others, size=min(2, others.size), replace=False)
            cite_rows += [j] * cited.size
            cite_cols += cited.tolist()
    cites = sp.csr_matrix((np.ones(len(cite_rows), np.float32), (cite_rows, cite_cols)),
                          shape=(n_papers, n_papers))
    cites = ((cites + cites.T) > 0).astype(np.float32).tocsr()

    return CiteULike(
        tier="synthetic",
        likes=likes,
        titles=titles,
        abstracts=abstracts,
        tag_names=[f"topic{t}" for t in range(n_topics)],
        paper_tags=paper_tags,
        citations=cites,
        paper_ids=np.arange(n_papers, dtype=np.int64),
        user_ids=np.arange(n_users, dtype=np.int64),
    )


def planted_sessions(n_items: int = 60, n_sessions: int = 800, mean_len: int = 6, seed: int = 0,
                     n_days: int = 10) -> Sessions:
    """Click sessions from a first-order Markov chain over items.

    Each item ``i`` has three successors drawn at random, followed with probability 0.6, 0.2 and
    0.1; with probability 0.1 the next item is uniform over all items. Sessions start at an item
    drawn from a Zipf popularity, have ``2 + Poisson(mean_len - 2)`` events, start uniformly over
    ``n_days`` days with 20 s + Exponential(60 s) between clicks. Item ids are
    ``1000 + 7 * index`` (not 0..n-1, so code that confuses ids with indices fails).

    The frames go through the course pipeline: :func:`~course_lib.clicks.preprocess_clicks`, then
    :func:`~course_lib.splits.session_split_by_time` (last day -> ``test``) and again on train
    (``train_tr`` / ``valid``). ``meta`` holds ``item_ids``, ``transitions`` (n_items, n_items),
    ``successors`` (n_items, 3) and the counts of every step.
    """
    if n_items < 4:
        raise ValueError(f"n_items must be >= 4 (three successors per item), got {n_items}")
    if mean_len < 2:
        raise ValueError(f"mean_len must be >= 2 (sessions have at least 2 clicks), got {mean_len}")
    if n_sessions < 10 or n_days < 3:
        raise ValueError(f"need n_sessions >= 10 and n_days >= 3 to split by day, got {n_sessions}, {n_days}")
    rng = np.random.default_rng(seed)
    item_ids = 1000 + 7 * np.arange(n_items, dtype=np.int64)
    successors = np.stack([rng.choice(np.delete(np.arange(n_items), i), size=3, replace=False)
                           for i in range(n_items)])  # (n_items, 3)
    transitions = np.full((n_items, n_items), 0.1 / n_items)
    for i in range(n_items):
        transitions[i, successors[i]] += [0.6, 0.2, 0.1]
    start_p = _zipf(n_items, shift=2.0)[np.argsort(rng.permutation(n_items))]

    starts = np.sort(rng.uniform(0, n_days * 86400.0, size=n_sessions)) + START_TIME
    lengths = 2 + rng.poisson(mean_len - 2, size=n_sessions)
    sid, items, times = [], [], []
    for s in range(n_sessions):
        cur = rng.choice(n_items, p=start_p)
        t = starts[s]
        for step in range(lengths[s]):
            if step:
                cur = rng.choice(n_items, p=transitions[cur])
                t += 20.0 + rng.exponential(60.0)
            sid.append(s + 1)
            items.append(item_ids[cur])
            times.append(t)
    clicks = pd.DataFrame({"SessionId": np.array(sid, np.int64), "ItemId": np.array(items, np.int64),
                           "Time": np.array(times, np.float64)})
    clicks, c_pre = preprocess_clicks(clicks)
    train, test, c_test = session_split_by_time(clicks, days=1)
    train_tr, valid, c_valid = session_split_by_time(train, days=1)
    meta = {"item_ids": item_ids, "transitions": transitions, "successors": successors,
            "counts": {"preprocess": c_pre, "test split": c_test, "valid split": c_valid}}
    return Sessions("synthetic", train, test, train_tr, valid, meta)


ORDER_WORDS = ("marka", "markb")


def planted_word_order(n_users: int = 200, n_papers: int = 300, doc_len: int = 8, likes_per_user: int = 10,
                       taste: float = 1.0, order_matters: bool = True, seed: int = 0) -> CiteULike:
    """Two kinds of paper that differ only in the ORDER of two marker words; users like one kind.

    Papers: kind ``j % 2`` (then shuffled), kind 1 = "A first", kind 0 = "B first". The abstract
    has ``doc_len`` tokens: two marker positions drawn at random among all ``doc_len`` (usually not
    adjacent), the other positions filler words ``w000..w149`` from one Zipf distribution for both
    kinds.

    * ``order_matters=True``: every abstract holds ``marka`` and ``markb`` once each; a kind-1
      paper has ``marka`` at the earlier marker position, a kind-0 paper ``markb``. The bag of
      words of a paper has the same distribution in both kinds, so a mean of word embeddings
      (Ask the GRU's *Embed*) cannot tell them apart; a recurrent encoder can remember which
      marker it read first. Since the markers are rarely adjacent, bigram counts do not give the
      kind away either.
    * ``order_matters=False``: a kind-1 paper holds ``marka`` at both marker positions, a kind-0
      paper ``markb``: the kind is in which word occurs, and a bag of words suffices.

    Titles are four filler words. Tags: ``"b_first"`` (kind 0) or ``"a_first"`` (kind 1), one per
    paper, so ``paper_tags.indices`` are the planted kinds. User ``u`` prefers kind ``u % 2``: it
    likes ``likes_per_user`` distinct papers, each of its kind drawn with weight ``taste`` and
    each of the other kind with ``1 - taste`` (uniform within a kind): with the default
    ``taste=1`` a user likes a paper only if its markers come in the user's order. No citations
    (an empty matrix). Same seed, same data.
    """
    if n_papers < 2 or n_users < 1:
        raise ValueError(f"need n_papers >= 2 (one of each kind) and n_users >= 1, got {n_papers}, {n_users}")
    if doc_len < 2:
        raise ValueError(f"doc_len must be >= 2 to hold the two marker words, got {doc_len}")
    if not 0.0 <= taste <= 1.0:
        raise ValueError(f"taste is the probability weight of a user's own kind, in [0, 1]; got {taste}")
    rng = np.random.default_rng(seed)
    kinds = rng.permutation(np.arange(n_papers) % 2)  # (n_papers,)
    n_liked_kind = int(np.bincount(kinds, minlength=2).min()) if taste == 1.0 else n_papers
    if not 1 <= likes_per_user <= n_liked_kind:
        raise ValueError(f"likes_per_user must be in [1, {n_liked_kind}] (papers a user can like with "
                         f"taste={taste}), got {likes_per_user}")
    a, b = ORDER_WORDS
    filler = np.array([f"w{i:03d}" for i in range(N_FILLER)])
    filler_p = _zipf(N_FILLER)

    abstracts, titles = [], []
    for kind in kinds:
        tokens = rng.choice(filler, size=doc_len, p=filler_p).astype(object)
        first, second = np.sort(rng.choice(doc_len, size=2, replace=False))
        if order_matters:
            tokens[first], tokens[second] = (a, b) if kind == 1 else (b, a)
        else:
            tokens[first] = tokens[second] = a if kind == 1 else b
        abstracts.append(" ".join(tokens))
        titles.append(" ".join(rng.choice(filler, size=4, p=filler_p)))

    likes = _draw_likes(rng, n_users, n_papers, likes_per_user, lambda u: np.where(kinds == u % 2, taste, 1.0 - taste))
    paper_tags = sp.csr_matrix((np.ones(n_papers, np.float32), (np.arange(n_papers), kinds)),
                               shape=(n_papers, 2))
    return CiteULike(
        tier="synthetic",
        likes=likes,
        titles=titles,
        abstracts=abstracts,
        tag_names=["b_first", "a_first"],
        paper_tags=paper_tags,
        citations=sp.csr_matrix((n_papers, n_papers), dtype=np.float32),
        paper_ids=np.arange(n_papers, dtype=np.int64),
        user_ids=np.arange(n_users, dtype=np.int64),
    )
