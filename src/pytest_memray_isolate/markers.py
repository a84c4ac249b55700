"""Memray markers: their signatures, and validation at collection into a TrackingPlan."""

# No ``from __future__ import annotations`` here: the marker signatures below are shown
# to users (pytest --markers, error messages) and must print as ``limit: str``.

import inspect
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import pytest

from .settings import ISOLATION_MODES, Settings
from .sizes import SIZE_HINT, parse_size

__all__ = [
    "IN_PROCESS",
    "MARKER_SIGNATURES",
    "MemoryLimit",
    "TrackingPlan",
    "marker_help_lines",
    "plan_for",
]

IN_PROCESS = "in-process"


def limit_memory(limit: str, *, current_thread_only: bool = False) -> None:
    """Fail the test when its call phase allocates ``limit`` or more at its high watermark."""


def memray_isolate(mode: str = "fork") -> None:
    """Track this test in its own child process, even without --memray-isolate."""


MARKER_SIGNATURES: Dict[str, Callable[..., None]] = {
    "limit_memory": limit_memory,
    "memray_isolate": memray_isolate,
}


def _signature(name: str) -> inspect.Signature:
    function = MARKER_SIGNATURES[name]
    return inspect.signature(function).replace(return_annotation=inspect.Signature.empty)


def marker_help_lines() -> List[str]:
    """Lines for ``pytest --markers``: each marker with its real signature and purpose."""
    return [
        f"{name}{_signature(name)}: {inspect.getdoc(function)}"
        for name, function in MARKER_SIGNATURES.items()
    ]


@dataclass(frozen=True)
class MemoryLimit:
    """A validated ``limit_memory`` marker."""

    limit: int
    text: str
    current_thread_only: bool


@dataclass(frozen=True)
class TrackingPlan:
    """How one test is tracked, decided once at collection.

    ``error`` holds the message for a marker the user got wrong; the test then fails
    at setup with it instead of running.
    """

    mode: str
    limit: Optional[MemoryLimit] = None
    error: Optional[str] = None

    @property
    def isolated(self) -> bool:
        return self.mode != IN_PROCESS


class MarkerError(Exception):
    """A memray marker whose arguments are wrong; the message says what was expected."""


def _call_text(mark: pytest.Mark) -> str:
    parts = [repr(arg) for arg in mark.args]
    parts += [f"{key}={value!r}" for key, value in mark.kwargs.items()]
    return f"@pytest.mark.{mark.name}({', '.join(parts)})"


def _bind(mark: pytest.Mark) -> inspect.BoundArguments:
    signature = _signature(mark.name)
    try:
        bound = signature.bind(*mark.args, **mark.kwargs)
    except TypeError as error:
        raise MarkerError(f"{error}; the signature is {mark.name}{signature}") from None
    bound.apply_defaults()
    return bound


def _parse_limit_memory(mark: pytest.Mark) -> MemoryLimit:
    arguments = _bind(mark).arguments
    limit, current_thread_only = arguments["limit"], arguments["current_thread_only"]
    if not isinstance(limit, str):
        raise MarkerError(f"the limit must be a string, {SIZE_HINT}; got {type(limit).__name__} {limit!r}")
    try:
        size = parse_size(limit)
    except ValueError as error:
        raise MarkerError(str(error)) from None
    if not isinstance(current_thread_only, bool):
        raise MarkerError(f"current_thread_only must be True or False; got {current_thread_only!r}")
    return MemoryLimit(limit=size, text=limit, current_thread_only=current_thread_only)


def _parse_isolate(mark: pytest.Mark) -> str:
    mode = _bind(mark).arguments["mode"]
    if mode not in ISOLATION_MODES:
        raise MarkerError(
            f"unknown isolation mode {mode!r}; expected one of {', '.join(map(repr, ISOLATION_MODES))}"
        )
    return str(mode)


def plan_for(item: pytest.Item, settings: Settings) -> Optional[TrackingPlan]:
    """Decide whether and how ``item`` is tracked; ``None`` means not at all.

    The closest marker wins, so a test's own marker overrides a module's ``pytestmark``.
    """
    limit_mark = item.get_closest_marker("limit_memory")
    isolate_mark = item.get_closest_marker("memray_isolate")
    if limit_mark is None and isolate_mark is None and not settings.tracking_all:
        return None
    mode = settings.isolate or IN_PROCESS
    limit = None
    current: Optional[pytest.Mark] = None
    try:
        if isolate_mark is not None:
            current = isolate_mark
            mode = _parse_isolate(isolate_mark)
        if limit_mark is not None:
            current = limit_mark
            limit = _parse_limit_memory(limit_mark)
    except MarkerError as error:
        assert current is not None
        message = f"{item.nodeid}: invalid marker {_call_text(current)}: {error}"
        return TrackingPlan(mode=mode, error=message)
    return TrackingPlan(mode=mode, limit=limit)
