"""The HTML pages, each served with a <link rel="modulepreload"> for every ES module its
entry script imports, however deep: the browser fetches them all at once instead of one
level of imports per round trip (the seat map is a dozen small modules, four imports deep).
The list is read from the modules' own import lines when the server starts, so it cannot
go stale and no page keeps a copy of it."""

from __future__ import annotations

import re
from pathlib import Path

# static imports and re-exports: `import {a} from "./x.js"`, `export {b} from "../y.js"`
IMPORT = re.compile(r'^(?:import|export)\b[^;"]*?\bfrom\s+"(\.\.?/[^"]+)"', re.M)
ENTRY = re.compile(r'<script type="module" src="/static/(js/[^"]+)"></script>\n')


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
    found.discard(entry.resolve())
    return found


def with_preloads(html: str, static: Path) -> str:
    """The page with a modulepreload link for each module its one entry script imports."""
    entries = list(ENTRY.finditer(html))
    if len(entries) != 1:
        raise ValueError(f"a page has one entry module, found {len(entries)}")
    entry = entries[0]
    static = static.resolve()
    modules = sorted(p.relative_to(static).as_posix() for p in imported_by(static / entry[1]))
    links = "".join(f'  <link rel="modulepreload" href="/static/{m}">\n' for m in modules)
    return html[: entry.end()] + links + html[entry.end() :]
