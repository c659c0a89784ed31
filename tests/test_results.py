"""The shipped benchmark tables, read for the notebooks, and the error when one is missing."""
import pytest

from course_lib.results import ResultsMissing, load_results, results_file


def test_the_shipped_askgru_table_loads_with_rows_and_settings():
    table = load_results("askgru")
    models = [row["model"] for row in table["rows"]]
    assert {"Embed", "Embed-MTL", "GRU", "GRU-MTL"} <= set(models)
    assert table["settings"]["preset"] == "reduced"
    assert results_file("askgru_recall_at_m.png").stat().st_size > 0


def test_a_missing_table_names_the_file_and_the_command_that_makes_it(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RESULTS_DIR", str(tmp_path))
    with pytest.raises(ResultsMissing, match=r"askgru.json is not here: run `course bench askgru --preset reduced`"):
        load_results("askgru")
    with pytest.raises(ResultsMissing, match=r"askgru_recall_at_m.png is not here: run `course bench askgru"):
        results_file("askgru_recall_at_m.png")
    assert issubclass(ResultsMissing, FileNotFoundError)
    (tmp_path / "theano.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"theano.json is not a valid results table .*course bench theano"):
        load_results("theano")
    (tmp_path / "hybrid.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="was not written by `course bench hybrid`"):
        load_results("hybrid")
