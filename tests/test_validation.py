"""The shared argument checks: each accepts what is allowed and names the argument, the value and the
allowed range otherwise."""
import warnings

import numpy as np
import pytest

from course_lib import validation as v


def test_check_int_accepts_integers_and_integral_floats():
    assert v.check_int("n_epochs", 3) == 3
    assert v.check_int("n_epochs", np.int64(4)) == 4
    assert v.check_int("n_epochs", 5.0) == 5
    assert v.check_int("n_sample", 0, minimum=0) == 0


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10", True, None])
def test_check_int_refuses_with_the_name_value_and_range(bad):
    with pytest.raises(ValueError, match=r"n_epochs must be an integer >= 1, got"):
        v.check_int("n_epochs", bad)


def test_check_int_upper_bound_is_in_the_message():
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 10\], got 11"):
        v.check_int("k", 11, 1, 10)


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), float("inf"), "0.1", None])
def test_check_positive(bad):
    assert v.check_positive("learning_rate", 0.05) == 0.05
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0"):
        v.check_positive("learning_rate", bad)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "0.75", None, True])
def test_check_real_refuses_what_is_not_a_finite_number(bad):
    with pytest.raises(ValueError, match=r"ns_exponent must be a finite number, got"):
        v.check_real("ns_exponent", bad)
    assert v.check_real("ns_exponent", -0.5) == -0.5 and isinstance(v.check_real("x", 1), float)


def test_check_nonnegative_and_fraction():
    assert v.check_nonnegative("bpreg", 0) == 0.0
    with pytest.raises(ValueError, match="bpreg must be a finite number >= 0, got -1"):
        v.check_nonnegative("bpreg", -1)
    assert v.check_fraction("dropout", 0.0) == 0.0
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\), got 1"):
        v.check_fraction("dropout", 1)
    assert v.check_fraction("frac", 1.0, upper_inclusive=True) == 1.0


def test_check_choice_lists_the_choices():
    with pytest.raises(ValueError, match="loss must be one of 'wmse', 'bpr'; got 'mse'"):
        v.check_choice("loss", "mse", ("wmse", "bpr"))


def test_clamp_count_warns_once_and_clamps():
    with pytest.warns(UserWarning, match="n_sample=5000 is more than the 300 items; using n_sample=300"):
        assert v.clamp_count("n_sample", 5000, 300, "items") == 300
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same clamp again says nothing
        assert v.clamp_count("n_sample", 5000, 300, "items") == 300
        assert v.clamp_count("n_sample", 200, 300, "items") == 200


def test_check_shape():
    v.check_shape("scores", (32, 7), (32, None), "(batch, n_items)")
    with pytest.raises(ValueError, match=r"scores must have shape \(batch, n_items\) = \(32, any\), got \(32,\)"):
        v.check_shape("scores", (32,), (32, None), "(batch, n_items)")


def test_same_id_kind():
    v.check_same_id_kind(np.array([1, 2]), np.array([3]))
    v.check_same_id_kind(np.array(["a"]), np.array(["b"], dtype=object))
    with pytest.raises(ValueError, match="training ids are numbers but the test ids are strings"):
        v.check_same_id_kind(np.array([1, 2]), np.array(["1"], dtype=object))


def test_check_finite():
    assert v.check_finite(1.5, where="step 3", cause="x") == 1.5
    with pytest.raises(v.TrainingDiverged, match="the loss became nan at epoch 1, step 7: lower the learning rate"):
        v.check_finite(float("nan"), where="epoch 1, step 7", cause="lower the learning rate")


def test_check_memory_refuses_more_than_available():
    free = v.available_memory()
    assert free is not None and free > 0
    v.check_memory(1024, "a tiny array", "nothing")
    with pytest.raises(v.AllocationTooLarge, match=r"the score matrix would need .* GB but only .* of memory is available: lower n_sample"):
        v.check_memory(10 * free, "the score matrix", "lower n_sample")
