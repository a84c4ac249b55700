"""Memray markers: their signatures, and validation at collection into a TrackingPlan."""

# No ``from __future__ import annotations`` here: the marker signatures below are shown
# to users (pytest --markers, error messages) and must print as ``limit: str``.

import inspect
import sys
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Tuple

import pytest

from ._options import (
    DEFAULT_REPETITION,
    ISOLATION_MODES,
    SECONDS_HINT,
    Repetition,
    default_isolation_mode,
    isolation_mode,
    time_limit,
)
from ._settings import Settings
from ._sizes import SIZE_HINT, format_size, parse_size
from ._stacks import LeakedObjectsFilterFunction, LeaksFilterFunction

__all__ = [
    "IN_PROCESS",
    "LIMIT_MARKERS",
    "MARKER_SIGNATURES",
    "AllocationLimit",
    "LeakLimit",
    "LeakedObjectsCheck",
    "MemoryLimit",
    "RssLimit",
    "TrackingPlan",
    "marker_help_lines",
    "plan_for",
]

IN_PROCESS = "in-process"
#: Python versions whose memray can follow object lifetimes (limit_leaked_objects).
OBJECT_TRACKING_SINCE = (3, 13, 3)


def limit_memory(limit: str, *, current_thread_only: bool = False) -> None:
    """Fail the test when its call phase allocates ``limit`` or more at its high watermark."""


def limit_leaks(
    location_limit: str,
    *,
    filter_fn: Optional[LeaksFilterFunction] = None,
    current_thread_only: bool = False,
    warmups: Optional[int] = None,
    repeats: Optional[int] = None,
) -> None:
    """Fail the test when memory allocated at one place, and still alive at its end, reaches ``location_limit`` (with ``warmups`` or ``repeats``: on every tracked repetition)."""


def limit_leaked_objects(*, filter_fn: Optional[LeakedObjectsFilterFunction] = None) -> None:
    """Fail the test when objects it created outlive it (Python 3.13.3 or newer)."""


def limit_allocations(count: int) -> None:
    """Fail the test when its call phase makes more than ``count`` allocations (see the docs for what counts)."""


def limit_rss(limit: str) -> None:
    """Fail the test when its process's peak resident memory grows by ``limit`` or more during its call (Linux)."""


def memray_isolate(mode: Optional[str] = None, *, timeout: Optional[float] = None) -> None:
    """Track this test in its own child process, even without --memray-isolate; ``mode`` is fork, forkserver or spawn (default: the run's); kill it after ``timeout`` seconds (0: never)."""


MARKER_SIGNATURES: Dict[str, Callable[..., None]] = {
    "limit_memory": limit_memory,
    "limit_leaks": limit_leaks,
    "limit_leaked_objects": limit_leaked_objects,
    "limit_allocations": limit_allocations,
    "limit_rss": limit_rss,
    "memray_isolate": memray_isolate,
}
#: The markers that set a limit; a test may have one kind only.
LIMIT_MARKERS = ("limit_memory", "limit_leaks", "limit_leaked_objects")
#: How pytest-memray words that rule; the error for two kinds of limit starts with it,
#: so that what users search for (or match in CI logs) still finds it.
ONE_MARKER = "Only one Memray marker can be applied to each test"


def _signature(name: str) -> inspect.Signature:
    function = MARKER_SIGNATURES[name]
    return inspect.signature(function).replace(return_annotation=inspect.Signature.empty)


def _signature_text(name: str) -> str:
    """The signature as users write it: ``filter_fn: Optional[LeaksFilterFunction]``."""
    return str(_signature(name)).replace(f"{LeaksFilterFunction.__module__}.", "")


def marker_help_lines() -> List[str]:
    """Lines for ``pytest --markers``: each marker with its real signature and purpose."""
    return [
        f"{name}{_signature_text(name)}: {inspect.getdoc(function)}"
        for name, function in MARKER_SIGNATURES.items()
    ]


@dataclass(frozen=True)
class MemoryLimit:
    """A validated ``limit_memory`` (from a marker, or the default limit option)."""

    limit: int
    text: str
    current_thread_only: bool = False
    #: Where the limit came from: "marker", or the option or ini key of the default limit.
    source: str = "marker"


@dataclass(frozen=True)
class LeakLimit:
    """A validated ``limit_leaks`` marker.

    ``warmups`` untracked calls come first, then ``repeats`` calls each under a Tracker
    of its own; one tracked call and no warm-up is pytest-memray's ``limit_leaks``.
    """

    limit: int
    text: str
    filter_fn: Optional[LeaksFilterFunction] = None
    current_thread_only: bool = False
    warmups: int = 0
    repeats: int = 1

    @property
    def repeated(self) -> bool:
        return (self.warmups, self.repeats) != (0, 1)


@dataclass(frozen=True)
class LeakedObjectsCheck:
    """A validated ``limit_leaked_objects`` marker."""

    filter_fn: Optional[LeakedObjectsFilterFunction] = None


@dataclass(frozen=True)
class AllocationLimit:
    """A validated ``limit_allocations`` marker."""

    count: int


@dataclass(frozen=True)
class RssLimit:
    """A validated ``limit_rss`` (from a marker, or the default limit option)."""

    limit: int
    text: str
    #: Where the limit came from: "marker", or the option or ini key of the default limit.
    source: str = "marker"


@dataclass(frozen=True)
class TrackerOptions:
    """What memray records for one test."""

    native_traces: bool = False
    trace_python_allocators: bool = False
    track_object_lifetimes: bool = False
    all_allocations: bool = False
    #: Whether processes the test forks are tracked too (each writes a capture of its own).
    follow_fork: bool = False
    #: Whether an isolated child leaves its Tracker running and exits (see _tracking/window.py):
    #: the capture is then written in the "all" format, whatever ``all_allocations`` says.
    ends_open: bool = False


@dataclass(frozen=True)
class TrackingPlan:
    """How one test is tracked, decided once at collection.

    ``error`` holds the message for a marker the user got wrong, and ``skip`` the reason
    a marked test cannot run here; the test then errors or is skipped at setup.
    """

    mode: str
    tracker: TrackerOptions = field(default_factory=TrackerOptions)
    memory: Optional[MemoryLimit] = None
    leaks: Optional[LeakLimit] = None
    objects: Optional[LeakedObjectsCheck] = None
    error: Optional[str] = None
    skip: Optional[str] = None
    #: Seconds an isolated child may run, from ``memray_isolate(timeout=...)`` (0.0: no limit).
    timeout: Optional[float] = None
    #: The most allocations the call may make (``limit_allocations``); combines with the others.
    allocations: Optional[AllocationLimit] = None
    #: The most the process's peak resident size may grow during the call (``limit_rss``);
    #: combines with the others, as ``allocations`` does.
    rss: Optional[RssLimit] = None

    @property
    def isolated(self) -> bool:
        return self.mode != IN_PROCESS

    def limit_description(self) -> Optional[Dict[str, object]]:
        """The limit that applies, as plain data for reports."""
        if self.memory is not None:
            return {
                "kind": "limit_memory",
                "bytes": self.memory.limit,
                "text": self.memory.text,
                "source": self.memory.source,
            }
        if self.leaks is not None:
            return {
                "kind": "limit_leaks",
                "bytes": self.leaks.limit,
                "text": self.leaks.text,
                "source": "marker",
                "warmups": self.leaks.warmups,
                "repeats": self.leaks.repeats,
            }
        if self.objects is not None:
            return {"kind": "limit_leaked_objects", "source": "marker"}
        if self.allocations is not None:
            return {"kind": "limit_allocations", "count": self.allocations.count, "source": "marker"}
        if self.rss is not None:
            return {
                "kind": "limit_rss",
                "bytes": self.rss.limit,
                "text": self.rss.text,
                "source": self.rss.source,
            }
        return None


class MarkerError(Exception):
    """A memray marker whose arguments are wrong; the message says what was expected."""


def _call_text(mark: pytest.Mark) -> str:
    parts = [repr(arg) for arg in mark.args]
    parts += [f"{key}={value!r}" for key, value in mark.kwargs.items()]
    return f"@pytest.mark.{mark.name}({', '.join(parts)})"


def _bind(mark: pytest.Mark) -> Dict[str, object]:
    signature = _signature(mark.name)
    try:
        bound = signature.bind(*mark.args, **mark.kwargs)
    except TypeError as error:
        raise MarkerError(f"{error}; the signature is {mark.name}{_signature_text(mark.name)}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def _size_argument(name: str, value: object) -> int:
    if not isinstance(value, str):
        raise MarkerError(f"{name} must be a string, {SIZE_HINT}; got {type(value).__name__} {value!r}")
    try:
        return parse_size(value)
    except ValueError as error:
        raise MarkerError(str(error)) from None


def _bool_argument(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise MarkerError(f"{name} must be True or False; got {value!r}")
    return value


def _filter_argument(value: object) -> object:
    if value is not None and not callable(value):
        raise MarkerError(f"filter_fn must be a function or None; got {type(value).__name__} {value!r}")
    return value


def _parse_limit_memory(mark: pytest.Mark) -> MemoryLimit:
    arguments = _bind(mark)
    text = arguments["limit"]
    limit = _size_argument("the limit", text)
    current = _bool_argument("current_thread_only", arguments["current_thread_only"])
    return MemoryLimit(limit=limit, text=str(text), current_thread_only=current)


def _whole_number_argument(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MarkerError(
            f"{name} must be a whole number, {minimum} or more; got {type(value).__name__} {value!r}"
        )
    return value


def _repetition(arguments: Dict[str, object], settings: Settings) -> Repetition:
    """The marker's ``warmups`` and ``repeats``, each falling back on --memray-repeat-leaks.

    Without either (and without the option) the test is called once, as pytest-memray does.
    """
    warmups, repeats = arguments["warmups"], arguments["repeats"]
    default = settings.repeat_leaks
    if default is None:
        if warmups is None and repeats is None:
            return Repetition(warmups=0, repeats=1)
        default = DEFAULT_REPETITION
    return Repetition(
        warmups=default.warmups if warmups is None else _whole_number_argument("warmups", warmups, 0),
        repeats=default.repeats if repeats is None else _whole_number_argument("repeats", repeats, 1),
    )


def _parse_limit_leaks(mark: pytest.Mark, settings: Settings) -> LeakLimit:
    arguments = _bind(mark)
    text = arguments["location_limit"]
    limit = _size_argument("location_limit", text)
    filter_fn = _filter_argument(arguments["filter_fn"])
    current = _bool_argument("current_thread_only", arguments["current_thread_only"])
    repetition = _repetition(arguments, settings)
    return LeakLimit(
        limit=limit,
        text=str(text),
        filter_fn=filter_fn,  # type: ignore[arg-type]
        current_thread_only=current,
        warmups=repetition.warmups,
        repeats=repetition.repeats,
    )


def _parse_limit_leaked_objects(mark: pytest.Mark) -> LeakedObjectsCheck:
    filter_fn = _filter_argument(_bind(mark)["filter_fn"])
    return LeakedObjectsCheck(filter_fn=filter_fn)  # type: ignore[arg-type]


def _parse_limit_allocations(mark: pytest.Mark) -> AllocationLimit:
    return AllocationLimit(_whole_number_argument("count", _bind(mark)["count"], 0))


def _rss_limit(mark: Optional[pytest.Mark], settings: Settings) -> Optional[RssLimit]:
    """The test's limit_rss marker, else the run's default (--memray-limit-rss), else none."""
    if mark is None:
        default = settings.limit_rss
        if default is None:
            return None
        return RssLimit(limit=default, text=format_size(default), source=settings.source_of("limit_rss"))
    text = _bind(mark)["limit"]
    return RssLimit(limit=_size_argument("the limit", text), text=str(text))


def _parse_isolate(mark: pytest.Mark, run_mode: Optional[str]) -> Tuple[str, Optional[float]]:
    arguments = _bind(mark)
    mode, timeout = arguments["mode"], arguments["timeout"]
    if mode is None:
        mode = run_mode or default_isolation_mode()
    named = isolation_mode(mode) if isinstance(mode, str) else None
    if named is None:
        raise MarkerError(
            f"unknown isolation mode {mode!r}; expected one of {', '.join(map(repr, ISOLATION_MODES))}"
        )
    return named, None if timeout is None else _timeout_argument(timeout)


def _timeout_argument(value: object) -> float:
    """The marker's ``timeout``, by the rule of ``--memray-timeout``; 0.0 stands for no limit."""
    hint = f"timeout must be {SECONDS_HINT}, or None; got {value!r}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MarkerError(hint)
    try:
        return time_limit(float(value)) or 0.0
    except ValueError:
        raise MarkerError(hint) from None


def _where(node: object, item: pytest.Item) -> str:
    if node is item:
        return "on the test"
    return f"on {type(node).__name__.lower()} {getattr(node, 'name', node)}"


def _closest_limit_marks(item: pytest.Item) -> List[Tuple[str, pytest.Mark, str]]:
    found = []
    for name in LIMIT_MARKERS:
        for node, mark in item.iter_markers_with_node(name=name):
            found.append((name, mark, _where(node, item)))
            break
    return found


def plan_for(item: pytest.Item, settings: Settings) -> Optional[TrackingPlan]:
    """Decide whether and how ``item`` is tracked; ``None`` means not at all.

    The closest marker wins, so a test's own marker overrides a module's ``pytestmark``.
    """
    limits = _closest_limit_marks(item)
    isolate_mark = item.get_closest_marker("memray_isolate")
    allocations_mark = item.get_closest_marker("limit_allocations")
    rss_mark = item.get_closest_marker("limit_rss")
    marked = limits or isolate_mark is not None or allocations_mark is not None or rss_mark is not None
    if not marked and not settings.tracking_all:
        return None
    plan = _plan_without_allocations(item, settings, limits, isolate_mark)
    if plan.error is not None:
        return _with_open_end(plan, settings)
    if allocations_mark is not None:
        try:
            allocations = _parse_limit_allocations(allocations_mark)
        except MarkerError as error:
            return replace(
                plan, error=f"{item.nodeid}: invalid marker {_call_text(allocations_mark)}: {error}"
            )
        # Only a capture of every allocation can count them (the aggregated format merges them).
        plan = replace(plan, allocations=allocations, tracker=replace(plan.tracker, all_allocations=True))
    try:
        plan = replace(plan, rss=_rss_limit(rss_mark, settings))
    except MarkerError as error:
        assert rss_mark is not None  # the default was validated with the settings
        return replace(plan, error=f"{item.nodeid}: invalid marker {_call_text(rss_mark)}: {error}")
    return _with_open_end(plan, settings)


def _with_open_end(plan: TrackingPlan, settings: Settings) -> TrackingPlan:
    """Let an isolated child skip stopping its Tracker where that gives the same figures.

    Not for what only a stopped Tracker gives (the objects that outlived the test), nor
    for leak checks (a free the window's end might drop would be a leak), repeated calls
    (one Tracker after another) or forks followed (whose files the real stop finishes),
    and not when the user chose a capture format.
    """
    ends_open = (
        plan.isolated
        and plan.error is None
        and plan.skip is None
        and plan.leaks is None
        and plan.objects is None
        and not plan.tracker.follow_fork
        and settings.source_of("capture_format") == "default"
    )
    if not ends_open:
        return plan
    return replace(plan, tracker=replace(plan.tracker, ends_open=True))


def _plan_without_allocations(
    item: pytest.Item,
    settings: Settings,
    limits: List[Tuple[str, pytest.Mark, str]],
    isolate_mark: Optional[pytest.Mark],
) -> TrackingPlan:
    """The plan from the isolation marker and the (exclusive) memory limit markers."""
    mode = settings.isolate or IN_PROCESS
    if len(limits) > 1:
        described = " and ".join(f"{_call_text(mark)} ({where})" for _, mark, where in limits)
        return TrackingPlan(
            mode=mode,
            error=(
                f"{ONE_MARKER}. {item.nodeid}: {described} cannot be combined;"
                " a test takes one kind of memray limit"
            ),
        )
    checked = [isolate_mark] if isolate_mark is not None else []
    checked += [mark for _, mark, _ in limits]
    timeout = None
    for mark in checked:
        try:
            if mark is isolate_mark:
                mode, timeout = _parse_isolate(mark, settings.isolate)
            else:
                return replace(_plan_with_limit(mode, mark, settings), timeout=timeout)
        except MarkerError as error:
            return TrackingPlan(mode=mode, error=f"{item.nodeid}: invalid marker {_call_text(mark)}: {error}")
    return replace(_plan_with_limit(mode, None, settings), timeout=timeout)


def _repeated_mode(mode: str, settings: Settings) -> str:
    """Where a repeated test runs: isolated, unless in-process was asked for by name.

    Its warm-ups and repetitions leave their leaks and side effects in the process that
    ran them; a child takes them away with it. ``--memray-isolate=off`` (or the ini key)
    keeps them in pytest's process.
    """
    if mode == IN_PROCESS and settings.source_of("isolate") == "default":
        return default_isolation_mode()
    return mode


def _plan_with_limit(mode: str, mark: Optional[pytest.Mark], settings: Settings) -> TrackingPlan:
    """The plan for a test with at most one limit marker (``mark``) and the run's settings."""
    # A forked process that ends with os._exit (as multiprocessing's do) leaves an
    # aggregated capture unreadable; the "all" format survives it.
    capture_all = settings.capture_format == "all" or settings.follow_fork
    follow_fork = settings.follow_fork
    tracker = TrackerOptions(
        native_traces=settings.native,
        trace_python_allocators=settings.trace_python_allocators,
        all_allocations=capture_all,
        follow_fork=follow_fork,
    )
    if mark is None:
        default = settings.limit_memory
        memory = None
        if default is not None:
            memory = MemoryLimit(
                limit=default, text=format_size(default), source=settings.source_of("limit_memory")
            )
        return TrackingPlan(mode=mode, tracker=tracker, memory=memory)
    if mark.name == "limit_memory":
        return TrackingPlan(mode=mode, tracker=tracker, memory=_parse_limit_memory(mark))
    if mark.name == "limit_leaks":
        # Leaks are told apart by their stacks: native frames and every Python allocation.
        leak_tracker = TrackerOptions(
            native_traces=True,
            trace_python_allocators=True,
            all_allocations=capture_all,
            follow_fork=follow_fork,
        )
        leaks = _parse_limit_leaks(mark, settings)
        if leaks.repeated:
            mode = _repeated_mode(mode, settings)
        return TrackingPlan(mode=mode, tracker=leak_tracker, leaks=leaks)
    check = _parse_limit_leaked_objects(mark)
    if sys.version_info < OBJECT_TRACKING_SINCE:
        running = ".".join(map(str, sys.version_info[:3]))
        return TrackingPlan(
            mode=mode,
            tracker=tracker,
            skip=f"limit_leaked_objects needs Python 3.13.3 or newer (this is Python {running})",
        )
    object_tracker = TrackerOptions(
        native_traces=settings.native,
        trace_python_allocators=settings.trace_python_allocators,
        track_object_lifetimes=True,
        all_allocations=capture_all,
        follow_fork=follow_fork,
    )
    return TrackingPlan(mode=mode, tracker=object_tracker, objects=check)
