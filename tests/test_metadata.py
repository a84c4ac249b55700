"""The package's metadata says what is true: the floors that `tox -e lowest` tests are the
ones it declares, its version comes from one file, its licence is the one it ships, and it
claims the Pythons that tox runs.

The declared metadata is read from the installed distribution (built from pyproject.toml),
so these checks need nothing that Python 3.9 lacks."""

from __future__ import annotations

import configparser
import re
import runpy
import sys
from importlib import metadata
from pathlib import Path
from typing import Dict, List

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import pytest_memray_isolate

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "pytest-memray-isolate"
CONSTRAINTS = ROOT / "tests" / "constraints-lowest.txt"


def _declared(extra: str = "") -> List[Requirement]:
    """The distribution's requirements: its own (``extra=""``) or one extra's alone."""
    requirements = [Requirement(line) for line in metadata.requires(DISTRIBUTION) or []]
    if not extra:
        return [r for r in requirements if r.marker is None]
    return [r for r in requirements if r.marker is not None and r.marker.evaluate({"extra": extra})]


def _floor(requirement: Requirement) -> Version:
    """The version a ``name>=floor`` requirement starts at; any other form is an error here."""
    floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    assert len(floors) == 1, f"{requirement} needs exactly one '>=' floor for tox -e lowest"
    return floors[0]


def _pinned() -> Dict[str, Version]:
    """tests/constraints-lowest.txt: each ``name==version`` line."""
    pins: Dict[str, Version] = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{CONSTRAINTS.name}: {line!r} is not name==version"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_lowest_constraints_pin_exactly_the_declared_floors() -> None:
    """The file `tox -e lowest` installs from pins each runtime and test dependency at its
    declared floor, and nothing else, so the floors pyproject.toml states are the ones tested."""
    declared = _declared() + _declared("test")
    floors = {canonicalize_name(r.name): _floor(r) for r in declared}
    assert "memray" in floors
    assert "pytest-xdist" in floors
    assert _pinned() == floors


def test_the_version_has_one_source() -> None:
    """The version is written once, in _version.py; the built metadata, the package and the
    documentation's configuration all read it from there."""
    text = (ROOT / "src" / "pytest_memray_isolate" / "_version.py").read_text(encoding="utf-8")
    written = re.fullmatch(r'__version__ = "([^"]+)"\n', text)
    assert written, text
    assert metadata.version(DISTRIBUTION) == written.group(1)
    assert pytest_memray_isolate.__version__ == written.group(1)
    saved_path = list(sys.path)
    try:
        conf = runpy.run_path(str(ROOT / "docs" / "conf.py"))
    finally:
        sys.path[:] = saved_path
    assert conf["release"] == conf["version"] == written.group(1)


def test_the_declared_licence_is_the_apache_licence_shipped() -> None:
    """pyproject.toml declares Apache-2.0 and LICENSE holds that licence's full text."""
    package = metadata.metadata(DISTRIBUTION)
    assert package["License-Expression"] == "Apache-2.0"
    assert package.get_all("License-File") == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    for clause in (
        "1. Definitions.",
        "9. Accepting Warranty or Additional Liability.",
        "END OF TERMS AND CONDITIONS",
    ):
        assert clause in text


def test_the_python_classifiers_are_the_pythons_tox_runs() -> None:
    """A "Programming Language :: Python :: 3.X" classifier for each pyXY environment of
    tox.ini, and no other: a Python is claimed only where the suite runs on it."""
    classifiers = metadata.metadata(DISTRIBUTION).get_all("Classifier") or []
    pattern = r".*:: Python :: 3\.\d+"
    claimed = sorted((c.rsplit(" :: ", 1)[1] for c in classifiers if re.fullmatch(pattern, c)), key=Version)
    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini", encoding="utf-8")
    environments = [name.strip() for name in tox["tox"]["envlist"].split(",")]
    tested = sorted(
        (f"3.{m.group(1)}" for m in map(re.compile(r"py3(\d+)").fullmatch, environments) if m), key=Version
    )
    assert claimed == tested
    assert claimed[0] == metadata.metadata(DISTRIBUTION)["Requires-Python"].lstrip(">=")
