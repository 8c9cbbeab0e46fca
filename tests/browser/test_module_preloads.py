"""Each page lists every ES module its entry script imports, however deep, as a
<link rel="modulepreload">, so the browser fetches them all at once instead of one level of
imports per round trip (the seat map alone is a dozen small modules, four imports deep).

Read from the files, no browser needed: a new import without its preload fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "static"
PAGES = sorted(STATIC.glob("*.html"))
# static imports and re-exports: `import {a} from "./x.js"`, `export {b} from "../y.js"`
IMPORT = re.compile(r'^(?:import|export)\b[^;"]*?\bfrom\s+"(\.\.?/[^"]+)"', re.M)
ENTRY = re.compile(r'<script type="module" src="/static/(js/[^"]+)"></script>')
PRELOAD = re.compile(r'<link rel="modulepreload" href="/static/(js/[^"]+)">')


def imported_by(entry: Path) -> set[Path]:
    """Every module `entry` imports, directly or through others."""
    found: set[Path] = set()
    todo = [entry]
    while todo:
        module = todo.pop()
        for spec in IMPORT.findall(module.read_text()):
            target = (module.parent / spec).resolve()
            if target not in found:
                found.add(target)
                todo.append(target)
    found.discard(entry)
    return found


def test_the_import_reader_sees_imports_and_re_exports() -> None:
    seatmap = imported_by(STATIC / "js" / "seatmap.js")
    assert STATIC / "js" / "seatmap" / "keyboard.js" in seatmap  # three imports deep
    assert STATIC / "js" / "seatmap" / "legend.js" in seatmap  # re-exported only


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_a_page_preloads_every_module_its_script_imports(page: Path) -> None:
    html = page.read_text()
    entries = ENTRY.findall(html)
    assert len(entries) == 1, entries
    wanted = {p.relative_to(STATIC).as_posix() for p in imported_by(STATIC / entries[0])}
    preloaded = PRELOAD.findall(html)
    assert len(preloaded) == len(set(preloaded)), preloaded
    assert set(preloaded) == wanted
