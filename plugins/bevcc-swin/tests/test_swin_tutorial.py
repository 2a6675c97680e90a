"""docs/tutorial_third_party_plugin.md shows the plugin's real code: every excerpt headed by a
`# plugins/bevcc-swin/<file>` line appears verbatim in that file (`...` lines mark omissions)."""

import re
from pathlib import Path

PLUGIN = Path(__file__).resolve().parents[1]
TUTORIAL = PLUGIN.parents[1] / "docs" / "tutorial_third_party_plugin.md"
BLOCK = re.compile(r"```(?:python|toml)\n(.*?)```", re.DOTALL)
HEADER = "# plugins/bevcc-swin/"


def excerpts():
    for block in BLOCK.findall(TUTORIAL.read_text()):
        first, _, body = block.partition("\n")
        if first.startswith(HEADER):
            yield first.removeprefix(HEADER), body


def test_every_excerpt_is_in_the_file_it_names():
    found = list(excerpts())
    assert len(found) >= 8
    for relative, body in found:
        source = (PLUGIN / relative).read_text()
        chunks = re.split(r"(?m)^\s*\.\.\.\n", body)
        for chunk in chunks:
            assert chunk.strip() and chunk in source, f"{relative}: excerpt drifted:\n{chunk}"


def test_the_tutorial_names_the_pipeline_the_tests_run():
    from .test_swin_cli import PIPELINE

    assert PIPELINE in TUTORIAL.read_text()
