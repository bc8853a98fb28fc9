"""MkDocs hook: a `gradekit` package of symlinks under build/docs-src for mkdocstrings.

mkdocstrings reads the sources statically (griffe), which cannot follow setuptools' package-dir mapping
(graders/ -> gradekit.graders, ...); this mirrors that mapping, read from pyproject.toml, as symlinks.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "build" / "docs-src"


def link_packages() -> None:
    """Create build/docs-src/gradekit/<part> -> the folder pyproject.toml maps `gradekit.<part>` to."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["package-dir"]
    for package, folder in mapping.items():
        link, target = SOURCES.joinpath(*package.split(".")), (ROOT / folder).resolve()
        if link.exists() and link.resolve() == target:  # linked already, or inside its parent's link
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        try:
            link.symlink_to(target, target_is_directory=True)
        except FileExistsError:  # another build made it at the same moment
            if link.resolve() != target:
                raise


link_packages()
