"""The hybrid flip recommender: losses against their formulas, the model's parts, and learning."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from course_lib.checks import numerical_gradient, rel_error
from course_lib.torch_models.hybrid import (
    HybridRecommender,
    PaperTexts,
    bpr_loss,
    compute_loss,
    hybrid_loss,
    listwise_loss,
    make_train_step,
    positive_pairs,
    sample_loss_inputs,
    sample_negative_users,
    train_hybrid,
    weighted_mse_loss,
)
from course_lib.torch_models.utils import TextBatch, torch_generator
from course_lib.validation import TrainingDiverged


class MeanWords(nn.Module):
    """A trivial content encoder with the course interface: the mean of learnt word vectors."""

    def __init__(self, vocab_size, dim=8, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.emb = nn.Embedding(vocab_size, dim)
        self.out_dim = dim

    def forward(self, batch: TextBatch):
        e = self.emb(batch.ids) * batch.mask.unsqueeze(-1)  # (B, L, dim)
        return e.sum(1) / batch.mask.sum(1, keepdim=True)




def planted(n_users=120, n_papers=200, n_topics=4, seed=0):
    """Users like papers of one topic; a paper's topic is written in its words (a bag suffices)."""
    rng = np.random.default_rng(seed)
    topic_words = 8
    common = 3 + n_topics * topic_words  # ids 0..2 are special, then topic words, then common words
    vocab = common + 20
    topic = rng.integers(0, n_topics, n_papers)
    L = 16
    ids = np.zeros((n_papers, L), dtype=np.int64)
    for j in range(n_papers):
        ids[j, :6] = 3 + topic[j] * topic_words + rng.integers(0, topic_words, 6)
        ids[j, 6:] = common + rng.integers(0, 20, L - 6)
    mask = np.ones_like(ids, dtype=np.float32)
    user_topic = rng.integers(0, n_topics, n_users)
    activity = rng.integers(3, 12, n_users)
    rows, cols = [], []
    for u in range(n_users):
        mine = np.flatnonzero(topic == user_topic[u])
        chosen = rng.choice(mine, size=min(activity[u], len(mine)), replace=False)
        rows += [u] * len(chosen)
        cols += list(chosen)
    likes = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_papers))
    cold = rng.permutation(n_papers)[: n_papers // 5]
    is_cold = np.zeros(n_papers, bool)
    is_cold[cold] = True
    train = sp.csr_matrix(likes.multiply(~is_cold[None, :]))
    test = sp.csr_matrix(likes.multiply(is_cold[None, :]))
    return ids, mask, vocab, train, test, np.sort(cold)


# ------------------------------------------------------------------------------------ losses


def test_weighted_mse_matches_formula_with_and_without_sampling():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(4, 7))
    t = (rng.random((4, 7)) < 0.3).astype(float)
    alpha = 10.0
    expected = np.mean([alpha * sum((1 - s[i, u]) ** 2 for u in range(7) if t[i, u])
                        + sum(s[i, u] ** 2 for u in range(7) if not t[i, u]) for i in range(4)])
    got = weighted_mse_loss(torch.tensor(s), torch.tensor(t), alpha)
    assert float(got) == pytest.approx(expected, rel=1e-12)
    neg_mask = rng.random((4, 7)) < 0.5  # positives inside the mask must still count as positives
    expected = np.mean([alpha * sum((1 - s[i, u]) ** 2 for u in range(7) if t[i, u])
                        + sum(s[i, u] ** 2 for u in range(7) if not t[i, u] and neg_mask[i, u]) for i in range(4)])
    got = weighted_mse_loss(torch.tensor(s), torch.tensor(t), alpha, neg_mask=torch.tensor(neg_mask))
    assert float(got) == pytest.approx(expected, rel=1e-12)


def _pairs_and_negs():
    rng = np.random.default_rng(2)
    s = rng.normal(size=(3, 9))
    t = np.zeros((3, 9))
    t[0, [1, 4]] = 1
    t[1, 0] = 1
    t[2, [2, 3, 8]] = 1
    rows, pos = positive_pairs(torch.tensor(t))
    neg = sample_negative_users(torch.tensor(t), rows, 4, torch_generator(0))
    return s, t, rows, pos, neg


def test_bpr_and_listwise_match_their_formulas():
    s, t, rows, pos, neg = _pairs_and_negs()
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    bpr, xe = [], []
    for p in range(len(rows)):
        i, u = int(rows[p]), int(pos[p])
        negs = neg[p].numpy()
        bpr.append(np.mean([-np.log(sig(s[i, u] - s[i, j])) for j in negs]))
        xe.append(-np.log(np.exp(s[i, u]) / (np.exp(s[i, u]) + sum(np.exp(s[i, j]) for j in negs))))
    st = torch.tensor(s)
    assert float(bpr_loss(st, rows, pos, neg)) == pytest.approx(np.mean(bpr), rel=1e-12)
    assert float(listwise_loss(st, rows, pos, neg)) == pytest.approx(np.mean(xe), rel=1e-12)
    assert len(rows) == 6  # every like of the batch is one positive example


def test_loss_gradients_match_finite_differences():
    s, t, rows, pos, neg = _pairs_and_negs()
    for fn in (lambda x: bpr_loss(x, rows, pos, neg), lambda x: listwise_loss(x, rows, pos, neg),
               lambda x: weighted_mse_loss(x, torch.tensor(t), 5.0)):
        x = torch.tensor(s, requires_grad=True)
        fn(x).backward()
        num = numerical_gradient(lambda a: float(fn(torch.tensor(a))), s)
        assert rel_error(x.grad.numpy(), num) < 1e-6


def test_negative_sampling_never_draws_a_liker_and_is_seeded():
    t = torch.zeros(2, 6)
    t[0, [0, 1, 2]] = 1
    t[1, 5] = 1
    rows = torch.tensor([0, 0, 1])
    a = sample_negative_users(t, rows, 200, torch_generator(3))
    b = sample_negative_users(t, rows, 200, torch_generator(3))
    assert torch.equal(a, b)
    assert not t[rows.unsqueeze(1), a].any()
    assert set(a[0].tolist()) == {3, 4, 5}  # uniform over the three non-likers: all of them appear
    with pytest.raises(ValueError, match="n_sample"):
        sample_negative_users(t, rows, 0)


def test_sampled_wmse_uses_exactly_the_sampled_negatives():
    rng = np.random.default_rng(4)
    s = torch.tensor(rng.normal(size=(3, 10)))
    t = torch.tensor((rng.random((3, 10)) < 0.2).astype(float))
    t[:, 0] = 1
    inputs = sample_loss_inputs("wmse", t, 3, torch_generator(9))
    got = compute_loss("wmse", s, inputs, alpha=7.0)
    neg = sample_negative_users(t, torch.arange(3), 3, torch_generator(9))
    mask = torch.zeros_like(t).scatter_(1, neg, 1.0)
    assert torch.equal(inputs["neg_mask"], mask)
    assert float(got) == pytest.approx(float(weighted_mse_loss(s, t, 7.0, neg_mask=mask)), rel=1e-12)
    assert float(got) < float(weighted_mse_loss(s, t, 7.0))  # fewer negatives, smaller sum
    every = sample_loss_inputs("wmse", t)  # no sampling: every non-liker counts
    assert every["neg_mask"] is None
    assert float(compute_loss("wmse", s, every, alpha=7.0)) == pytest.approx(float(weighted_mse_loss(s, t, 7.0)))
    ranked = sample_loss_inputs("bpr", t, 4, torch_generator(1))
    assert ranked["neg"].shape == (int(t.sum()), 4) and torch.equal(ranked["targets"], t)
    with pytest.raises(ValueError, match="loss must be one of"):
        compute_loss("hinge", s, inputs)
    with pytest.raises(ValueError, match="loss must be one of"):
        sample_loss_inputs("hinge", t)


def test_losses_refuse_wrong_shapes_in_words():
    s, t = torch.zeros(3, 5), torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"scores \(3, 5\) and targets \(3, 4\) must have the same shape"):
        weighted_mse_loss(s, t, 5.0)
    with pytest.raises(ValueError, match="scores and targets must be torch tensors"):
        weighted_mse_loss(s.numpy(), t, 5.0)
    rows, pos = torch.tensor([0, 1]), torch.tensor([2, 3])
    with pytest.raises(ValueError, match=r"neg \(3, 4\) \(P, n_sample\): one row of negatives per like"):
        bpr_loss(s, rows, pos, torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"scores must be \(B, n_users\)"):
        listwise_loss(torch.zeros(5), rows, pos, torch.zeros(2, 4, dtype=torch.long))


# ------------------------------------------------------------------------------------ model


def _batch(ids, mask, papers):
    return PaperTexts(ids, mask, "cpu").batch(papers)


def test_forward_shapes_merges_and_cold_item_embedding_is_zero():
    ids, mask, vocab, train, test, cold = planted(n_users=30, n_papers=40)
    for merge, rep in [("concat", 6 + 8), ("sum", 6)]:
        m = HybridRecommender(30, 40, MeanWords(vocab), item_dim=6, merge=merge, hidden=(5,))
        assert m.layers[0].in_features == rep
        assert isinstance(m.layers[1], nn.ELU) and m.layers[1].alpha == 1.0
        b = _batch(ids, mask, [0, 1, 2])
        assert m(b).shape == (3, 30)
    m = HybridRecommender(30, 40, MeanWords(vocab), item_dim=6, merge="sum", user_bias=False).eval()
    known = np.ones(40, bool)
    known[1] = False
    m.set_known_papers(known)
    b = _batch(ids, mask, [0, 1])
    before = m(b).detach()
    with torch.no_grad():
        m.item_emb.weight[:2] += 1.0
    after = m(b).detach()
    assert not torch.allclose(before[0], after[0])  # a known paper uses its item embedding
    assert torch.equal(before[1], after[1])  # a cold paper does not: its embedding is zero
    # sum merge by hand: (v_j + W c_j) . u
    c = m.encoder(b)
    rep = m.item_emb.weight[:2] * torch.tensor([[1.0], [0.0]]) + c @ m.content_proj.weight.T
    assert torch.allclose(after, rep @ m.user_emb.weight.T, atol=1e-6)


def test_dropout_rates_are_separate_and_off_in_eval():
    ids, mask, vocab, *_ = planted(n_users=30, n_papers=40)
    b = _batch(ids, mask, [0, 1])
    for rate in ("dropout_user", "dropout_item", "dropout_content", "dropout_hidden"):
        m = HybridRecommender(30, 40, MeanWords(vocab), item_dim=6, hidden=(6,), **{rate: 0.5})
        m.set_known_papers(np.ones(40, bool))
        m.train()
        assert not torch.equal(m(b), m(b)), rate
        m.eval()
        assert torch.equal(m(b), m(b)), rate
    with pytest.raises(ValueError, match=r"dropout_item must be a number in \[0, 1\)"):
        HybridRecommender(30, 40, item_dim=6, dropout_item=1.0)
    with pytest.raises(ValueError, match="merge must be one of"):
        HybridRecommender(30, 40, item_dim=6, merge="product")


def test_bad_inputs_give_clear_errors(tmp_path):
    ids, mask, vocab, train, test, cold = planted(n_users=30, n_papers=40)
    m = HybridRecommender(30, 40, MeanWords(vocab), item_dim=6)
    with pytest.raises(ValueError, match=r"this model is untrained .*train_hybrid\(model, texts, train_likes"):
        m.score_papers([0, 1], PaperTexts(ids, mask, "cpu"))
    m.set_known_papers(np.ones(40, bool))
    with pytest.raises(ValueError, match="the model reads a TextBatch"):
        m(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"n_sample must be an integer in \[1, 30\], got 1000000"):
        train_hybrid(m, PaperTexts(ids, mask, "cpu"), train, loss="bpr", n_sample=10**6, progress=False)
    for bad, message in [(dict(epochs=0), "epochs must be an integer >= 1, got 0"),
                         (dict(lr=-1.0), "lr must be a finite number > 0, got -1.0"),
                         (dict(batch_size=0), "batch_size must be an integer >= 1, got 0"),
                         (dict(loss_fn=lambda *a: 0, step_fn=lambda *a: 0), "not both"),
                         (dict(step_fn="mine"), "step_fn must be a function")]:
        with pytest.raises(ValueError, match=message):
            train_hybrid(m, PaperTexts(ids, mask, "cpu"), train, progress=False, **bad)
    for bad, message in [(dict(item_dim=0), "item_dim must be an integer >= 1"),
                         (dict(hidden=(0,)), "every size in hidden must be an integer >= 1"),
                         (dict(init_std=-1.0), "init_std must be a finite number > 0")]:
        with pytest.raises(ValueError, match=message):
            HybridRecommender(30, 40, **bad)
    with pytest.raises(ValueError, match=r"paper ids must be in \[0, 40\), got 40"):
        m.score_papers([0, 40], PaperTexts(ids, mask, "cpu"))
    with pytest.raises(ValueError, match="train_likes has shape"):
        train_hybrid(m, PaperTexts(ids, mask, "cpu"), train[:, :30], epochs=1, progress=False)
    with pytest.raises(ValueError, match="monitor must look like 'Recall@50'"):
        train_hybrid(m, PaperTexts(ids, mask, "cpu"), train, test, monitor="NDCG", epochs=1, progress=False)
    with pytest.raises(ValueError, match="loss must be one of"):
        train_hybrid(m, PaperTexts(ids, mask, "cpu"), train, loss="mse", epochs=1, progress=False)
    with pytest.raises(ValueError, match="patience must be >= 1"):
        train_hybrid(m, PaperTexts(ids, mask, "cpu"), train, test, patience=0, progress=False)
    with pytest.raises(ValueError, match="texts has 39 papers but the model was built for 40"):
        train_hybrid(m, PaperTexts(ids[:39], mask[:39], "cpu"), train, epochs=1, progress=False)
    bad_mask = mask.copy()
    bad_mask[3] = 0
    with pytest.raises(ValueError, match=r"papers \[3\] have empty texts"):
        PaperTexts(ids, bad_mask, "cpu")

    class NaNEncoder(MeanWords):
        def forward(self, batch):
            return super().forward(batch) * float("nan")

    m = HybridRecommender(30, 40, NaNEncoder(vocab), item_dim=6)
    with pytest.raises(TrainingDiverged, match=r"the loss became nan at epoch 1, step 1 \(loss\): lower lr "
                                               r"\(now 0.1\) or alpha \(now 50.0\)"):
        train_hybrid(m, PaperTexts(ids, mask, "cpu"), train, epochs=1, progress=False)
    m.save(tmp_path / "m.pt")
    with pytest.raises(ValueError, match="pass encoder="):
        HybridRecommender.load(tmp_path / "m.pt")


# ------------------------------------------------------------------------------------ training


def _popularity_cold_recall(train, test, cold, k=10):
    from course_lib.evaluation import evaluate_flip

    pop = np.asarray(train.sum(1)).ravel()
    return evaluate_flip(np.tile(pop, (len(cold), 1)), test, papers=cold, ks=(k,))[f"Recall@{k}"]


@pytest.mark.parametrize("loss,merge", [("wmse", "concat"), ("bpr", "sum"), ("listwise", "concat")])
def test_learns_planted_topics_for_cold_papers_and_beats_popularity(loss, merge):
    from course_lib.evaluation import evaluate_flip

    ids, mask, vocab, train, test, cold = planted()
    texts = PaperTexts(ids, mask, "cpu")
    m = HybridRecommender(120, 200, MeanWords(vocab, dim=8), item_dim=8, merge=merge, hidden=(8,), seed=0)
    hist = train_hybrid(m, texts, train, test, loss=loss, alpha=20.0, n_sample=10, lr=0.1, batch_size=32,
                        epochs=15, patience=4, monitor="Recall@10", progress=False, seed=0)
    got = evaluate_flip(m.score_papers(cold, texts), test, papers=cold, ks=(10,))["Recall@10"]
    pop = _popularity_cold_recall(train, test, cold)
    # 120 users in 4 taste groups of ~30: a model that reads the topic puts 10 of a paper's ~30
    # possible likers in its top 10 (measured 0.24-0.38); popularity ignores the topic (~0.05).
    assert got > pop + 0.15, (loss, got, pop)
    # early stopping restored the best epoch: the final model scores exactly the best valid recall
    assert got == pytest.approx(max(hist["valid_Recall@10"]), abs=1e-9)
    assert hist["best_epoch"][0] == 1 + int(np.argmax(hist["valid_Recall@10"]))


def test_same_seed_same_history_and_save_load_roundtrip(tmp_path):
    ids, mask, vocab, train, test, cold = planted(n_users=60, n_papers=80)
    texts = PaperTexts(ids, mask, "cpu")
    runs = []
    for _ in range(2):
        m = HybridRecommender(60, 80, MeanWords(vocab), item_dim=6, dropout_content=0.2, seed=3)
        h = train_hybrid(m, texts, train, test, epochs=3, n_sample=5, seed=3, progress=False, optimizer="adam",
                         lr=0.01)
        runs.append((h["loss"], m.score_papers(cold, texts)))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    m.save(tmp_path / "m.pt")
    loaded = HybridRecommender.load(tmp_path / "m.pt", encoder=MeanWords(vocab, seed=99), device="cpu")
    np.testing.assert_array_equal(loaded.score_papers(cold, texts), runs[1][1])
    assert loaded.item_known.sum() == m.item_known.sum() == (np.asarray(train.sum(0)).ravel() > 0).sum()


# ------------------------------------------------------------------------------------ your own code


def _joint_loss_by_hand(model, batch, scores, inputs):
    """A learner's loss_fn, written from the formulas: listwise on the sampled users + the encoder's term."""
    s_pos = scores[inputs["rows"], inputs["pos"]].unsqueeze(1)  # (P, 1)
    s_neg = scores[inputs["rows"].unsqueeze(1), inputs["neg"]]  # (P, N_S)
    rec = -torch.log_softmax(torch.cat([s_pos, s_neg], dim=1), dim=1)[:, 0].mean()
    aux = model.aux_loss(batch)
    return {"loss": rec + aux, "rec_loss": rec, "aux_loss": aux}


def test_a_loss_fn_of_your_own_trains_exactly_as_the_library_does():
    from course_lib.torch_models.e2e_paragraph import EndToEndParagraphVectors

    ids, mask, vocab, train, test, cold = planted(n_users=60, n_papers=80)
    texts = PaperTexts(ids, mask, "cpu")
    runs = []
    for loss_fn in (None, _joint_loss_by_hand):
        enc = EndToEndParagraphVectors(80, np.ones(vocab), dim=6, lambda_p2v=0.5, n_words=5, infer_steps=5, seed=2)
        m = HybridRecommender(60, 80, enc, item_dim=6, dropout_item=0.2, seed=2)
        h = train_hybrid(m, texts, train, test, loss="listwise", n_sample=5, epochs=3, seed=4, progress=False,
                         loss_fn=loss_fn)
        runs.append((h, m.score_papers(cold, texts)))
    (lib, s_lib), (own, s_own) = runs
    for key in ("loss", "rec_loss", "aux_loss", "valid_Recall@50"):
        assert own[key] == lib[key], key  # same seed: the same draws, the same numbers
    np.testing.assert_array_equal(s_own, s_lib)
    assert all(a > 0 for a in own["aux_loss"])  # the paragraph-vector term was part of every step


def test_a_step_fn_of_your_own_trains_exactly_as_the_library_does():
    ids, mask, vocab, train, test, cold = planted(n_users=60, n_papers=80)
    texts = PaperTexts(ids, mask, "cpu")
    runs = []
    for own in (False, True):
        m = HybridRecommender(60, 80, MeanWords(vocab, seed=1), item_dim=6, dropout_content=0.3, seed=1)
        step_fn = None
        if own:  # the five lines of notebook 01's training step, with the weighted MSE written out
            optimizer = torch.optim.Adagrad(m.parameters(), lr=0.1)

            def step_fn(batch, targets):
                m.train()
                optimizer.zero_grad()
                weights = 1.0 + (50.0 - 1.0) * targets
                loss = (weights * (targets - m(batch)) ** 2).sum(dim=1).mean()
                loss.backward()
                optimizer.step()
                return loss.item()

        h = train_hybrid(m, texts, train, test, loss="wmse", alpha=50.0, lr=0.1, epochs=3, seed=4, progress=False,
                         step_fn=step_fn)
        runs.append((h, m.score_papers(cold, texts)))
    (lib, s_lib), (own, s_own) = runs
    np.testing.assert_allclose(own["loss"], lib["loss"], rtol=1e-5)  # (1 + (a-1) t) err^2: another rounding
    np.testing.assert_allclose(own["valid_Recall@50"], lib["valid_Recall@50"], atol=1e-9)
    np.testing.assert_allclose(s_own, s_lib, rtol=1e-4, atol=1e-5)
    assert "rec_loss" not in own  # a step that returns a number records it as the loss


def test_hybrid_loss_is_the_recommendation_loss_plus_the_encoders_term():
    ids, mask, vocab, train, test, cold = planted(n_users=30, n_papers=40)
    m = HybridRecommender(30, 40, MeanWords(vocab), item_dim=6)
    batch = _batch(ids, mask, [0, 1, 2])
    targets = torch.zeros(3, 30)
    targets[:, 0] = 1
    inputs = sample_loss_inputs("wmse", targets)
    terms = hybrid_loss(m, batch, m(batch), inputs, loss="wmse", alpha=5.0)
    assert float(terms["aux_loss"]) == 0.0  # MeanWords has no auxiliary loss
    assert terms["loss"].item() == pytest.approx(weighted_mse_loss(m(batch), targets, 5.0).item(), rel=1e-6)
    step = make_train_step(m, loss="wmse", alpha=5.0, lr=0.1)
    first = step(batch, targets)
    assert set(first) == {"loss", "rec_loss", "aux_loss"} and step(batch, targets)["loss"] < first["loss"]


def test_scoring_more_than_memory_holds_fails_fast_with_the_numbers(monkeypatch):
    from course_lib import validation

    ids, mask, vocab, train, test, cold = planted(n_users=30, n_papers=40)
    m = HybridRecommender(30, 40, MeanWords(vocab), item_dim=6)
    m.set_known_papers(np.ones(40, bool))
    monkeypatch.setattr(validation, "available_memory", lambda: 1000)  # 1 kB free
    with pytest.raises(validation.AllocationTooLarge, match=r"the \(40, 30\) score matrix would need 0.0 MB but "
                                                            r"only 0.0 MB .*score fewer papers at a time"):
        m.score_papers(np.arange(40), PaperTexts(ids, mask, "cpu"))
