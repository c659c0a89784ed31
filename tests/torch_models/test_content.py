"""Content encoders (a) and (b): the TF-IDF weighted average on a hand-computed case, padding,
frozen vs fine-tuned weights, the paragraph-vector lookup, batching helpers and bad input."""
import numpy as np
import pytest
import torch

from course_lib.text import EncodedCorpus
from course_lib.torch_models.content import (
    PretrainedParagraphVectors,
    TfidfWordAverage,
    encode_all,
    make_text_batch,
    make_text_batches,
)
from course_lib.torch_models.utils import TextBatch
from course_lib.word_vectors import WordVectors

VECTORS = np.array([[0, 0], [9, 9], [1, 0], [0, 1], [2, 2]], dtype=np.float32)  # row 0: <PAD>
IDF = np.array([0.0, 0.5, 1.0, 2.0, 0.25], dtype=np.float32)


def batch(ids, paper_idx=None):
    ids = np.asarray(ids)
    paper_idx = np.arange(len(ids)) if paper_idx is None else paper_idx
    return TextBatch.from_arrays(ids, (ids > 0).astype(np.float32), paper_idx)


def test_tfidf_average_matches_hand_computation():
    enc = TfidfWordAverage(VECTORS, IDF)
    out = enc(batch([[2, 3, 3, 0], [4, 0, 0, 0], [1, 2, 0, 0]])).detach().numpy()
    # paper 0: tf(2)=1, tf(3)=2 -> (1*1*[1,0] + 2*2*[0,1]) / (1 + 4) = [0.2, 0.8]
    # paper 1: only word 4 -> its vector; paper 2: (0.5*[9,9] + 1*[1,0]) / 1.5
    expected = [[0.2, 0.8], [2.0, 2.0], [5.5 / 1.5, 4.5 / 1.5]]
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert enc.out_dim == 2 and out.shape == (3, 2)


def test_padding_and_word_order_do_not_change_the_average():
    enc = TfidfWordAverage(VECTORS, IDF)
    a = enc(batch([[2, 3, 3]]))
    b = enc(batch([[3, 2, 3, 0, 0, 0]]))
    torch.testing.assert_close(a, b)


def test_frozen_vs_fine_tuned_word_vectors():
    frozen = TfidfWordAverage(WordVectors(VECTORS, np.ones(5, bool), "test"), IDF)
    assert not any(p.requires_grad for p in frozen.parameters())
    tuned = TfidfWordAverage(VECTORS, IDF, fine_tune=True)
    opt = torch.optim.SGD(tuned.parameters(), lr=1.0)
    tuned(batch([[2, 3, 3, 0]])).sum().backward()
    grad = tuned.embedding.weight.grad.numpy()
    # d(sum of output)/d e_w = weight of w in the average (1/5 for word 2, 4/5 for word 3)
    np.testing.assert_allclose(grad[2], [0.2, 0.2], rtol=1e-6)
    np.testing.assert_allclose(grad[3], [0.8, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(grad[[0, 1, 4]], 0.0)
    opt.step()
    np.testing.assert_allclose(tuned.embedding.weight[2].detach().numpy(), [0.8, -0.2], rtol=1e-6)
    np.testing.assert_array_equal(tuned.idf.numpy(), IDF)  # idf is a buffer, never trained
    assert tuned.aux_loss(batch([[2]])).item() == 0.0


def test_tfidf_bad_input():
    with pytest.raises(ValueError, match="same vocabulary"):
        TfidfWordAverage(VECTORS, IDF[:4])
    with pytest.raises(ValueError, match="NaN"):
        TfidfWordAverage(np.full((5, 2), np.nan), IDF)
    enc = TfidfWordAverage(VECTORS, np.array([0, 0, 1, 1, 1], dtype=np.float32))
    with pytest.raises(ValueError, match=r"papers \[7\] have no token with a positive idf"):
        enc(batch([[2, 0], [1, 1]], paper_idx=np.array([3, 7])))


def test_paragraph_vector_lookup_and_fine_tuning_moves_only_batch_rows():
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    enc = PretrainedParagraphVectors(table)
    out = enc(batch([[2], [2]], paper_idx=np.array([3, 0])))
    np.testing.assert_array_equal(out.numpy(), table[[3, 0]])
    assert enc.out_dim == 3 and not any(p.requires_grad for p in enc.parameters())
    tuned = PretrainedParagraphVectors(table, fine_tune=True)
    opt = torch.optim.Adagrad(tuned.parameters(), lr=0.1)
    tuned(batch([[2]], paper_idx=np.array([1]))).sum().backward()
    opt.step()
    moved = np.any(tuned.table.weight.detach().numpy() != table, axis=1)
    np.testing.assert_array_equal(moved, [False, True, False, False])
    with pytest.raises(ValueError, match=r"paper ids must be in \[0, 4\), got 4"):
        enc(batch([[2]], paper_idx=np.array([4])))


def test_text_batches_trim_padding_and_cover_every_paper_once():
    ids = np.array([[5, 6, 0, 0], [5, 0, 0, 0], [7, 8, 9, 0]])
    corpus = EncodedCorpus(ids, (ids > 0).astype(np.float32), np.array([2, 1, 3]))
    b = make_text_batch(corpus, [1, 0])
    assert b.ids.shape == (2, 2) and b.paper_idx.tolist() == [1, 0]
    np.testing.assert_array_equal(b.mask.numpy(), [[1, 0], [1, 1]])
    seen = [b.paper_idx.tolist() for b in make_text_batches(corpus, [0, 1, 2], batch_size=2, shuffle=True, seed=3)]
    assert sorted(sum(seen, [])) == [0, 1, 2] and [len(s) for s in seen] == [2, 1]
    again = [b.paper_idx.tolist() for b in make_text_batches(corpus, [0, 1, 2], batch_size=2, shuffle=True, seed=3)]
    assert seen == again
    with pytest.raises(ValueError, match=r"paper ids must be in \[0, 3\)"):
        make_text_batch(corpus, [3])


def test_encode_all_equals_forward_on_every_paper():
    ids = np.array([[2, 3, 3, 0], [4, 0, 0, 0], [1, 2, 0, 0]])
    corpus = EncodedCorpus(ids, (ids > 0).astype(np.float32), np.array([3, 1, 2]))
    enc = TfidfWordAverage(VECTORS, IDF)
    out = encode_all(enc, corpus, batch_size=2)
    np.testing.assert_allclose(out, enc(batch(ids)).detach().numpy(), rtol=1e-6)
    assert out.dtype == np.float32


def test_both_encoders_plug_into_the_hybrid_recommender_unchanged():
    from course_lib.torch_models.hybrid import HybridRecommender

    ids = np.array([[2, 3, 3, 0], [4, 0, 0, 0], [1, 2, 0, 0]])
    for encoder in (TfidfWordAverage(VECTORS, IDF, fine_tune=True), PretrainedParagraphVectors(VECTORS[:3] + 1.0)):
        model = HybridRecommender(n_users=5, n_papers=3, encoder=encoder, item_dim=4, merge="sum", seed=0)
        scores = model(batch(ids))
        assert scores.shape == (3, 5)
        scores.sum().backward()
        assert model.content_proj.weight.grad is not None and model.content_proj.weight.grad.abs().sum() > 0
