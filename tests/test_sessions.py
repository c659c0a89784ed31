"""The numpy-only half of GRU4Rec shared by both tracks: argument checks with clear messages."""
import numpy as np
import pytest

from course_lib.sessions import check_slot_items, parse_final_act


def test_final_act_names_parse_to_kind_and_parameter():
    assert parse_final_act("softmax") == ("linear", None) and parse_final_act("tanh") == ("tanh", None)
    assert parse_final_act("elu-0.5") == ("elu", 0.5) and parse_final_act("elu") == ("elu", 1.0)
    assert parse_final_act("leaky") == ("leaky", 0.01) and parse_final_act("leaky-0.2") == ("leaky", 0.2)
    with pytest.raises(ValueError, match="after 'leaky-' must be a number"):
        parse_final_act("leaky-steep")
    with pytest.raises(ValueError, match="got 'sigmoid'"):
        parse_final_act("sigmoid")


def test_slot_items_are_checked_before_scoring():
    hidden, items = [np.zeros((3, 4))], np.array([10, 20, 30, 40])
    assert check_slot_items([0, 3, 1], hidden, items).tolist() == [0, 3, 1]
    with pytest.raises(ValueError, match=r"call model.reset\(n_slots\) before score_next"):
        check_slot_items([0, 1, 2], None, items)
    with pytest.raises(ValueError, match=r"must have shape \(3,\) \(one item per slot\), got \(2,\)"):
        check_slot_items([0, 1], hidden, items)
    with pytest.raises(ValueError, match=r"column indices in \[0, 4\); map raw ids"):
        check_slot_items([0, 1, 40], hidden, items)


# ------------------------------------------------------------------ every argument checked before any work (issue 12)
import pandas as pd  # noqa: E402

from course_lib.sessions import gru4rec_params, training_data  # noqa: E402


@pytest.mark.parametrize("kw, match", [
    (dict(learning_rate=-0.1), r"learning_rate must be a finite number > 0, got -0.1"),
    (dict(learning_rate=0), r"learning_rate must be a finite number > 0, got 0"),
    (dict(n_epochs=0), r"n_epochs must be an integer >= 1, got 0"),
    (dict(batch_size=-4), r"batch_size must be an integer >= 1, got -4"),
    (dict(layers=[100, 0]), r"layers\[1\] must be an integer >= 1, got 0"),
    (dict(layers="100"), r"layers must be a list of hidden sizes such as \[100\], got '100'"),
    (dict(n_sample=-1), r"n_sample must be an integer >= 0, got -1"),
    (dict(sample_alpha=-0.5), r"sample_alpha must be a finite number >= 0, got -0.5"),
    (dict(momentum=1.5), r"momentum must be a number in \[0, 1\), got 1.5"),
    (dict(dropout_p_hidden=1.0), r"dropout_p_hidden must be a number in \[0, 1\), got 1.0"),
    (dict(embedding=-8), r"embedding must be an integer >= 0, got -8"),
    (dict(loss="hinge"), r"loss must be one of 'cross-entropy', .*; got 'hinge'"),
    (dict(optimizer="sgd"), r"optimizer must be one of 'adagrad', 'adam'; got 'sgd'"),
    (dict(seed=-1), r"seed must be an integer >= 0, got -1"),
    (dict(logq=float("nan")), r"logq must be a finite number >= 0, got nan"),
])
def test_bad_gru4rec_arguments_are_refused_with_their_name(kw, match):
    with pytest.raises(ValueError, match=match):
        gru4rec_params(**kw)


def test_layersize_embedding_is_the_first_layer():
    assert gru4rec_params(layers=[64, 32], embedding="layersize")["embedding"] == 64


def _sessions(n_items=5, n_sessions=20):
    rows = [(s, (s + k) % n_items, float(10 * s + k)) for s in range(n_sessions) for k in range(3)]
    return pd.DataFrame(rows, columns=["SessionId", "ItemId", "Time"])


def test_n_sample_is_clamped_to_the_catalogue_with_one_warning():
    import warnings

    with pytest.warns(UserWarning, match="n_sample=2048 is more than the 5 items in the training data; using n_sample=5"):
        data = training_data(_sessions(), 2048, 0.75, 32, 100, 10_000_000)
    assert data.n_sample == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same clamp again: no second warning
        assert training_data(_sessions(), 2048, 0.75, 32, 100, 10_000_000).n_sample == 5


def test_too_large_training_matrices_fail_fast_with_the_number(monkeypatch):
    from course_lib import validation
    from course_lib.validation import AllocationTooLarge

    monkeypatch.setattr(validation, "available_memory", lambda: 10_000_000)  # 10 MB free
    with pytest.raises(AllocationTooLarge, match=r"a training step's \(4096, 4101\) score matrices would need "
                                                 r"0.5 GB but only 10.0 MB .*lower batch_size or n_sample"):
        training_data(_sessions(), 5, 0.75, 4096, 100, 1000)
