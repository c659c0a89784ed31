"""The course's training loop and the framework-neutral training helpers shared by both tracks."""
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from course_lib.training import (
    EarlyStopping, PairBatch, as_losses, askgru_loop, binary_likes, check_fit_args, check_model_args,
    check_p2v_sizes, check_paper_texts, check_train_args, frequent_tags, hybrid_loop, noise_cdf, paper_batches,
    recall_cutoff, sample_words, select_papers, train_loop,
)
from course_lib.validation import AllocationTooLarge, TrainingDiverged


@pytest.mark.parametrize("module", ["course_lib.training", "course_lib.theano_models.hybrid",
                                    "course_lib.theano_models.askgru", "course_lib.theano_models.content",
                                    "course_lib.theano_models.e2e_paragraph",
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
        (dict(loss="mse"), r"loss must be one of 'wmse', 'bpr', 'listwise'; got 'mse'"),
        (dict(monitor="NDCG@10"), r"monitor must look like 'Recall@50'.*got 'NDCG@10'"),
        (dict(monitor="Recall@0"), r"monitor must look like 'Recall@50'.*got 'Recall@0'"),
        (dict(monitor="Recall@"), r"monitor must look like 'Recall@50'"),
        (dict(monitor="Recall@\u00b2"), r"monitor must look like 'Recall@50'"),  # a digit, but not a number
        (dict(optimizer="sgd"), r"optimizer must be one of 'adagrad', 'adam'; got 'sgd'"),
        (dict(batch_size=0), r"batch_size must be an integer >= 1, got 0"),
        (dict(epochs=0), r"epochs must be an integer >= 1, got 0"),
        (dict(epochs=2.5), r"epochs must be an integer >= 1, got 2.5"),
        (dict(patience=0), r"patience must be >= 1 .*got 0"),
        (dict(n_texts=4), r"texts has 4 papers but the model was built for 5"),
        (dict(lr=-0.1), r"lr must be a finite number > 0, got -0.1"),
        (dict(lr=float("nan")), r"lr must be a finite number > 0"),
        (dict(alpha=0), r"alpha must be a finite number > 0, got 0"),
        (dict(weight_decay=-1e-3), r"weight_decay must be a finite number >= 0"),
        (dict(n_sample=0), r"n_sample must be an integer in \[1, 4\], got 0"),
        # more negative users than there are users: refused before any work (issue 12: 10**6 ran 199 s)
        (dict(n_sample=10**6), r"n_sample must be an integer in \[1, 4\], got 1000000"),
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

    check_model_args(3, 4, 2, "sum", Enc(), (5,), 0.1, dropout_user=0.0, dropout_item=0.5)
    with pytest.raises(ValueError, match=r"merge must be one of 'concat', 'sum'; got 'product'"):
        check_model_args(3, 4, 2, "product")
    with pytest.raises(ValueError, match="n_papers must be an integer >= 1, got 0"):
        check_model_args(3, 0, 2, "concat")
    with pytest.raises(ValueError, match="item_dim must be an integer >= 1, got -2"):
        check_model_args(3, 4, -2, "concat")
    with pytest.raises(ValueError, match="integer attribute `out_dim`"):
        check_model_args(3, 4, 2, "concat", object())
    with pytest.raises(ValueError, match=r"dropout_hidden must be a number in \[0, 1\), got 1.0"):
        check_model_args(3, 4, 2, "concat", dropout_hidden=1.0)
    with pytest.raises(ValueError, match=r"every size in hidden must be an integer >= 1, got 0"):
        check_model_args(3, 4, 2, "concat", hidden=(8, 0))
    with pytest.raises(ValueError, match=r"hidden must be a tuple of layer sizes"):
        check_model_args(3, 4, 2, "concat", hidden=16)
    with pytest.raises(ValueError, match=r"init_std must be a finite number > 0, got 0"):
        check_model_args(3, 4, 2, "concat", init_std=0)


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


# ------------------------------------------------------------------------------ the loop


class DictModel:
    """The two methods EarlyStopping needs, on a dict of arrays."""

    def __init__(self):
        self.w = {"w": np.zeros(2)}

    def state_dict(self):
        return self.w

    def load_state_dict(self, state):
        self.w = {k: v.copy() for k, v in state.items()}


def test_as_losses_reads_numbers_and_named_losses():
    assert as_losses(1.5) == {"loss": 1.5}
    assert as_losses(np.float32(2.0)) == {"loss": 2.0}
    assert as_losses(np.array(3.0)) == {"loss": 3.0}  # a compiled function's single output
    assert as_losses({"loss": 4, "aux_loss": np.float64(0.5)}) == {"loss": 4.0, "aux_loss": 0.5}
    with pytest.raises(ValueError, match=r"must put the minimised loss under 'loss'; got the keys \['rec'\]"):
        as_losses({"rec": 1.0})
    with pytest.raises(ValueError, match=r"the step returned loss = None, which is not one number"):
        as_losses(None)
    with pytest.raises(ValueError, match=r"the step returned loss = \[1.0, 2.0\]"):
        as_losses([1.0, 2.0])


def test_early_stopping_keeps_the_best_weights_and_stops_after_patience():
    model, stopper = DictModel(), EarlyStopping(patience=2)
    values = [0.1, 0.3, 0.2, 0.25, 0.4]
    for period, value in enumerate(values, start=1):
        model.w["w"][:] = period  # the weights of this period, changed in place as training does
        assert stopper.update(value, model, period) == (period in (1, 2))
        if stopper.stop:
            break
    assert period == 4 and stopper.best == 0.3 and stopper.best_period == 2  # 3 and 4 did not beat 2
    stopper.restore(model)
    np.testing.assert_array_equal(model.w["w"], [2.0, 2.0])  # a copy was kept, not a reference
    with pytest.raises(ValueError, match="patience must be an integer >= 1, got 0"):
        EarlyStopping(0)


def test_train_loop_averages_losses_per_period_and_restores_the_best_weights():
    model = DictModel()
    seen = []

    def step(batch):  # the "update": the weights become the batch number
        seen.append(batch)
        model.w["w"][:] = batch
        return {"loss": float(batch), "aux_loss": 2.0 * batch}

    periods = ([1, 2], [3, 4, 5], [6], [7, 8])
    recalls = {1: 0.2, 2: 0.5, 3: 0.4, 4: 0.3}
    log = train_loop(step, (iter(p) for p in periods), model=model, evaluate=lambda p: {"recall": recalls[p]},
                     monitor="recall", patience=2)
    assert seen == [1, 2, 3, 4, 5, 6, 7, 8]
    assert log.steps == [2, 5, 6, 8]
    assert log.losses == {"loss": [1.5, 4.0, 6.0, 7.5], "aux_loss": [3.0, 8.0, 12.0, 15.0]}
    assert log.metrics == {"recall": [0.2, 0.5, 0.4, 0.3]}
    assert log.best_period == 2 and log.best_value == 0.5
    np.testing.assert_array_equal(model.w["w"], [5.0, 5.0])  # the weights after period 2's last step
    assert len(log.seconds) == len(log.train_seconds) == 4


def test_train_loop_stops_early_and_without_validation_keeps_the_last_period():
    model = DictModel()
    log = train_loop(lambda b: 1.0, ([0] for _ in range(10)), model=model, evaluate=lambda p: {"r": 1.0 / p},
                     monitor="r", patience=3)
    assert log.steps == [1, 2, 3, 4] and log.best_period == 1  # periods 2-4 never beat period 1
    log = train_loop(lambda b: 1.0, ([0, 0] for _ in range(3)))
    assert log.steps == [2, 4, 6] and log.best_period == 3 and np.isnan(log.best_value)


def test_train_loop_names_the_step_and_the_cause_when_the_loss_diverges():
    losses = iter([1.0, 2.0, 3.0, float("nan")])
    with pytest.raises(TrainingDiverged, match=r"the loss became nan at epoch 2, step 4 \(loss\): lower lr \(now 9\)"):
        train_loop(lambda b: next(losses), ([0, 0] for _ in range(3)), cause="lower lr (now 9)")
    with pytest.raises(TrainingDiverged, match=r"the loss became inf at epoch 1, step 1 \(aux_loss\)"):
        train_loop(lambda b: {"loss": 1.0, "aux_loss": float("inf")}, [[0]])
    assert issubclass(TrainingDiverged, ValueError)
    with pytest.raises(ValueError, match="training ran no step"):
        train_loop(lambda b: 1.0, [[]])
    with pytest.raises(ValueError, match="needs model="):
        train_loop(lambda b: 1.0, [[0]], evaluate=lambda p: {"r": 1.0}, monitor="r")


def test_hybrid_loop_evaluates_recall_on_the_validation_papers_only():
    # 3 users x 4 papers; validation papers 1 and 3. Paper 1: users 0 and 2 liked it, user 1 has
    # it in training (excluded). Paper 3: user 1 liked it.
    train = sp.csr_matrix(np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0]], dtype=np.float32))
    valid = sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0]], dtype=np.float32))
    sel = select_papers(train, valid)
    scores = np.array([[0.5, 0.9, 0.1],   # paper 1: user 1 is excluded, so user 0 ranks first: 1 of 2 found
                       [0.2, 0.1, 0.3]])  # paper 3: user 2 ranks first, user 1 last: 0 of 1
    batches = []

    def score_papers(papers):
        np.testing.assert_array_equal(papers, [1, 3])
        return scores

    history = hybrid_loop(lambda b: batches.append(b.tolist()) or 1.0, DictModel(), sel, train, score_papers,
                          batch_size=2, epochs=2, patience=3, monitor="Recall@1", seed=5, cause="", progress=False)
    assert history["valid_Recall@1"] == pytest.approx([(1 / 2 + 0) / 2] * 2)
    assert history["valid_Recall@50"] == [1.0, 1.0]
    assert history["epoch"] == [1, 2] and history["n_steps"] == [2, 2] and history["best_epoch"] == [1]
    rng = np.random.default_rng(5)  # the paper order of each epoch: one permutation of the training papers
    order = [rng.permutation([0, 1, 2]).tolist() for _ in range(2)]
    assert batches == [order[0][:2], order[0][2:], order[1][:2], order[1][2:]]
    with pytest.raises(TrainingDiverged, match=r"1 validation scores became NaN or infinite after epoch 1: lower lr"):
        hybrid_loop(lambda b: 1.0, DictModel(), sel, train, lambda p: np.where(scores > 0.8, np.nan, scores),
                    batch_size=2, epochs=2, patience=3, monitor="Recall@1", seed=5, cause="lower lr", progress=False)


def test_askgru_loop_draws_pairs_with_their_confidence_and_evaluates_every_period():
    likes = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 1]], dtype=np.float32))
    tags = sp.csr_matrix(np.eye(4, 2, dtype=np.float32))
    seen: list[PairBatch] = []

    def step(batch):
        seen.append(batch)
        return {"loss": float(len(seen)), "loss_rec": 1.0, "loss_tag": 0.5}

    with pytest.warns(UserWarning, match="batch_users=5 is more than the 3 users with training likes; using "
                                         "batch_users=3"):
        askgru_loop(step, DictModel(), likes, tags=None, train_papers=None, valid_likes=None, valid_papers=None,
                    valid_exclude=None, valid_k=2, batch_users=5, max_updates=1, eval_every=1, patience=1,
                    alpha_conf=10.0, eps_conf=1.0, seed=3, score_fn=None, cause="", progress=False, desc="test")
    assert len(seen.pop().users) == 6  # every user with a like, twice
    hist = askgru_loop(step, DictModel(), likes, tags=tags, train_papers=None, valid_likes=likes, valid_papers=None,
                       valid_exclude=None, valid_k=2, batch_users=2, max_updates=5, eval_every=2, patience=5,
                       alpha_conf=10.0, eps_conf=1.0, seed=3, score_fn=lambda cand: lambda u: np.ones((len(u), 4)),
                       cause="", progress=False, desc="test")
    assert hist.update == [2, 4, 5] and hist.n_updates == 5 and hist.loss == [1.5, 3.5, 5.0]
    assert hist.loss_rec == [1.0] * 3 and hist.loss_tag == [0.5] * 3 and len(hist.valid_recall) == 3
    b = seen[0]
    assert len(b.users) == 4 and np.array_equal(b.users[:2], b.users[2:])  # 2 users, each twice
    np.testing.assert_array_equal(b.target, [1, 1, 0, 0])
    liked = likes.toarray()
    assert all(liked[u, p] == 1 for u, p in zip(b.users[:2], b.paper_idx[:2]))  # positives are likes
    assert all(liked[u, p] == 0 for u, p in zip(b.users[2:], b.paper_idx[2:]))  # negatives are not
    assert 2 not in b.users  # a user without likes is never drawn
    np.testing.assert_allclose(b.conf, 1 + 10 * np.log1p(b.n_likes / 1.0))  # c_ij = 1 + alpha log(1 + |R_i|/eps)
    np.testing.assert_array_equal(b.n_likes, liked.sum(1)[b.users])
    np.testing.assert_array_equal(b.tags, tags[b.paper_idx].toarray())


def test_check_fit_args_names_each_bad_argument():
    likes = sp.csr_matrix(np.eye(3, 4, dtype=np.float32))
    ok = dict(batch_users=2, max_updates=3, eval_every=1, patience=1, valid_k=2)
    out, tags = check_fit_args((3, 4, 0), likes, 4, **ok)
    assert out.dtype == np.float32 and tags is None
    bad = [
        (dict(lr=0), "lr must be a finite number > 0, got 0"),
        (dict(max_updates=0), "max_updates must be an integer >= 1, got 0"),
        (dict(batch_users=-1), "batch_users must be an integer >= 1, got -1"),
        (dict(eval_every=0), "eval_every must be an integer >= 1"),
        (dict(reg_user=-0.1), "reg_user must be a finite number >= 0"),
        (dict(eps_conf=0.0), "eps_conf must be a finite number > 0"),
        (dict(lambda_mtl=1.5), r"lambda_mtl must be a number in \[0, 1\], got 1.5"),
        (dict(lambda_mtl=0.5), "asks for the tag task but tags is None"),
        (dict(valid_likes=likes, valid_papers=[0, 1], valid_k=3), r"valid_k must be an integer in \[1, 2\]"),
        (dict(valid_likes=likes[:2]), r"valid_likes has shape \(2, 4\)"),
        (dict(train_papers=[]), "train_papers is empty"),
    ]
    for change, message in bad:
        with pytest.raises(ValueError, match=message):
            check_fit_args((3, 4, 0), likes, 4, **{**ok, **change})
    with pytest.raises(ValueError, match=r"likes has shape \(3, 3\), the model expects \(3, 4\)"):
        check_fit_args((3, 4, 0), likes[:, :3], 4, **ok)
    with pytest.raises(ValueError, match="texts has 5 papers, the model expects 4"):
        check_fit_args((3, 4, 0), likes, 5, **ok)
    with pytest.raises(ValueError, match="likes is empty"):
        check_fit_args((3, 4, 0), sp.csr_matrix((3, 4)), 4, **ok)
    with pytest.raises(ValueError, match="likes must be a"):
        check_fit_args((3, 4, 0), [[1, 0]], 4, **ok)


def test_frequent_tags_keeps_tags_on_enough_papers():
    tags = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [1, 0, 1]], dtype=np.float32))
    kept, ids = frequent_tags(tags, min_papers=2)
    np.testing.assert_array_equal(ids, [0])
    assert kept.shape == (3, 1) and kept.nnz == 3
    with pytest.raises(ValueError, match="no tag is used on >= 4 papers"):
        frequent_tags(tags, min_papers=4)


def test_memory_guards_fail_fast_with_the_numbers(monkeypatch):
    from course_lib import training, validation

    monkeypatch.setattr(validation, "available_memory", lambda: 10**6)  # 1 MB free
    likes = sp.csr_matrix(np.ones((50, 30), dtype=np.float32))
    sel = select_papers(likes)
    with pytest.raises(AllocationTooLarge, match=r"the \(1500, n_sample=50\) negative users of a mini-batch would "
                                                  r"need 2.4 MB but only 1.0 MB .*lower n_sample or batch_size"):
        training.check_hybrid_memory(sel, 64, "bpr", 50)
    training.check_hybrid_memory(sel, 2, "wmse", None)  # 2 x 50 scores: fine
    with pytest.raises(AllocationTooLarge, match=r"one update's activations .*lower batch_users"):
        training.check_askgru_memory({"emb_dim": 200, "hidden1": 400, "hidden2": 200}, 512, 300)

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
    for args, message in [((64, -1.0, 5, 50), "lambda_p2v must be a finite number >= 0, got -1.0"),
                          ((64, 1.0, 0, 50), "negative must be an integer >= 1, got 0"),
                          ((64, 1.0, 5, 0), "n_words must be an integer >= 1, got 0"),
                          ((0, 1.0, 5, 50), "dim must be an integer >= 1, got 0"),
                          ((64, 1.0, 5, 50, 0), "infer_steps must be an integer >= 1, got 0"),
                          ((64, 1.0, 5, 50, 10, -0.1), "infer_lr must be a finite number > 0, got -0.1")]:
        with pytest.raises(ValueError, match=message):
            check_p2v_sizes(*args)


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


def test_notebook_06_does_not_import_torch():
    # the Theano notebook runs in the Theano-only environment; PyTorch figures come from the benchmark table
    import json
    import re
    from pathlib import Path

    nb = Path(__file__).resolve().parents[1] / "solutions" / "06_theano_track.ipynb"
    code = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
    assert not re.search(r"^\s*(import torch|from torch)", code, re.M)
