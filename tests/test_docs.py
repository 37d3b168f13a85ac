"""The documents people read: their tables are well formed."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ["README.md", "benchmarks/RESULTS.md", "training/README.md"]


def markdown_tables(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of every pipe table in ``text``."""
    tables, current, start = [], [], 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("|"):
            if not current:
                start = number
            current.append(line)
        elif current:
            tables.append((start, current))
            current = []
    if current:
        tables.append((start, current))
    return tables


def cells(row: str) -> int:
    # A pipe inside backticks or escaped is not a column separator.
    inside_code, count = False, 0
    for i, ch in enumerate(row.strip()):
        if ch == "`":
            inside_code = not inside_code
        elif ch == "|" and not inside_code and (i == 0 or row.strip()[i - 1] != "\\"):
            count += 1
    return count - 1


@pytest.mark.parametrize("document", [d for d in DOCUMENTS if (ROOT / d).exists()])
def test_every_table_row_has_its_header_columns(document):
    tables = markdown_tables((ROOT / document).read_text())
    assert tables, f"{document} has no table"
    for start, lines in tables:
        width = cells(lines[0])
        for offset, line in enumerate(lines):
            assert cells(line) == width, f"{document}:{start + offset}: {cells(line)} columns, the header has {width}: {line[:80]}"


def test_table_check_catches_a_misplaced_row():
    text = "| a | b |\n|---|---|\n| 1 | 2 |\n| 1 | 2 | 3 |\n"
    (start, lines), = markdown_tables(text)
    assert [cells(line) for line in lines] == [2, 2, 2, 3]


@pytest.mark.parametrize("page", ["docs/operators.md", "docs/denoisers.md", "docs/robust.md", "docs/restore.md"])
def test_user_guide_tables_are_well_formed(page):
    test_every_table_row_has_its_header_columns(page)


def test_readme_is_a_front_page_with_the_two_quickstart_commands():
    import re

    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    bash = re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)
    assert bash == ['pip install . && pnp-stable demo -o deblur_demo.png --overwrite', 'pip install ".[test]" && python -m pytest']
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install ".[test]" && python -m pytest' in ci and "pnp-stable demo -o deblur_demo.png --overwrite" in ci


@pytest.mark.parametrize("document", ["README.md", "docs/operators.md", "docs/denoisers.md", "docs/solvers.md", "docs/robust.md"])
def test_relative_links_point_to_files(document):
    import re

    page = ROOT / document
    for target in re.findall(r"\]\(([^)#]+)\)", page.read_text()):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{document} links to a missing file: {target}"
