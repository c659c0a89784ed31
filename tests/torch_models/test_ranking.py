"""The PyTorch ranking adapter: the same ranks as the numpy metrics, on the CPU and on the device path."""
import numpy as np
import pytest
import torch

from course_lib import metrics
from course_lib.torch_models import ranking

SCORES = np.array([[3.0, 1.0, 3.0, 2.0], [3.0, 1.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0]])
TARGETS = np.array([0, 1, 2])
WANT = {"optimistic": [1, 4, 1], "pessimistic": [2, 4, 4], "average": [1.5, 4, 2.5]}


@pytest.mark.parametrize("ties", list(WANT))
def test_both_paths_give_the_hand_computed_ranks(ties):
    t = torch.tensor(SCORES, dtype=torch.float32)
    got = ranking.rank_of_targets(t, torch.tensor(TARGETS), ties)
    assert isinstance(got, np.ndarray) and got.tolist() == WANT[ties]
    # the torch-ops path a CUDA tensor takes, run here on the CPU
    assert ranking._rank_on_device(t, torch.tensor(TARGETS), ties).tolist() == WANT[ties]


def test_random_scores_match_the_numpy_metric():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(50, 300)).astype(np.float32)
    s[:, 7] = s[:, 3]  # a tie in every row
    tg = rng.integers(0, 300, 50)
    tg[:10] = 3
    for ties in WANT:
        want = metrics.rank_of_targets(s, tg, ties)
        assert np.array_equal(ranking._rank_on_device(torch.from_numpy(s), torch.from_numpy(tg), ties), want)


def test_errors_and_conversion():
    bad = torch.tensor(SCORES)
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ranking._rank_on_device(bad, torch.tensor(TARGETS), "average")
    with pytest.raises(ValueError, match=r"targets must be in \[0, 4\)"):
        ranking.rank_of_targets(torch.tensor(SCORES), [0, 9, 0])
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        ranking.rank_of_targets(torch.tensor(SCORES), [0, 1])
    x = torch.ones(2, 2, requires_grad=True)
    assert np.array_equal(ranking.to_numpy(x * 2), np.full((2, 2), 2.0, dtype=np.float32))
    # the numpy metrics refuse a tensor numpy cannot read, and say how to convert it
    with pytest.raises(ValueError, match="ranking.to_numpy"):
        metrics.rank_of_targets(x, np.array([0, 1]))
