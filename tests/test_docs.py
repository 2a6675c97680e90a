"""docs/passes.md is generated from the registry; this fails when the two drift apart. And the
project's docs and docstrings say things in their own words: no link leads outside the repo."""

import re
from pathlib import Path

from bevcc.catalog import passes_markdown

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "passes.md"


def test_passes_doc_matches_the_registry(registry):
    assert DOC.read_text() == passes_markdown(registry), (
        "docs/passes.md is stale: BEVCC_DISABLE_PLUGIN_AUTOLOAD=1 bevcc passes --markdown > "
        "docs/passes.md"
    )


def _cells(row: str) -> list[str]:
    """The cells of a Markdown table row; `\\|` is a `|` inside a cell."""
    return re.split(r"(?<!\\)\|", row.strip())[1:-1]


def test_every_table_row_of_the_passes_doc_has_its_headers_cells():
    widths, rows = [], 0
    for line in DOC.read_text().splitlines():
        if not line.startswith("|"):
            widths = []
            continue
        if not widths:
            widths = [len(_cells(line))]
            continue
        rows += 1
        assert len(_cells(line)) == widths[0], line
    assert rows > 40  # the option rows and the named pipelines were all seen
    assert len(_cells(r"| `mode` | both\|alone_float | `both` | x |")) == 4


def _texts():
    """Every document and source file of the project, its plugins included."""
    for pattern in (
        "*.md",
        "docs/*.md",
        "plugins/*/*.md",
        "bevcc/**/*.py",
        "plugins/**/*.py",
        "benchmarks/*.py",
        "benchmarks/*.md",
        "examples/**/*",
    ):
        for path in sorted(ROOT.glob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts:
                yield path, path.read_text(errors="replace")


def test_no_reference_leads_outside_the_repo():
    outside = re.compile(r"(\.\./)+(shared|specs)/|\bshared/specs/")
    hits = [
        f"{path.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}: {m.group(0)}"
        for path, text in _texts()
        for m in outside.finditer(text)
    ]
    assert hits == []


def test_relative_links_in_docs_name_files_of_the_repo():
    link = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")
    broken = []
    for path, text in _texts():
        if path.suffix != ".md":
            continue
        for m in link.finditer(text):
            target = m.group(1)
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            resolved = (path.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert broken == []
