"""GRU4Rec's filtering of session clicks (Hidasi et al. 2016, section 4), on hand examples."""
import numpy as np
import pandas as pd
import pytest

from course_lib.clicks import check_clicks, preprocess_clicks


def clicks(rows):
    return pd.DataFrame(rows, columns=["SessionId", "ItemId", "Time"])


def test_preprocess_clicks_in_the_papers_order():
    # session 4 has one click: dropped in step 1 (item 7 keeps 5 events); item 9 has 4 events (< 5):
    # dropped in step 2, which leaves sessions 1, 3 and 5 with one click each: dropped in step 3
    rows = [(1, 7, 0), (1, 9, 1), (2, 7, 2), (2, 7, 3), (2, 9, 4), (3, 7, 5), (3, 9, 6),
            (5, 9, 7), (5, 7, 8), (4, 7, 9)]
    out, counts = preprocess_clicks(clicks(rows), min_session_len=2, min_item_support=5)
    assert out["SessionId"].tolist() == [2, 2]
    assert out["ItemId"].tolist() == [7, 7]
    assert counts["input"] == {"events": 10, "sessions": 5, "items": 2}
    assert counts["after dropping short sessions"] == {"events": 9, "sessions": 4, "items": 2}
    assert counts["after dropping rare items"] == {"events": 5, "sessions": 4, "items": 1}
    assert counts["output"] == {"events": 2, "sessions": 1, "items": 1}
    assert list(out.dtypes) == [np.int64, np.int64, np.float64]


def test_check_clicks_sorts_converts_and_names_what_is_wrong():
    df = clicks([(2, 5, 3.0), (1, 4, 2.0), (1, 3, 1.0)])
    out = check_clicks(df)
    assert out["SessionId"].tolist() == [1, 1, 2] and out["Time"].tolist() == [1.0, 2.0, 3.0]
    with_dates = df.assign(Time=pd.to_datetime(df["Time"], unit="s"))
    assert check_clicks(with_dates)["Time"].tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="lacks columns"):
        check_clicks(df.rename(columns={"ItemId": "item"}))
    with pytest.raises(ValueError, match="no events"):
        preprocess_clicks(df.iloc[:0])
    with pytest.raises(ValueError, match="must be a pandas DataFrame"):
        check_clicks([(1, 2, 3.0)])
    with pytest.raises(ValueError, match=r"Time'\] must be Unix seconds"):
        check_clicks(df.assign(Time=["a", "b", "c"]))
