"""The framework-neutral training helpers shared by the PyTorch and the Theano hybrid recommender."""
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from course_lib.training import (
    EarlyStopping, binary_likes, check_finite, check_model_args, check_p2v_sizes, check_paper_texts, check_train_args,
    noise_cdf, paper_batches, recall_cutoff, sample_words, select_papers,
)


@pytest.mark.parametrize("module", ["course_lib.training", "course_lib.theano_models.hybrid",
                                    "course_lib.sessions", "course_lib.theano_models.gru4rec"])
def test_no_torch_on_the_import_path(module):
    # the Theano track must run where torch is not installed (original Theano 1.0.5 environment)
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch was imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


# ------------------------------------------------------------------------------ arguments


def test_check_train_args_accepts_good_arguments_and_names_each_bad_one():
    likes = sp.csr_matrix((4, 5), dtype=np.float32)
    ok = dict(loss="bpr", optimizer="adam", monitor="Recall@10", batch_size=2, epochs=1, patience=1, n_texts=5)
    check_train_args((4, 5), likes, likes, **ok)
    check_train_args((4, 5), likes.toarray(), None, **ok)  # dense likes have a shape too
    bad = [
        (dict(loss="mse"), r"loss must be one of \('wmse', 'bpr', 'listwise'\), got 'mse'"),
        (dict(monitor="NDCG@10"), r"monitor must look like 'Recall@50'.*got 'NDCG@10'"),
        (dict(monitor="Recall@0"), r"monitor must look like 'Recall@50'.*got 'Recall@0'"),
        (dict(monitor="Recall@"), r"monitor must look like 'Recall@50'"),
        (dict(monitor="Recall@\u00b2"), r"monitor must look like 'Recall@50'"),  # a digit, but not a number
        (dict(optimizer="sgd"), r"optimizer must be 'adagrad' or 'adam', got 'sgd'"),
        (dict(batch_size=0), r"batch_size and epochs must be >= 1, got 0, 1"),
        (dict(epochs=0), r"batch_size and epochs must be >= 1, got 2, 0"),
        (dict(patience=0), r"patience must be >= 1 .*got 0"),
        (dict(n_texts=4), r"texts has 4 papers but the model was built for 5"),
    ]
    for change, message in bad:
        with pytest.raises(ValueError, match=message):
            check_train_args((4, 5), likes, None, **{**ok, **change})
    with pytest.raises(ValueError, match=r"train_likes has shape \(4, 4\), the model expects \(n_users, n_papers\) "
                                         r"= \(4, 5\)"):
        check_train_args((4, 5), likes[:, :4], None, **ok)
    with pytest.raises(ValueError, match=r"valid_likes has shape \(5, 4\)"):
        check_train_args((4, 5), likes, likes.T, **ok)
    with pytest.raises(ValueError, match="train_likes must be a \\(n_users, n_papers\\) like matrix .* got list"):
        check_train_args((4, 5), [[1, 0]], None, **ok)


def test_recall_cutoff():
    assert recall_cutoff("Recall@50") == 50 and recall_cutoff("Recall@7") == 7
    with pytest.raises(ValueError, match="monitor must look like"):
        recall_cutoff(50)


def test_check_model_args():
    class Enc:
        out_dim = np.int64(8)  # numpy integers are sizes too

    check_model_args(3, 4, 2, "sum", Enc(), dropout_user=0.0, dropout_item=0.5)
    with pytest.raises(ValueError, match=r"merge must be one of \('concat', 'sum'\), got 'product'"):
        check_model_args(3, 4, 2, "product")
    with pytest.raises(ValueError, match="n_users, n_papers and item_dim must be >= 1, got 3, 0, 2"):
        check_model_args(3, 0, 2, "concat")
    with pytest.raises(ValueError, match="integer attribute `out_dim`"):
        check_model_args(3, 4, 2, "concat", object())
    with pytest.raises(ValueError, match=r"dropout_hidden must be in \[0, 1\), got 1.0"):
        check_model_args(3, 4, 2, "concat", dropout_hidden=1.0)


# ------------------------------------------------------------------------------ papers


def test_binary_likes_drops_explicit_zeros_and_sets_ones():
    m = sp.csr_matrix((np.array([2.0, 0.0, 5.0]), np.array([0, 1, 2]), np.array([0, 2, 3])), shape=(2, 3))
    assert m.nnz == 3  # one stored zero
    out = binary_likes(m)
    assert out.dtype == np.float32 and out.nnz == 2
    np.testing.assert_array_equal(out.toarray(), [[1, 0, 0], [0, 0, 1]])
    assert m.data.tolist() == [2.0, 0.0, 5.0]  # the input is untouched
    twice = sp.csr_matrix((np.array([1.0, 1.0]), np.array([2, 2]), np.array([0, 2, 2])), shape=(2, 3))
    assert twice.toarray()[0, 2] == 2.0  # one like stored twice
    np.testing.assert_array_equal(binary_likes(twice).toarray(), [[0, 0, 1], [0, 0, 0]])


def test_check_paper_texts():
    check_paper_texts(np.array([[3, 4, 0]]), np.array([[1, 1, 0]]))
    with pytest.raises(ValueError, match=r"ids \(1, 3\) and mask \(1, 2\) must be equal 2-d shapes"):
        check_paper_texts(np.array([[3, 4, 0]]), np.array([[1, 1]]))
    with pytest.raises(ValueError, match=r"ids \(3,\) and mask \(3,\) must be equal 2-d shapes"):
        check_paper_texts(np.array([3, 4, 0]), np.array([1, 1, 0]))
    with pytest.raises(ValueError, match=r"papers \[1, 3\] have empty texts; drop them or encode them"):
        check_paper_texts(np.ones((4, 2), int), np.array([[1, 0], [0, 0], [1, 1], [0, 0]]))


def test_select_papers_on_a_hand_made_like_matrix():
    # 4 users x 6 papers. Training likes: paper 0 (users 0, 1), paper 2 (user 2, value 3.0),
    # paper 4 (user 3); paper 1 holds only an explicit zero, so it is not known.
    train = sp.csr_matrix((np.array([1.0, 0.0, 1.0, 3.0, 1.0]),
                           (np.array([0, 0, 1, 2, 3]), np.array([0, 1, 0, 2, 4]))), shape=(4, 6))
    valid = sp.csr_matrix((np.ones(3), (np.array([0, 3, 1]), np.array([5, 5, 3]))), shape=(4, 6))
    sel = select_papers(train, valid)
    np.testing.assert_array_equal(sel.known, [True, False, True, False, True, False])
    np.testing.assert_array_equal(sel.train_papers, [0, 2, 4])
    np.testing.assert_array_equal(sel.valid_papers, [3, 5])
    assert sel.by_paper.shape == (6, 4)  # a row per paper: the targets of a batch
    np.testing.assert_array_equal(sel.by_paper.toarray(), [[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0],
                                                           [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]])
    np.testing.assert_array_equal(sel.valid_likes.toarray(), valid.toarray())
    no_valid = select_papers(train)
    assert no_valid.valid_papers is None and no_valid.valid_likes is None
    with pytest.raises(ValueError, match="train_likes is empty: there is nothing to learn from"):
        select_papers(sp.csr_matrix((4, 6)))
    with pytest.raises(ValueError, match="valid_likes has no likes; pass None"):
        select_papers(train, sp.csr_matrix((4, 6)))


def test_paper_batches_cover_every_paper_once_in_a_seeded_order():
    papers = np.array([0, 2, 4, 7, 9, 11, 12])
    batches = list(paper_batches(papers, 3, np.random.default_rng(5)))
    assert [len(b) for b in batches] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate(batches), np.random.default_rng(5).permutation(papers))
    again = list(paper_batches(papers, 3, np.random.default_rng(5)))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    rng = np.random.default_rng(5)
    first, second = np.concatenate(list(paper_batches(papers, 3, rng))), np.concatenate(list(paper_batches(papers, 3, rng)))
    assert sorted(first) == sorted(second) == papers.tolist() and not np.array_equal(first, second)  # new epoch order


def test_check_finite():
    check_finite(1.5, 0.0, 1, 1, 0.1, 10.0)
    with pytest.raises(ValueError, match=r"the loss became nan at epoch 2, batch 7 \(recommendation nan, auxiliary "
                                         r"0\); lower lr \(now 0.1\) or alpha \(now 10.0\)"):
        check_finite(float("nan"), 0.0, 2, 7, 0.1, 10.0)
    with pytest.raises(ValueError, match="the loss became inf"):
        check_finite(1.0, float("inf"), 1, 1, 0.1, 10.0)


# ------------------------------------------------------------------------------ early stopping


class DictModel:
    """The two methods EarlyStopping needs, on a dict of arrays."""

    def __init__(self):
        self.w = {"w": np.zeros(2)}

    def state_dict(self):
        return self.w

    def load_state_dict(self, state):
        self.w = {k: v.copy() for k, v in state.items()}


def test_early_stopping_keeps_the_best_epoch_and_stops_after_patience():
    model, history = DictModel(), {"epoch": []}
    stopper = EarlyStopping("Recall@10", patience=2)
    assert stopper.ks == (10, 50, 100)
    recalls = [0.1, 0.3, 0.2, 0.25, 0.4]
    for epoch, r in enumerate(recalls, start=1):
        model.w["w"][:] = epoch  # the weights of this epoch, changed in place as training does
        history["epoch"].append(epoch)
        value = stopper.update(history, epoch, {"Recall@10": r, "Recall@50": 2 * r, "Recall@100": 3 * r}, model)
        assert value == r
        if stopper.stop:
            break
    assert epoch == 4  # epochs 3 and 4 did not beat epoch 2
    assert history["best_epoch"] == [2] and stopper.best == 0.3
    assert history["valid_Recall@10"] == [0.1, 0.3, 0.2, 0.25]
    assert history["valid_Recall@100"] == pytest.approx([0.3, 0.9, 0.6, 0.75])
    stopper.finish(history, model)
    np.testing.assert_array_equal(model.w["w"], [2.0, 2.0])  # a copy was kept, not a reference


def test_early_stopping_without_validation_takes_the_last_epoch():
    model, history = DictModel(), {"epoch": [1, 2, 3]}
    EarlyStopping().finish(history, model)
    assert history["best_epoch"] == [3]


def test_early_stopping_evaluates_recall_on_the_validation_papers_only():
    # 3 users x 4 papers; validation papers 1 and 3. Paper 1: users 0 and 2 liked it, user 1 has
    # it in training (excluded). Paper 3: user 1 liked it.
    train = sp.csr_matrix(np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0]], dtype=np.float32))
    valid = sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0]], dtype=np.float32))
    sel = select_papers(train, valid)
    stopper = EarlyStopping("Recall@1", patience=1)
    scores = np.array([[0.5, 0.9, 0.1],   # paper 1: user 1 is excluded, so user 0 ranks first: 1 of 2 found
                       [0.2, 0.1, 0.3]])  # paper 3: user 2 ranks first, user 1 last: 0 of 1
    res = stopper.evaluate(scores, sel, train)
    assert res["Recall@1"] == pytest.approx((1 / 2 + 0) / 2)
    assert res["Recall@50"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------ level (c) words


def test_noise_cdf_by_hand():
    # padding's count is ignored; 1, 16, 0, 81 ** 0.75 = 1, 8, 0, 27 -> / 36, cumulated
    np.testing.assert_allclose(noise_cdf([50, 1, 16, 0, 81]), [0, 1 / 36, 9 / 36, 9 / 36, 1.0], rtol=1e-15)
    np.testing.assert_allclose(noise_cdf([0, 1, 3], ns_exponent=1.0), [0, 0.25, 1.0])
    with pytest.raises(ValueError, match=r"word_counts must be a 1-d array over the vocabulary, got shape \(2, 2\)"):
        noise_cdf(np.ones((2, 2)))
    with pytest.raises(ValueError, match="non-negative with at least one word besides padding"):
        noise_cdf([5, 0, 0])
    with pytest.raises(ValueError, match="non-negative"):
        noise_cdf([0, 2, -1])


def test_check_p2v_sizes():
    check_p2v_sizes(4, 0.0, 1, 1)
    with pytest.raises(ValueError, match=r"need lambda_p2v >= 0, negative >= 1, n_words >= 1, dim >= 1; "
                                         r"got -1.0, 5, 50, 64"):
        check_p2v_sizes(64, -1.0, 5, 50)
    with pytest.raises(ValueError, match="negative >= 1"):
        check_p2v_sizes(64, 1.0, 0, 50)


IDS = np.array([[5, 5, 7, 0, 0], [2, 3, 4, 6, 1]])
MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1.0]])
CDF = noise_cdf([50, 1, 16, 0, 81])  # noise: word 1 w.p. 1/36, 2 w.p. 8/36, 4 w.p. 27/36


def test_sample_words_pinned_numbers_for_a_seed():
    # recorded with the Theano track's sampler before it moved here: the numbers must not change
    words, noise = sample_words(IDS, MASK, 6, 3, CDF, np.random.default_rng(42))
    np.testing.assert_array_equal(words, [[7, 5, 7, 7, 5, 7], [6, 6, 2, 4, 3, 1]])
    np.testing.assert_array_equal(noise, [[4, 4, 4], [2, 4, 2], [4, 4, 4], [4, 4, 4], [4, 2, 4], [2, 2, 4]])
    assert words.dtype == noise.dtype == np.int64


def test_sample_words_is_seeded_and_follows_the_documented_draws():
    a = sample_words(IDS, MASK, 20, 4, CDF, np.random.default_rng(1))
    b = sample_words(IDS, MASK, 20, 4, CDF, np.random.default_rng(1))
    c = sample_words(IDS, MASK, 20, 4, CDF, np.random.default_rng(2))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    rng = np.random.default_rng(1)  # positions floor(u * length), then noise by searchsorted
    pos = np.floor(rng.random((2, 20)) * np.array([[3], [5]])).astype(int)
    np.testing.assert_array_equal(a[0], np.take_along_axis(IDS, pos, 1))
    np.testing.assert_array_equal(a[1], np.searchsorted(CDF, rng.random((20, 4)), side="right"))


def test_sample_words_distribution():
    # paper 0 has tokens 5, 5, 7: word 5 w.p. 2/3; paper 1's five tokens 1/5 each; noise by CDF.
    # 30,000 draws per paper: one standard deviation of a frequency is <= 0.003; margin 0.015.
    words, noise = sample_words(IDS, MASK, 30_000, 2, CDF, np.random.default_rng(0))
    assert set(np.unique(words[0])) == {5, 7}  # never the padding of the short paper
    assert abs((words[0] == 5).mean() - 2 / 3) < 0.015
    for w in (2, 3, 4, 6, 1):
        assert abs((words[1] == w).mean() - 0.2) < 0.015
    freq = np.bincount(noise.ravel(), minlength=5) / noise.size  # 60,000 noise words
    np.testing.assert_allclose(freq, [0, 1 / 36, 8 / 36, 0, 27 / 36], atol=0.015)
    assert freq[0] == 0 and freq[3] == 0  # padding and a word with count 0: never


def test_sample_words_bad_input():
    rng = np.random.default_rng(0)
    empty = MASK.copy()
    empty[0] = 0
    with pytest.raises(ValueError, match="a paper of this batch has an empty text"):
        sample_words(IDS, empty, 3, 2, CDF, rng)
    left = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1.0]])
    with pytest.raises(ValueError, match="mask must be right-padded"):
        sample_words(IDS, left, 3, 2, CDF, rng)
    with pytest.raises(ValueError, match=r"ids \(2, 5\) and mask \(2, 4\) must be equal 2-d shapes"):
        sample_words(IDS, MASK[:, :4], 3, 2, CDF, rng)
