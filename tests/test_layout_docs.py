"""Unit: the docs' map of the package (how-it-works, contributing) matches the package."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Set

import pytest

import pytest_memray_isolate

PACKAGE = Path(pytest_memray_isolate.__file__).parent
DOCS = Path(__file__).parent.parent / "docs"


def _modules() -> Set[str]:
    """Every module of the package, by its path under the package ('_isolation/child.py')."""
    return {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py" and path.name != "_version.py"
    }


@pytest.mark.parametrize("page", ["how-it-works.rst", "contributing.rst"])
def test_every_module_a_page_names_exists(page: str) -> None:
    """A page naming a module that was renamed or removed fails here, not in a reader's hands."""
    text = (DOCS / page).read_text()
    paths = set(re.findall(r"(?<![\w/])(_[a-z_]+/[a-z_]+\.py)", text))
    names = set(re.findall(r"(?<![\w/])([a-z_]+\.py)\b", text)) - {
        "conftest.py",
        "__init__.py",
        "coverage.py",
    }
    modules = _modules()
    missing = sorted(path for path in paths if path not in modules)
    missing += sorted(name for name in names if not any(module.endswith(name) for module in modules))
    assert missing == []


def test_contributing_names_every_module() -> None:
    """The contributing page's map covers the whole package: a new module needs a line there
    (its folder and its file name)."""
    text = (DOCS / "contributing.rst").read_text()
    unnamed = []
    for module in sorted(_modules()):
        folder, _, name = module.rpartition("/")
        if f"``{name}``" not in text or (folder and f"``{folder}/``" not in text):
            unnamed.append(module)
    assert unnamed == []
