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
