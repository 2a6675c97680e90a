"""docs/passes.md is generated from the registry; this fails when the two drift apart."""

from pathlib import Path

from bevcc.catalog import passes_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "passes.md"


def test_passes_doc_matches_the_registry(registry):
    assert DOC.read_text() == passes_markdown(registry), (
        "docs/passes.md is stale: BEVCC_DISABLE_PLUGIN_AUTOLOAD=1 bevcc passes --markdown > "
        "docs/passes.md")
