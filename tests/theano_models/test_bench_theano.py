"""``course bench theano``: its options and one measured row (tiny tier, one model)."""
import argparse

import pytest

from course_lib.benchmarks import theano as bench


def test_quick_fills_in_only_the_options_not_given():
    quick = bench.parse_args(["--quick"])
    assert (quick.tier, quick.dim, quick.repeats, quick.steps, quick.compile_repeats) == ("tiny", 32, 2, 3, 1)
    assert quick.names == list(bench.CASES)
    mine = bench.parse_args(["--quick", "--repeats", "4", "--models", "askgru,gru4rec-xe", "--max-events", "0"])
    assert (mine.repeats, mine.steps, mine.names, mine.max_events) == (4, 3, ["askgru", "gru4rec-xe"], None)


def test_an_unknown_model_is_refused_with_the_choices(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--models", "hybrid-a,hybrid-x"])
    assert "argument --models: unknown 'hybrid-x'; choose from hybrid-a, hybrid-c" in capsys.readouterr().err


def test_a_row_holds_both_tracks_the_ratio_and_a_cold_compile_from_an_empty_cache():
    args = argparse.Namespace(tier="tiny", dim=8, seed=0, max_events=None, compile_repeats=1, repeats=3, steps=1,
                              warmup=0)
    row = bench.measure("hybrid-a", args)
    assert row["model"] == bench.LABELS["hybrid-a"]
    assert len(row["theano_step_ms_all"]) == len(row["torch_step_ms_all"]) == 3
    assert row["theano_step_ms_min"] == min(row["theano_step_ms_all"]) > 0
    assert row["torch_step_ms_median"] == sorted(row["torch_step_ms_all"])[1]
    assert row["ratio_min"] == pytest.approx(row["theano_step_ms_min"] / row["torch_step_ms_min"])
    assert row["ratio_median"] == pytest.approx(row["theano_step_ms_median"] / row["torch_step_ms_median"])
    # a fresh process with an empty cache: gcc builds the graph's modules, its CPU time is counted
    assert row["c_modules_built"] > 0 and row["cold_compile_cpu_s_min"] > 0.1
    assert row["cold_compile_s_min"] == row["cold_compile_s_median"] > 0.1
    assert len(row["load_compile"]) == 1 and len(row["load_steps"]) == 2
