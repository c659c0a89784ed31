"""The time each notebook states in its first cell is the time the README and notebook 00 give it,
and the 90-minute plan quotes the same minutes."""
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
STATED = re.compile(r"\*\*Time:\*\*\s*(?:about\s+)?(\d+(?:-\d+)?) minutes")
ROW = re.compile(r"^\| `(\d\d_\w+)` \| [^|]+ \| (\d+(?:-\d+)?) minutes \|", re.M)


def stated_time(name: str) -> str:
    first = nbformat.read(ROOT / "solutions" / f"{name}.ipynb", as_version=4).cells[0].source
    match = STATED.search(first)
    assert match, f"{name}'s first cell states no '**Time:** N minutes'"
    return match.group(1)


def table_times(text: str) -> dict[str, str]:
    return dict(ROW.findall(text))


@pytest.mark.parametrize("where", ["README.md", "solutions/00_start_here.ipynb"])
def test_the_notebook_tables_give_each_notebook_its_stated_time(where):
    path = ROOT / where
    text = path.read_text() if path.suffix == ".md" else nbformat.read(path, as_version=4).cells[1].source
    times = table_times(text)
    assert {"00_start_here", "01_beginner_tfidf_word_vectors", "02_intermediate_paragraph_vectors"} <= set(times)
    for name, minutes in times.items():
        assert minutes == stated_time(name), f"{where} gives {name} {minutes} minutes, its first cell {stated_time(name)}"


def test_the_90_minute_plan_quotes_the_notebooks_own_minutes():
    readme = (ROOT / "README.md").read_text()
    plan = readme[readme.index("## For lecturers: a 90-minute hands-on session"):]
    plan = plan[:plan.index("\n## ", 1)]
    quoted = re.findall(r"`(\d\d_\w+)`[^`(]*\((\d+(?:-\d+)?) minutes", plan)
    assert len(quoted) >= 4, quoted
    for name, minutes in quoted:
        assert minutes == stated_time(name), f"the plan gives {name} {minutes} minutes, its first cell {stated_time(name)}"
    # the session's slots: 01 whole, then 02's first three exercises, whose minutes the notebook states
    assert "| 0-60 | level (a), the whole notebook (60 minutes)" in plan and stated_time(
        "01_beginner_tfidf_word_vectors") == "60"
    second = nbformat.read(ROOT / "solutions" / "02_intermediate_paragraph_vectors.ipynb", as_version=4)
    first_three = [int(m) for c in second.cells if c.cell_type == "markdown"
                   for m in re.findall(r"^## Exercise [123]: .*\((\d+) minutes\)", c.source, re.M)]
    assert sum(first_three) == 25 and "| 60-85 | level (b) up to its Exercise 3 (the exercises take 10 + 5 + 10" in plan
