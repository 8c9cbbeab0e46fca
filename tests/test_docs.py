"""README's generated blocks are what the code says today."""

from __future__ import annotations

from pathlib import Path

from app.realtime.contract import markdown_table as frames_table

README = Path(__file__).parent.parent / "README.md"


def generated_block(name: str, command: str) -> str:
    readme = README.read_text()
    start = readme.index(f"<!-- {name} table: {command} -->\n")
    end = readme.index(f"<!-- end of {name} table -->")
    return readme[start:end].split("\n", 1)[1]


def test_readme_lists_the_websocket_frames_as_the_structs_define_them() -> None:
    """Regenerate with `python -m app.realtime.contract` when this fails."""
    assert generated_block("frames", "python -m app.realtime.contract") == frames_table()
