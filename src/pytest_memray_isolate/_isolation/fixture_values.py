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
from typing import Any, Dict, Optional

import cloudpickle
import pytest

from .setup_effects import SetupEffects, in_project, setup_effects, wrapped_setup

__all__ = ["CannotSend", "made_in_child", "pack_values", "unpack_values"]

#: Fixtures pytest defines whose values are plain paths other fixtures may have filled.
_SENT_BUILTINS = frozenset({"tmp_path", "tmpdir"})


class CannotSend(Exception):
    """A fixture value (or the set of them) that pickling refused; ``what`` names it."""

    def __init__(self, what: Optional[str], error: BaseException) -> None:
        super().__init__(what, error)
        self.what = what
        self.error = error


def _definition(item: pytest.Item, name: str) -> Any:
    """The definition of ``item``'s fixture ``name`` that the test uses, or ``None``."""
    definitions = getattr(item, "_fixtureinfo", None)
    fixturedefs = getattr(definitions, "name2fixturedefs", {}).get(name)
    return fixturedefs[-1] if fixturedefs else None  # none for ``request``


def made_in_child(item: pytest.Item, name: str) -> bool:
    """Whether fixture ``name`` of ``item`` is made again in the child rather than sent.

    Fixtures from the project (conftest.py files, test modules, its own plugins) are
    sent, and so are pytest's wrappers around the project's xunit and unittest setup
    (see setup_effects.py); pytest's other fixtures and installed plugins' are made
    again, except ``tmp_path`` and ``tmpdir``, whose directories other fixtures may
    already have filled.
    """
    if name in _SENT_BUILTINS:
        return False
    fixturedef = _definition(item, name)
    if fixturedef is None:
        return True
    module_name = getattr(fixturedef.func, "__module__", None) or ""
    if module_name == "_pytest" or module_name.startswith("_pytest."):
        return wrapped_setup(fixturedef, item.config.rootpath) is None
    return not in_project(module_name, item.config.rootpath)


def _sent_value(item: pytest.Item, name: str, value: Any) -> Any:
    """What travels for fixture ``name``: its value, or for a wrapped setup what it set."""
    fixturedef = _definition(item, name)
    what = None if fixturedef is None else wrapped_setup(fixturedef, item.config.rootpath)
    if what is None:
        return value
    return setup_effects(fixturedef) or SetupEffects(what)


def _named_values(values: Dict[str, Any]) -> Dict[str, Any]:
    """Each value sent, by how a message names it: a fixture, or a name a setup set."""
    named: Dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, SetupEffects):
            named.update(value.items())
        else:
            named[f"fixture {name!r}"] = value
    return named


def pack_values(item: pytest.Item) -> bytes:
    """The values of ``item``'s fixtures that the child does not make, pickled together.

    Pickled as one object so that values sharing an object still share it in the child.
    Raises :class:`CannotSend` naming the first fixture (or name a setup set) whose value
    cannot be pickled.
    """
    funcargs: Dict[str, Any] = getattr(item, "funcargs", {})
    values = {
        name: _sent_value(item, name, value)
        for name, value in funcargs.items()
        if not made_in_child(item, name)
    }
    try:
        return bytes(cloudpickle.dumps(values, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception as error:
        for what, value in _named_values(values).items():
            try:
                cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as value_error:
                raise CannotSend(what, value_error) from value_error
        raise CannotSend(None, error) from error


def unpack_values(data: bytes) -> Dict[str, Any]:
    """The fixture values :func:`pack_values` sent."""
    values: Dict[str, Any] = pickle.loads(data)
    return values
