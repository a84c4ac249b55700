"""Which fixture values travel to a child that does not share pytest's memory, and how.

A spawned or forkserver child imports the test's module afresh and sets the test up
again, but it must not run the project's fixtures a second time: the values the parent
made are sent with cloudpickle. Fixtures bound to the process that uses them (pytest's
own ``capsys``, ``monkeypatch``, ``request``..., and those of installed plugins, such as
event loops and mocks) are made again in the child instead.

This is the one module that reads a private pytest attribute (``Item._fixtureinfo``):
only it says where each of a test's fixtures is defined.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import cloudpickle
import pytest

__all__ = ["CannotSend", "made_in_child", "pack_values", "unpack_values"]

#: Fixtures pytest defines whose values are plain paths other fixtures may have filled.
_SENT_BUILTINS = frozenset({"tmp_path", "tmpdir"})
_INSTALLED_PARTS = frozenset({"site-packages", "dist-packages"})


class CannotSend(Exception):
    """A fixture value (or the set of them) that pickling refused."""

    def __init__(self, fixture: Optional[str], error: BaseException) -> None:
        super().__init__(fixture, error)
        self.fixture = fixture
        self.error = error


def _in_project(module_name: str, rootpath: Path) -> bool:
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


def made_in_child(item: pytest.Item, name: str) -> bool:
    """Whether fixture ``name`` of ``item`` is made again in the child rather than sent.

    Fixtures from the project (conftest.py files, test modules, its own plugins) are
    sent; pytest's and installed plugins' are made again, except ``tmp_path`` and
    ``tmpdir``, whose directories other fixtures may already have filled.
    """
    if name in _SENT_BUILTINS:
        return False
    definitions = getattr(item, "_fixtureinfo", None)
    fixturedefs = getattr(definitions, "name2fixturedefs", {}).get(name)
    if not fixturedefs:
        return True  # ``request``: not a fixture function at all
    module_name = getattr(fixturedefs[-1].func, "__module__", None) or ""
    if module_name == "_pytest" or module_name.startswith("_pytest."):
        return True
    return not _in_project(module_name, item.config.rootpath)


def pack_values(item: pytest.Item) -> bytes:
    """The values of ``item``'s fixtures that the child does not make, pickled together.

    Pickled as one object so that values sharing an object still share it in the child.
    Raises :class:`CannotSend` naming the first fixture whose value cannot be pickled.
    """
    funcargs: Dict[str, Any] = getattr(item, "funcargs", {})
    values = {name: value for name, value in funcargs.items() if not made_in_child(item, name)}
    try:
        return bytes(cloudpickle.dumps(values, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception as error:
        for name, value in values.items():
            try:
                cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as value_error:
                raise CannotSend(name, value_error) from value_error
        raise CannotSend(None, error) from error


def unpack_values(data: bytes) -> Dict[str, Any]:
    """The fixture values :func:`pack_values` sent."""
    values: Dict[str, Any] = pickle.loads(data)
    return values
