"""Seeded GRU4Rec results pinned before the model/trainer split (issue 14): the refactoring and
the speed work must leave every number of these runs unchanged.

Each configuration trains 2 epochs on the tiny tier with seed 0 and one torch thread; the pinned
values are the mean loss of each epoch, Recall@20 and MRR@20 on the test sessions, and the sum of
the output weights. They were recorded with the code of commit d1b895d (before the split).
"""
import pytest
import torch

from course_lib.data import load_sessions
from course_lib.evaluation import evaluate_sessions
from course_lib.torch_models.gru4rec import GRU4Rec

CONFIGS = {
    "xe-samples-logq-constrained": dict(loss="cross-entropy", constrained_embedding=True, n_sample=64, sample_alpha=0.5,
                                        logq=1.0, dropout_p_hidden=0.2, learning_rate=0.2, momentum=0.2),
    "bprmax-onehot-momentum": dict(loss="bpr-max", final_act="elu-0.5", n_sample=64, sample_alpha=0.0,
                                   learning_rate=0.2, momentum=0.3),
    "top1-embedding-dropout": dict(loss="top1", final_act="tanh", embedding=16, dropout_p_embed=0.1,
                                   dropout_p_hidden=0.2, n_sample=0, learning_rate=0.05),
    "bpr-2layers-adam": dict(loss="bpr", layers=[24, 16], optimizer="adam", learning_rate=0.01, n_sample=32),
    "xe-onehot-dropout-embed": dict(loss="cross-entropy", n_sample=0, dropout_p_embed=0.2, learning_rate=0.1),
}
# epoch losses, Recall@20, MRR@20, sum of Wy (float64)
PINNED = {
    "xe-samples-logq-constrained": ([4.0757749529436955, 2.7801072332391907], 0.5375, 0.2925331279816513, -1377.0190845149045),
    "bprmax-onehot-momentum": ([0.6234117326959399, 0.5107105867780802], 0.46171875, 0.2302135353426351, -480.5137909727491),
    "top1-embedding-dropout": ([0.9760490557467968, 0.9268970235992631], 0.29296875, 0.12387055822158252, -0.32002085903684474),
    "bpr-2layers-adam": ([0.6483000620706694, 0.4917535080804321], 0.27890625, 0.07876683231414269, 43.087578036254854),
    "xe-onehot-dropout-embed": ([3.034025961363987, 2.2577134044997336], 0.37265625, 0.18365569786948946, 540.4567933103358),
}


@pytest.fixture(scope="module")
def tiny():
    return load_sessions("tiny")


@pytest.mark.parametrize("name", list(CONFIGS))
def test_seeded_run_is_unchanged(tiny, name):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        kw = {"layers": [32], "batch_size": 32, "n_epochs": 2, "seed": 0, **CONFIGS[name]}
        model = GRU4Rec(device="cpu", **kw).fit(tiny.train, progress=False)
        res = evaluate_sessions(model, tiny.test, cutoffs=(20,))
    finally:
        torch.set_num_threads(threads)
    losses, recall, mrr, wy_sum = PINNED[name]
    assert [h["loss"] for h in model.history] == pytest.approx(losses, rel=1e-6)
    assert res["Recall@20"] == pytest.approx(recall, abs=1e-9)
    assert res["MRR@20"] == pytest.approx(mrr, rel=1e-6)
    assert float(model.W["Wy"].detach().double().sum()) == pytest.approx(wy_sum, rel=1e-5)
