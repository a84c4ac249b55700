"""The project's xunit and unittest setup, done once in pytest's process, for remote children.

pytest runs ``setup_module``, ``setup_class``, ``setup_function``, ``setup_method`` and
unittest's ``setUpClass`` through autouse fixtures of its own, which wrap the project's
functions. A forkserver or spawn child must not run them again (they would run once per
test and never be torn down there): like any project fixture, they run in pytest's
process, and what the child needs of them travels with the fixture values. What they
leave is not a value but names they set on the test's module, class or instance; those
are recorded here, around each such fixture, and set again in the child.

This module imports nothing heavy: the recording runs in pytest's process for every run.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Generator, Optional
from weakref import WeakKeyDictionary

import pytest

__all__ = ["SetupEffects", "in_project", "recording", "setup_effects", "wrapped_setup"]

_INSTALLED_PARTS = frozenset({"site-packages", "dist-packages"})
#: What each wrapped setup fixture set, by its definition, as last recorded.
_recorded: WeakKeyDictionary[Any, SetupEffects] = WeakKeyDictionary()


def in_project(module_name: str, rootpath: Path) -> bool:
    """Whether a module is the project's own code (under the rootdir, not installed)."""
    filename = getattr(sys.modules.get(module_name), "__file__", None)
    if not filename:
        return False
    path = Path(filename).resolve()
    try:
        path.relative_to(rootpath.resolve())
    except ValueError:
        return False
    return not _INSTALLED_PARTS.intersection(path.parts)


def _is_pytests(module_name: str) -> bool:
    return module_name == "_pytest" or module_name.startswith("_pytest.")


def wrapped_setup(fixturedef: Any, rootpath: Path) -> Optional[str]:
    """The name of the project's function a fixture of pytest's wraps (``setup_module``,
    ``TestThing.setUpClass``...), or ``None`` for any other fixture.

    pytest writes such a fixture as a closure over the module's or class's own setup and
    teardown functions: that is what tells it from pytest's fixtures of its own.
    """
    func = getattr(fixturedef, "func", None)
    if not _is_pytests(getattr(func, "__module__", None) or ""):
        return None
    found: Optional[str] = None
    for cell in getattr(func, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # a cell not filled yet
            continue
        target = getattr(value, "__func__", value)  # a bound method: setUpClass
        module_name = getattr(target, "__module__", None) or ""
        if not callable(target) or not in_project(module_name, rootpath):
            continue
        if not isinstance(target, type):
            return str(getattr(target, "__qualname__", fixturedef.argname))
        found = found or fixturedef.argname  # only the class itself (unittest's skip)
    return found


@dataclass
class SetupEffects:
    """The names a wrapped setup set or replaced on the test's module, class and instance."""

    what: str
    module: Dict[str, Any] = field(default_factory=dict)
    cls: Dict[str, Any] = field(default_factory=dict)
    instance: Dict[str, Any] = field(default_factory=dict)

    def items(self) -> Dict[str, Any]:
        """Every name with its value, for messages: ``'RESOURCE', set by setup_module``."""
        return {
            f"{name!r}, set by {self.what},": value
            for names in (self.module, self.cls, self.instance)
            for name, value in names.items()
        }

    def apply(self, request: pytest.FixtureRequest) -> None:
        """Set the names again on the child's own module, class and instance."""
        targets = [(self.module, "module"), (self.cls, "cls"), (self.instance, "instance")]
        for names, which in targets:
            target = _scope_object(request, which) if names else None
            if target is not None:
                for name, value in names.items():
                    setattr(target, name, value)


def _scope_object(request: pytest.FixtureRequest, which: str) -> Any:
    """The request's module, class or instance, or ``None`` where its scope has none."""
    with contextlib.suppress(AttributeError):
        return getattr(request, which)
    return None


def _namespace(target: Any) -> Dict[str, Any]:
    return dict(vars(target)) if target is not None else {}


def _changed(before: Dict[str, Any], target: Any) -> Dict[str, Any]:
    missing = object()
    return {
        name: value for name, value in _namespace(target).items() if before.get(name, missing) is not value
    }


@contextlib.contextmanager
def recording(fixturedef: Any, request: pytest.FixtureRequest, what: str) -> Generator[None, None, None]:
    """Record what the wrapped setup ``fixturedef`` sets on the module, class and instance."""
    targets = [_scope_object(request, which) for which in ("module", "cls", "instance")]
    before = [_namespace(target) for target in targets]
    yield
    module, cls, instance = (_changed(old, target) for old, target in zip(before, targets))
    _recorded[fixturedef] = SetupEffects(what, module, cls, instance)


def setup_effects(fixturedef: Any) -> Optional[SetupEffects]:
    """What the wrapped setup ``fixturedef`` set when it last ran in this process."""
    return _recorded.get(fixturedef)
