"""The documentation a newcomer reads: a short README whose links and anchors all resolve, the
pages under docs/ likewise, and the fault table of docs/operations.md that says what the tests
do (one row per fault test, and a count that is the number of rows)."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
OPERATIONS = (REPO / "docs" / "operations.md").read_text()
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """The anchors GitHub makes of PAGE's headings."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", page.read_text(), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_the_readme_is_short_enough_to_read():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 150
    assert [line for line in lines if len(line) > 100] == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s) and the like: not ours to check here
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target} names no file"
        if anchor:
            assert anchor in anchors(linked), f"{page.name}: {target} names no heading"


def test_the_readmes_test_command_is_what_ci_runs():
    assert "make test" in (REPO / "README.md").read_text()
    assert "make test" in (REPO / ".ci" / "run").read_text()


def _fault_rows() -> list[tuple[str, str]]:
    section = OPERATIONS.split("## When things go wrong", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\|[^\n]*\| `(test_\w+\.py)::(test_\w+)` \|$", section, re.M)


def test_each_fault_row_names_a_test_that_exists_and_no_test_twice():
    rows = _fault_rows()
    assert len(rows) == len(set(rows))
    for module, name in rows:
        assert f"def {name}(" in (REPO / "tests" / "integration" / module).read_text(), name


def test_the_fault_counts_are_the_number_of_rows():
    count = len(_fault_rows())
    assert f"{count} faults in all" in OPERATIONS
    benchmarks = (REPO / "docs" / "benchmarks.md").read_text()
    [survived] = [line for line in benchmarks.splitlines() if line.startswith("| faults of")]
    assert f"| {count} of {count} " in survived
