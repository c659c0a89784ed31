"""Seeded Theano-track GRU4Rec results pinned before the model/trainer split (issue 14).

Two epochs on the tiny tier with seed 0, float32; the pinned values (mean loss per epoch,
Recall@20, MRR@20, sum of the output weights) were recorded with the code of commit d1b895d.
"""
import pytest

from course_lib.data import load_sessions
from course_lib.evaluation import evaluate_sessions
from course_lib.theano_models.gru4rec import GRU4Rec

# recorded under tests/theano_models/conftest.py (optimizer=fast_compile)
PINNED = ([0.631127357676284, 0.5236699699445535], 0.446875, 0.2096987852887137, 249.24069256981602)


def test_seeded_run_is_unchanged():
    tiny = load_sessions("tiny")
    model = GRU4Rec(layers=[32], batch_size=32, n_epochs=2, seed=0, dtype="float32", loss="bpr-max", final_act="elu-0.5",
                    n_sample=32, sample_alpha=0.0, learning_rate=0.2, momentum=0.3).fit(tiny.train, progress=False)
    res = evaluate_sessions(model, tiny.test, cutoffs=(20,))
    losses, recall, mrr, wy_sum = PINNED
    assert [h["loss"] for h in model.history] == pytest.approx(losses, rel=1e-6)
    assert res["Recall@20"] == pytest.approx(recall, abs=1e-9)
    assert res["MRR@20"] == pytest.approx(mrr, rel=1e-6)
    assert float(model.W["Wy"].get_value().astype("float64").sum()) == pytest.approx(wy_sum, rel=1e-5)
