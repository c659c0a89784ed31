"""Your own code in the Theano track's training loop: a compiled step (notebook 06) or a loss graph
of your own trains exactly as the library's does; the models save, load and refuse bad input."""
import numpy as np
import pytest
import scipy.sparse as sp

from course_lib.theano_models import askgru as ta
from course_lib.theano_models import compat
from course_lib.theano_models import content as tcon
from course_lib.theano_models import hybrid as th
from course_lib.theano_models.compat import T, log_sigmoid, log_softmax, theano
from course_lib.validation import TrainingDiverged

N_USERS, N_PAPERS, VOCAB, DIM = 30, 24, 20, 5


@pytest.fixture(scope="module")
def data():
    """Users like the papers of their topic; a paper's topic is in its words; papers 20-23 are cold."""
    rng = np.random.default_rng(0)
    topic = np.arange(N_PAPERS) % 3
    ids = 1 + 6 * topic[:, None] + rng.integers(0, 6, size=(N_PAPERS, 6))  # (P, 6) word ids of the topic
    mask = np.ones_like(ids, dtype=np.float64)
    user_topic = np.arange(N_USERS) % 3
    likes = (user_topic[:, None] == topic[None, :]) & (rng.random((N_USERS, N_PAPERS)) < 0.6)
    likes = sp.csr_matrix(likes.astype(np.float32))
    train, valid = likes.copy().tolil(), sp.lil_matrix(likes.shape, dtype=np.float32)
    train[:, 20:], valid[:, 20:] = 0, likes[:, 20:]
    texts = th.PaperTexts(ids, mask)
    return texts, sp.csr_matrix(train), sp.csr_matrix(valid), rng.normal(0, 0.3, (VOCAB, DIM)), np.ones(VOCAB)


def _model(wv, idf, dtype="float64"):
    enc = tcon.TfidfWordAverage(wv, idf, fine_tune=True, dtype=dtype)
    return th.HybridRecommender(N_USERS, N_PAPERS, enc, item_dim=4, dropout_item=0.3, seed=7, dtype=dtype)


def _compile_training_step(model, alpha, lr):
    """Notebook 06's Exercise 4 as a learner writes it: weighted MSE, Adagrad as an update list."""
    targets = T.matrix("targets", dtype=model.dtype)
    stream = compat.RandomStream(7)  # the model's seed: the same dropout masks as the library's step
    scores = model.scores(train=True, stream=stream)
    weights = 1.0 + (alpha - 1.0) * targets
    loss = (weights * (targets - scores) ** 2).sum(axis=1).mean()
    updates = []
    for p, g in zip(model.params.trainable_vars(), theano.grad(loss, model.params.trainable_vars())):
        acc = theano.shared(np.zeros_like(p.get_value()))
        acc_new = acc + g**2
        updates += [(acc, acc_new), (p, p - lr * g / (T.sqrt(acc_new) + 1e-10))]
    return compat.function(model.inputs() + [targets], loss, updates=updates + stream.pop_updates())


def test_your_compiled_step_trains_the_hybrid_exactly_as_the_library_does(data):
    texts, train, valid, wv, idf = data
    runs = []
    for own in (False, True):
        model = _model(wv, idf)
        step_fn = _compile_training_step(model, 50.0, 0.1) if own else None
        hist = th.train_hybrid(model, texts, train, valid, loss="wmse", alpha=50.0, lr=0.1, batch_size=8, epochs=4,
                               monitor="Recall@5", seed=3, progress=False, step_fn=step_fn)
        runs.append((hist, model.score_papers(np.arange(N_PAPERS), texts)))
    (lib, s_lib), (own, s_own) = runs
    # float64, the same draws: equal up to the rounding of two ways of writing the weighted MSE
    np.testing.assert_allclose(own["loss"], lib["loss"], rtol=1e-6)
    assert own["valid_Recall@5"] == lib["valid_Recall@5"] and own["best_epoch"] == lib["best_epoch"]
    np.testing.assert_allclose(s_own, s_lib, rtol=1e-6, atol=1e-7)
    assert own["compile_seconds"] == [0.0] and lib["compile_seconds"][0] > 0


def _listwise_by_hand(model, batch, scores, inputs):
    rows, pos, neg = inputs["rows"], inputs["pos"], inputs["neg"]
    logits = T.concatenate([scores[rows, pos][:, None], scores[rows[:, None], neg]], axis=1)  # (P, 1 + N_S)
    return -log_softmax(logits)[:, 0].mean()


def test_your_loss_graph_trains_the_hybrid_exactly_as_the_library_does(data):
    texts, train, valid, wv, idf = data
    hists = [th.train_hybrid(_model(wv, idf), texts, train, valid, loss="listwise", n_sample=4, lr=0.1, batch_size=8,
                             epochs=3, monitor="Recall@5", seed=3, progress=False, loss_fn=fn)
             for fn in (None, _listwise_by_hand)]
    np.testing.assert_allclose(hists[1]["loss"], hists[0]["rec_loss"], rtol=1e-10)
    assert hists[1]["valid_Recall@5"] == hists[0]["valid_Recall@5"]


def test_hybrid_save_load_untrained_and_diverged(data, tmp_path):
    texts, train, valid, wv, idf = data
    model = _model(wv, idf)
    with pytest.raises(ValueError, match=r"this model is untrained .*train_hybrid\(model, texts, train_likes"):
        model.score_papers([0, 1], texts)
    th.train_hybrid(model, texts, train, valid, lr=0.1, batch_size=8, epochs=2, monitor="Recall@5", progress=False)
    model.save(tmp_path / "hybrid.npz")
    loaded = th.HybridRecommender.load(tmp_path / "hybrid.npz", encoder=tcon.TfidfWordAverage(wv, idf, dtype="float64"))
    np.testing.assert_array_equal(loaded.score_papers(np.arange(N_PAPERS), texts),
                                  model.score_papers(np.arange(N_PAPERS), texts))
    with pytest.raises(ValueError, match="the saved model has encoder 'TfidfWordAverage'; pass encoder="):
        th.HybridRecommender.load(tmp_path / "hybrid.npz")
    with pytest.raises(TrainingDiverged, match=r"the loss became nan at epoch 1, step 1 \(loss\): lower lr"):
        th.train_hybrid(_model(wv, idf), texts, train, valid, batch_size=8, epochs=1, progress=False,
                        step_fn=lambda *batch: float("nan"))
    with pytest.raises(ValueError, match=r"ids \(2, 6\) and mask \(2, 5\) must be \(B, L\)"):
        model.check_batch(texts.ids[:2], texts.mask[:2, :5], [0, 1])
    with pytest.raises(ValueError, match="scores must be a symbolic 2-d variable"):
        th.weighted_mse_loss(T.vector("s"), T.matrix("t"), 5.0)


def test_encode_all_and_text_batches(data):
    texts, train, valid, wv, idf = data
    enc = tcon.TfidfWordAverage(wv, idf, dtype="float64")
    vectors = tcon.encode_all(enc, texts, batch_size=5)
    want = np.stack([wv[row].mean(0) for row in texts.ids])  # idf 1: the plain mean of the word vectors
    np.testing.assert_allclose(vectors, want, rtol=1e-6)
    ids, mask, idx = tcon.make_text_batch(th.PaperTexts(np.array([[3, 4, 0], [5, 0, 0]]), np.array([[1, 1, 0],
                                                                                                      [1, 0, 0.0]])),
                                          [1])
    assert ids.tolist() == [[5]] and idx.tolist() == [1]  # trimmed to the longest paper of the batch
    assert [b[2].tolist() for b in tcon.make_text_batches(texts, [0, 1, 2], batch_size=2)] == [[0, 1], [2]]


def _askgru_losses_by_hand(model, batch, f):
    pred = model.score_pairs(batch.users, f)
    c_r = (batch.conf * (pred - batch.target) ** 2).mean() \
        + 0.01 * (model.params["user_emb"][batch.users] ** 2).sum(axis=1).mean()
    logits = model.tag_logits(f)
    c_t = -(batch.tags * log_sigmoid(logits) + 0.01 * (1 - batch.tags) * log_sigmoid(-logits)).sum(axis=1).mean()
    return {"loss": 0.5 * c_r + 0.5 * c_t, "loss_rec": c_r, "loss_tag": c_t}


def test_your_askgru_losses_train_as_the_library_does_and_the_model_saves(data, tmp_path):
    texts, train, valid, wv, idf = data
    tags = sp.csr_matrix((np.arange(N_PAPERS)[:, None] % 3 == np.arange(3)[None, :]).astype(np.float32))
    runs = []
    for fn in (None, _askgru_losses_by_hand):
        model = ta.AskGRU(ta.EmbedEncoder(VOCAB, 4, seed=1, dtype="float64"), N_USERS, N_PAPERS, n_tags=3, seed=1)
        hist = ta.fit(model, train, texts, tags=tags, lambda_mtl=0.5, valid_likes=valid, valid_papers=np.arange(20, 24),
                      valid_k=2, batch_users=10, max_updates=20, eval_every=5, lr=0.01, seed=4, progress=False,
                      loss_fn=fn)
        runs.append((hist, model))
    (lib, model), (own, _) = runs
    for key in ("loss", "loss_rec", "loss_tag", "valid_recall"):
        np.testing.assert_allclose(getattr(own, key), getattr(lib, key), rtol=1e-8, err_msg=key)
    assert isinstance(lib, ta.History) and lib.update == [5, 10, 15, 20] and lib.compile_seconds > 0
    model.save(tmp_path / "askgru.npz")
    loaded = ta.AskGRU.load(tmp_path / "askgru.npz")
    np.testing.assert_array_equal(ta.score(loaded, texts), ta.score(model, texts))
    untrained = ta.AskGRU(ta.EmbedEncoder(VOCAB, 4, dtype="float64"), N_USERS, N_PAPERS)
    with pytest.raises(ValueError, match=r"this model is untrained .*fit\(model, likes, texts"):
        ta.score(untrained, texts)
    with pytest.raises(ValueError, match="word ids must be in \\[0, 3\\)"):
        ta.fit(ta.AskGRU(ta.EmbedEncoder(3, 4, dtype="float64"), N_USERS, N_PAPERS), train, texts, max_updates=1,
               batch_users=10, progress=False)


def test_theano_encoders_and_models_refuse_bad_arguments_in_words():
    from course_lib.theano_models import e2e_paragraph as te

    wv = np.ones((5, 3))
    cases = [
        (lambda: tcon.TfidfWordAverage(wv, np.ones(4)), "idf has shape \\(4,\\) but word_vectors has 5 rows"),
        (lambda: tcon.TfidfWordAverage(wv, -np.ones(5)), "idf must be finite and non-negative"),
        (lambda: tcon.PretrainedParagraphVectors(np.full((4, 2), np.nan)), "vectors contains NaN"),
        (lambda: te.EndToEndParagraphVectors(0, np.ones(5)), "n_papers must be an integer >= 1, got 0"),
        (lambda: te.EndToEndParagraphVectors(4, np.ones(5), infer_lr=-1.0), "infer_lr must be a finite number > 0"),
        (lambda: th.HybridRecommender(3, 4, item_dim=0), "item_dim must be an integer >= 1, got 0"),
        (lambda: th.HybridRecommender(3, 4, dropout_user=1.5), r"dropout_user must be a number in \[0, 1\)"),
        (lambda: ta.GRUEncoder(10, 4, hidden1=0), "hidden1 must be an integer >= 1, got 0"),
        (lambda: ta.AskGRU(ta.EmbedEncoder(10, 4), 0, 5), "n_users must be an integer >= 1, got 0"),
    ]
    for make, message in cases:
        with pytest.raises(ValueError, match=message):
            make()
    enc = tcon.TfidfWordAverage(wv, np.ones(5))
    with pytest.raises(ValueError, match=r"word ids must be in \[0, 5\)"):
        enc.check(np.array([[1, 7]]), np.ones((1, 2)), [0])


def test_theano_fit_checks_its_arguments_before_compiling(data):
    texts, train, valid, wv, idf = data
    model = ta.AskGRU(ta.EmbedEncoder(VOCAB, 4, dtype="float64"), N_USERS, N_PAPERS)
    for bad, message in [(dict(max_updates=0), "max_updates must be an integer >= 1, got 0"),
                         (dict(lr=0.0), "lr must be a finite number > 0"),
                         (dict(lambda_mtl=0.5), "asks for the tag task but tags is None"),
                         (dict(loss_fn=lambda *a: 0, step_fn=lambda *a: 0), "not both")]:
        with pytest.raises(ValueError, match=message):
            ta.fit(model, train, texts, progress=False, **bad)
    with pytest.raises(ValueError, match=r"likes has shape \(30, 20\), the model expects \(30, 24\)"):
        ta.fit(model, train[:, :20], texts, progress=False)


def test_your_activation_is_the_one_in_the_processing_layers(data):
    """Notebook 06 puts the learner's ELU into the model: the processing layers use ``activation``."""
    texts, train, valid, wv, idf = data

    def scores(activation):
        model = th.HybridRecommender(N_USERS, N_PAPERS, tcon.TfidfWordAverage(wv, idf, dtype="float64"), item_dim=4,
                                     hidden=(3,), seed=7, dtype="float64", activation=activation)
        model.set_known_papers(np.ones(N_PAPERS, dtype=bool))
        return model.score_papers(np.arange(N_PAPERS), texts)

    default = scores(compat.elu)
    np.testing.assert_allclose(scores(lambda x: T.switch(x > 0, x, T.expm1(T.minimum(x, 0)))), default, rtol=1e-6)
    assert np.abs(scores(T.tanh) - default).max() > 1e-4
    with pytest.raises(ValueError, match="activation must be a function of a symbolic tensor"):
        th.HybridRecommender(N_USERS, N_PAPERS, activation="elu")
