"""Starting memray's Tracker as close to the test's own code as possible.

The Tracker is entered in an ordinary function's frame that then calls the test, never
inside a generator (such as a ``contextlib.contextmanager``): memray follows the frames entered after it starts, and a
Tracker started in a suspended generator records stacks without the test's frames.

The resident probe (resident.py) sits inside the Tracker, next to the call: reset once the
Tracker has started (its own buffers are then not counted), read as soon as the call ends.
"""

from __future__ import annotations

import functools
import gc
import inspect
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, cast

import pytest
from memray import FileFormat, Tracker

from .._isolation.messages import CallSpec, TrackerNotes
from .._judging.limits import check_leaked_objects
from .._plan import TrackerOptions
from .follow_fork import note_running
from .heap import fill_free_space, settle
from .region import regions_of_call
from .repeat import calls_of, not_repeatable
from .resident import ResidentProbe
from .window import end_window

__all__ = ["patched_call", "prepare_for_forks", "tracked", "tracker_arguments"]

#: Turns an item's ``runtest`` into one that runs it elsewhere (a child process).
RuntestWrapper = Callable[[Callable[[], object]], Callable[[], object]]


#: What a failing call raises: exceptions, and pytest's fail, skip and xfail outcomes
#: (which are not ``Exception``s). Interruptions and pytest.exit stop the run instead.
_CALL_FAILURES = (Exception, pytest.fail.Exception, pytest.skip.Exception, pytest.xfail.Exception)


def tracker_arguments(options: TrackerOptions) -> Dict[str, Any]:
    """Keyword arguments for ``memray.Tracker``."""
    arguments: Dict[str, Any] = {
        "file_format": FileFormat.ALL_ALLOCATIONS
        if options.all_allocations or options.ends_open
        else FileFormat.AGGREGATED_ALLOCATIONS,
        "native_traces": options.native_traces,
        "trace_python_allocators": options.trace_python_allocators,
    }
    if options.track_object_lifetimes:
        arguments["track_object_lifetimes"] = True
    if options.follow_fork:
        arguments["follow_fork"] = True
    return arguments


def prepare_for_forks() -> None:
    """Do once, in a process that forks tracked children, what each child would otherwise
    do itself: memray imports and computes its Python path information on first use
    (about 10 ms a child), and settling copies the pages of every free block the parent
    has (see ``heap.fill_free_space``)."""
    from memray.reporters.module_tools import get_python_path_info

    get_python_path_info()
    fill_free_space()


def _prepared_tracker(spec: CallSpec, capture: Path, settle_heap: bool, keep_alive: List[object]) -> Tracker:
    """A Tracker writing ``capture``, constructed before the allocator is settled:
    constructing it runs Python code whose allocations would otherwise undo part of the
    settling. The allocator is settled once, before the first tracked call."""
    tracker = Tracker(capture, **tracker_arguments(spec.tracker))
    if settle_heap and not keep_alive:
        keep_alive.append(settle())
    return tracker


#: Trackers left running in this child until it exits (see window.py); kept referenced.
_left_running: List[Tracker] = []


def _ends_open(spec: CallSpec, capture: Path) -> bool:
    """Whether this call's Tracker is left running: a child's only tracked call."""
    return spec.tracker.ends_open and spec.window_marker is not None and capture == spec.capture


def _before_stopping(spec: CallSpec) -> None:
    if spec.objects is not None:
        # Cycles and interpreter caches would otherwise count as leaked objects.
        gc.collect()
        getattr(sys, "_clear_internal_caches", lambda: None)()


def _after_stopping(spec: CallSpec, notes: TrackerNotes, tracker: Tracker, capture: Path) -> None:
    """Judge leaked objects here, in the process where they live; note which forked
    processes are still running, which only this process can tell."""
    if spec.objects is not None:
        notes.objects_verdict = check_leaked_objects(tracker.get_surviving_objects(), spec.objects)
    if spec.tracker.follow_fork and capture == spec.capture:
        note_running(spec)


def _call_tracked(
    function: Callable[..., Any],
    args: Tuple[Any, ...],
    kwargs: Dict[str, Any],
    spec: CallSpec,
    notes: TrackerNotes,
    capture: Path,
    settle_heap: bool,
    keep_alive: List[object],
) -> Any:
    probe = ResidentProbe()  # before the Tracker: its buffers are not the test's
    tracker = _prepared_tracker(spec, capture, settle_heap, keep_alive)
    if _ends_open(spec, capture):
        assert spec.window_marker is not None
        _left_running.append(tracker)
        tracker.__enter__()
        probe.reset()
        try:
            return function(*args, **kwargs)
        finally:
            probe.read_peak()
            end_window(spec.window_marker)
            notes.resident = probe.figures()
    try:
        with tracker:
            probe.reset()
            try:
                return function(*args, **kwargs)
            finally:
                probe.read_peak()
                _before_stopping(spec)
    finally:
        notes.resident = probe.figures()
        _after_stopping(spec, notes, tracker, capture)


async def _call_tracked_async(
    function: Callable[..., Any],
    args: Tuple[Any, ...],
    kwargs: Dict[str, Any],
    spec: CallSpec,
    notes: TrackerNotes,
    capture: Path,
    settle_heap: bool,
    keep_alive: List[object],
) -> Any:
    probe = ResidentProbe()  # before the Tracker: its buffers are not the test's
    tracker = _prepared_tracker(spec, capture, settle_heap, keep_alive)
    if _ends_open(spec, capture):
        assert spec.window_marker is not None
        _left_running.append(tracker)
        tracker.__enter__()
        probe.reset()
        try:
            return await function(*args, **kwargs)
        finally:
            probe.read_peak()
            end_window(spec.window_marker)
            notes.resident = probe.figures()
    try:
        with tracker:
            probe.reset()
            try:
                return await function(*args, **kwargs)
            finally:
                probe.read_peak()
                _before_stopping(spec)
    finally:
        notes.resident = probe.figures()
        _after_stopping(spec, notes, tracker, capture)


def tracked(
    function: Callable[..., Any], spec: CallSpec, notes: TrackerNotes, *, settle_heap: bool = False
) -> Callable[..., Any]:
    """Wrap ``function`` so a call runs it under a Tracker writing ``spec.capture``.

    A repeated test (``spec.warmups``, ``spec.repeats``) is called untracked for its
    warm-ups, then once per repetition under a Tracker of its own, with the same
    arguments each time. With ``settle_heap`` (isolated children) the allocator is
    brought to its canonical state first, so the figures do not depend on what the
    parent did before forking.
    """
    keep_alive: List[object] = []
    calls = calls_of(spec)

    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def run_tracked_async(*args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True  # pytest shows the test's frames, not these
            result = None
            for index, (_, capture) in enumerate(calls):
                try:
                    if capture is None:
                        result = await function(*args, **kwargs)
                    else:
                        result = await _call_tracked_async(
                            function, args, kwargs, spec, notes, capture, settle_heap, keep_alive
                        )
                except _CALL_FAILURES as error:
                    if index == 0:
                        raise
                    raise not_repeatable(spec, index, error) from None
            return result

        return run_tracked_async

    @functools.wraps(function)
    def run_tracked(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True  # pytest shows the test's frames, not these
        result = None
        for index, (_, capture) in enumerate(calls):
            try:
                if capture is None:
                    result = function(*args, **kwargs)
                else:
                    result = _call_tracked(
                        function, args, kwargs, spec, notes, capture, settle_heap, keep_alive
                    )
            except _CALL_FAILURES as error:
                if index == 0:
                    raise
                raise not_repeatable(spec, index, error) from None
        return result

    return run_tracked


@contextmanager
def _resident_growth(notes: TrackerNotes) -> Iterator[None]:
    """Note in ``notes`` how much the process's peak resident size grows within the block."""
    probe = ResidentProbe()
    probe.reset()
    try:
        yield
    finally:
        probe.read_peak()
        notes.resident = probe.figures()


def resident_only(function: Callable[..., Any], notes: TrackerNotes) -> Callable[..., Any]:
    """Wrap ``function`` of a test that measures regions: no Tracker around its call (each
    region has its own), but its resident growth, as every tracked test gets."""

    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def run_measured_async(*args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True  # pytest shows the test's frames, not these
            with _resident_growth(notes):
                return await function(*args, **kwargs)

        return run_measured_async

    @functools.wraps(function)
    def run_measured(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True  # pytest shows the test's frames, not these
        with _resident_growth(notes):
            return function(*args, **kwargs)

    return run_measured


def _calls_its_function_object(item: pytest.Item) -> bool:
    """Whether pytest runs this item by calling ``item.obj`` (plain test functions do;
    unittest methods and doctests have a ``runtest`` of their own)."""
    return isinstance(item, pytest.Function) and type(item).runtest is pytest.Function.runtest


@contextmanager
def patched_call(
    item: pytest.Item,
    spec: CallSpec,
    notes: TrackerNotes,
    *,
    track: bool = True,
    settle_heap: bool = False,
    outer: Optional[RuntestWrapper] = None,
) -> Iterator[None]:
    """Put the Tracker (with ``track``) and ``outer`` around this item's call, then undo it.

    The Tracker wraps the test function itself where pytest calls one, so fixture
    lookup and pytest's hook machinery are not counted; other items are tracked
    around their whole ``runtest``. ``outer`` (a runner's) wraps the whole call.

    A test that measures regions (``spec.regions``) gets no Tracker around its call: its
    regions opened during the call track themselves (see region.py), in whichever
    process runs it (a forked child inherits what is set here); its call's resident
    growth is measured all the same.
    """

    def measured(function: Callable[..., Any]) -> Callable[..., Any]:
        if spec.regions:
            return resident_only(function, notes)
        return tracked(function, spec, notes, settle_heap=settle_heap)

    had_own_runtest = "runtest" in vars(item)
    original_runtest = item.runtest
    function_item = cast(pytest.Function, item) if track and _calls_its_function_object(item) else None
    original_function = function_item.obj if function_item is not None else None
    runtest: Callable[[], object] = original_runtest
    if function_item is not None and original_function is not None:
        function_item.obj = measured(original_function)
    elif track:
        runtest = measured(runtest)
    if outer is not None:
        runtest = outer(runtest)
    item.runtest = runtest  # type: ignore[method-assign,assignment]
    regions = regions_of_call(spec, notes, settle_heap=settle_heap) if spec.regions else nullcontext()
    try:
        with regions:
            yield
    finally:
        # Put back exactly what was there: a rerun (pytest-rerunfailures) wraps afresh.
        if function_item is not None:
            function_item.obj = original_function
        if had_own_runtest:
            item.runtest = original_runtest  # type: ignore[method-assign]
        else:
            del item.runtest
