"""Where the non-Python parts of the project live (repo checkout or container WORKDIR)."""

from __future__ import annotations

from pathlib import Path


def project_dir(name: str) -> Path:
    """`sql/` or `static/`: beside the package in a checkout, else in the working directory."""
    for base in (Path(__file__).resolve().parents[1], Path.cwd()):
        candidate = base / name
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"cannot find the {name}/ folder beside app/ or in {Path.cwd()}")
