"""The README's fault table says what the tests do: one row per fault test, and a count that is
the number of rows."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _fault_rows() -> list[tuple[str, str]]:
    section = README.split("## When things go wrong", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\|[^\n]*\| `(test_\w+\.py)::(test_\w+)` \|$", section, re.M)


def test_each_fault_row_names_a_test_that_exists_and_no_test_twice():
    rows = _fault_rows()
    assert len(rows) == len(set(rows))
    for module, name in rows:
        assert f"def {name}(" in (REPO / "tests" / "integration" / module).read_text(), name


def test_the_fault_counts_in_the_readme_are_the_number_of_rows():
    count = len(_fault_rows())
    assert f"{count} faults in all" in README
    assert f"| {count} of {count} " in README
