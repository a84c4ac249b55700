"""Measuring part of a test: the regions of the ``memray_region`` fixture.

A test that uses the fixture is tracked only inside its regions: the plugin puts no
Tracker around its call. Each ``with memray_region() as region:`` block runs under a
memray Tracker of its own, writing a capture of its own beside the test's
(``NAME-regionN.bin``, see _capture_files.py). When the block ends its capture is read
at once, in the process that ran the test, so that the test can assert on the figures;
they are noted for the parent (an isolated child sends them in its reply) and reported
as the test's regions.

The Tracker starts inside ``MemoryRegion.__enter__``, after the test's own frames were
entered, and memray knows only the frames entered while it tracks: what the ``with``
block allocates itself would have no Python stack, and no place in the biggest
allocating places. memray rebuilds a thread's stack from its live frames when a
greenlet switches; the region asks it to do that once, right after its Tracker
starts, so the test's frames are in every stack it records.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import sys
import tempfile
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Dict, Iterator, List, NoReturn, Optional, Tuple, Type, Union, final

import memray._memray
import pytest
from memray import FileFormat, Tracker

from .._capture_files import region_capture
from .._isolation.messages import (
    CallSpec,
    LoggedRecord,
    RegionMeasured,
    RegionOpened,
    TrackerNotes,
    append_logged,
)
from .._judging.capture import Location, RegionFigures, read_region
from .._plan import TrackerOptions
from .heap import settle

__all__ = ["MemoryRegion", "RegionOpener", "regions_of_call"]


@dataclass
class _Call:
    """The tracked call whose regions are measured: where their captures go, where their
    figures are noted, and whether the allocator is settled before the first one."""

    spec: CallSpec
    notes: TrackerNotes
    settle_heap: bool
    keep_alive: List[object] = field(default_factory=list)


#: The call being run in this process, set around it by ``regions_of_call``.
_call: Optional[_Call] = None
#: The region whose Tracker runs in this process, if any.
_open: Optional[MemoryRegion] = None


@contextmanager
def regions_of_call(spec: CallSpec, notes: TrackerNotes, *, settle_heap: bool) -> Iterator[None]:
    """Let the regions opened during this call write beside ``spec.capture`` and note their
    figures in ``notes``; with ``settle_heap`` (an isolated child) the allocator is settled
    before the first region's Tracker starts, as before a whole call's."""
    global _call
    previous = _call
    _call = _Call(spec, notes, settle_heap)
    try:
        yield
    finally:
        _call = previous
        left_open = _open
        if left_open is not None:  # entered by hand and never ended: stop its Tracker
            left_open.__exit__(None, None, None)


def _tracker_arguments(options: TrackerOptions, *, leaks: bool) -> Dict[str, Any]:
    """A region's Tracker: every allocation event kept (they are counted), with the
    test's stack options; every Python allocation traced when leaks are measured, so
    that leaked bytes are objects and not the allocator's arenas."""
    return {
        "file_format": FileFormat.ALL_ALLOCATIONS,
        "native_traces": options.native_traces,
        "trace_python_allocators": options.trace_python_allocators or leaks,
    }


#: memray's handler of a greenlet switch (not in its type stubs): it rebuilds the
#: thread's Python stack from the live frames.
_rebuild_stack: Optional[Callable[[str, Tuple[object, object]], None]] = vars(memray._memray).get(
    "greenlet_trace_function"
)


def _frame_objects_made() -> None:
    """Make the frame objects of the running frames now, before the Tracker starts.

    CPython makes a frame's object only when something asks for it, as memray's stack
    rebuilding does for every frame; made while tracking, the larger ones would be counted
    as the region's allocations.
    """
    frame = sys._getframe()
    while frame.f_back is not None:
        frame = frame.f_back


def _tell_memray_the_stack(greenlets: Tuple[object, object]) -> None:
    """Have memray take the frames already running (the test's) as part of every stack
    recorded from here; should memray not offer it, stacks only lack those frames.

    ``greenlets`` stand for the two greenlets of a switch, made before the Tracker starts.
    """
    if _rebuild_stack is not None:
        with contextlib.suppress(Exception):
            _rebuild_stack("switch", greenlets)


class _NoTracker:
    """What a rehearsal starts and stops instead of a Tracker."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


#: Whether this process has rehearsed a region (see ``_rehearse``).
_rehearsed = False


def _rehearse() -> None:
    """Run a region's own code once, under a profile function that does nothing, before
    the first region of this process starts its Tracker.

    CPython gives a code object a table of line numbers the first time a profiler sees
    it run: made while a region tracks, those of the region's own methods would count as
    the region's allocations (and, with ``leaks=True``, as its leaks: the tables stay).
    """
    global _rehearsed, _open
    if _rehearsed:
        return
    _rehearsed = True
    region = MemoryRegion(RegionOpener("rehearsal"), leaks=False, filename="", lineno=0)
    region._rehearsal = True
    previous = sys.getprofile()
    sys.setprofile(lambda frame, event, arg: None)
    try:
        with region:
            pass
    finally:
        sys.setprofile(previous)
        _open = None


_NOT_OPENED, _OPEN, _ENDED = "not opened", "open", "ended"


@final
class MemoryRegion:
    """One measured block of a test: ``with memray_region() as region: ...``.

    The figures are those of the code run inside the block alone, from a memray capture
    of its own, read as the block ends: reading one before that fails the test, since it
    is not known yet. The object is handed out before its figures exist, so it is not a
    frozen dataclass; nothing of it can be set from outside, and nothing changes once the
    block has ended.
    """

    __slots__ = (
        "_call",
        "_capture",
        "_figures",
        "_filename",
        "_leaks",
        "_lineno",
        "_opener",
        "_rehearsal",
        "_scratch",
        "_state",
        "_tracker",
    )

    def __init__(self, opener: RegionOpener, *, leaks: bool, filename: str, lineno: int) -> None:
        self._opener = opener
        self._leaks = leaks
        self._filename = filename
        self._lineno = lineno
        self._state = _NOT_OPENED
        self._figures: Optional[RegionFigures] = None
        self._tracker: Optional[Union[Tracker, _NoTracker]] = None
        self._call: Optional[_Call] = None
        self._capture: Optional[Path] = None
        self._scratch: Optional[Path] = None
        #: Whether this region only rehearses the code a region runs (see ``_rehearse``).
        self._rehearsal = False

    def __repr__(self) -> str:
        return f"<MemoryRegion opened at {self._where()}, {self._state}>"

    # -- the figures, once the block has ended ------------------------------------------

    @property
    def peak_memory(self) -> int:
        """Bytes allocated at the block's high watermark (what it held at most at once)."""
        __tracebackhide__ = True
        return self._ended().peak_memory

    @property
    def allocations(self) -> int:
        """How many allocations the block made (memray's allocation events, frees not
        counted, as ``limit_allocations`` counts them)."""
        __tracebackhide__ = True
        return self._ended().total_allocations

    @property
    def top_locations(self) -> Tuple[Location, ...]:
        """The biggest allocating places at the block's high watermark, biggest first (up to
        five), as the MEMRAY REPORT lists them."""
        __tracebackhide__ = True
        return self._ended().top_locations

    @property
    def leaked_memory(self) -> int:
        """Bytes the block allocated and had not freed when it ended (``leaks=True`` only)."""
        __tracebackhide__ = True
        leaked = self._ended().leaked_memory
        if leaked is None:
            pytest.fail(
                f"{self._opener.nodeid}: the memray_region opened at {self._where()} was not asked to"
                " measure leaks; open it with memray_region(leaks=True) to read its leaked_memory"
            )
        return leaked

    @property
    def number(self) -> int:
        """Its place among the test's regions, from 1 (as the reports number them)."""
        __tracebackhide__ = True
        return self._ended().number

    def _where(self) -> str:
        return f"{os.path.basename(self._filename)}:{self._lineno}"

    def _ended(self) -> RegionFigures:
        __tracebackhide__ = True
        if self._figures is not None:
            return self._figures
        nodeid = self._opener.nodeid
        if self._state == _OPEN:
            pytest.fail(
                f"{nodeid}: the figures of the memray_region opened at {self._where()} are read"
                " inside its with block; they are known once the block has ended: read them after it"
            )
        pytest.fail(
            f"{nodeid}: the memray_region opened at {self._where()} has not measured anything:"
            " use it in a with block (with memray_region() as region: ...) and read its figures after it"
        )

    # -- the block ------------------------------------------------------------------

    # The code that runs while the region's Tracker does is kept to a few instructions:
    # CPython gives a code object a table of line numbers (2 bytes an instruction here)
    # the first time a profiler sees it, and memray would count the table of a long
    # method as the region's own allocation. Checks and reading happen before and after.

    def __enter__(self) -> MemoryRegion:
        __tracebackhide__ = True
        self._start(*self._prepared())
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc_value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        tracker = self._tracker
        if tracker is not None:
            tracker.__exit__(exc_type, exc_value, traceback)
        self._stopped()

    def _prepared(self) -> Tuple[Union[Tracker, _NoTracker], Tuple[object, object]]:
        """The region's Tracker, ready to start, once the region may start (else the test
        fails); and what memray needs to learn the running frames."""
        __tracebackhide__ = True
        greenlets = (types.SimpleNamespace(), types.SimpleNamespace())
        if self._rehearsal:
            return _NoTracker(), greenlets
        _rehearse()
        nodeid = self._opener.nodeid
        if self._state != _NOT_OPENED:
            pytest.fail(
                f"{nodeid}: the memray_region opened at {self._where()} has measured its block"
                " already; each region measures one with block: open another with memray_region()"
            )
        if _open is not None:
            pytest.fail(
                f"{nodeid}: a memray_region is opened at {self._where()} inside the one opened at"
                f" {_open._where()}, which is still open; regions cannot nest: end one region's"
                " with block before opening the next"
            )
        call = self._call = _call
        number = self._opener.entered + 1
        if call is None:  # outside a tracked call (a fixture's setup): a capture of its own
            self._scratch = Path(tempfile.mkdtemp(prefix="pytest-memray-isolate-region-"))
            capture, options = self._scratch / "region.bin", TrackerOptions()
        else:
            capture, options = region_capture(call.spec.capture, number), call.spec.tracker
            _log(call.spec, RegionOpened(number, self._filename, self._lineno))
        self._capture = capture
        tracker = Tracker(capture, **_tracker_arguments(options, leaks=self._leaks))
        if call is not None and call.settle_heap and not call.keep_alive:
            call.keep_alive.append(settle())
        _frame_objects_made()
        return tracker, greenlets

    def _start(self, tracker: Union[Tracker, _NoTracker], greenlets: Tuple[object, object]) -> None:
        __tracebackhide__ = True
        global _open
        try:
            tracker.__enter__()
        except RuntimeError as error:
            self._refused(error)
        _tell_memray_the_stack(greenlets)
        _open, self._tracker, self._state = self, tracker, _OPEN

    def _refused(self, error: RuntimeError) -> NoReturn:
        """memray refused to start the Tracker: another one is active in this process."""
        __tracebackhide__ = True
        assert self._capture is not None
        self._discard(self._capture)
        pytest.fail(
            f"{self._opener.nodeid}: the memray_region opened at {self._where()} cannot start its"
            f" memray Tracker: another Tracker is active in this process ({error}); stop that"
            " Tracker before the region starts, or measure with one of the two",
        )

    def _stopped(self) -> None:
        """Read the region's figures once its Tracker has stopped, and note them for the reports."""
        global _open
        _open, self._tracker, self._state = None, None, _ENDED
        if self._rehearsal:
            return
        capture = self._capture
        assert capture is not None
        self._opener.entered += 1
        figures = read_region(capture, self._opener.entered, self._filename, self._lineno, leaks=self._leaks)
        self._figures = figures
        if self._call is not None:
            self._call.notes.regions.append(figures)
            _log(self._call.spec, RegionMeasured(figures))
        else:
            self._discard(capture)

    def _discard(self, capture: Path) -> None:
        """Remove a capture no report will read: a refused region's, or one outside a call."""
        capture.unlink(missing_ok=True)
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


def _log(spec: CallSpec, record: LoggedRecord) -> None:
    """Append ``record`` to the call's logged file, for the parent of a child that dies
    later in the call (written wherever the test runs: a forked child inherits the call
    set up in pytest's process, and nothing reads the file of a test that did not die)."""
    with contextlib.suppress(OSError):
        append_logged(spec, pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL))


@final
class RegionOpener:
    """The ``memray_region`` fixture's value: ``memray_region()`` opens a region,
    ``memray_region(leaks=True)`` one that also measures what its block leaves allocated."""

    __slots__ = ("entered", "nodeid")

    def __init__(self, nodeid: str) -> None:
        #: The test, for messages.
        self.nodeid = nodeid
        #: How many of its regions have started (the last one's number).
        self.entered = 0

    def __call__(self, *, leaks: bool = False) -> MemoryRegion:
        caller = sys._getframe(1)
        return MemoryRegion(self, leaks=leaks, filename=caller.f_code.co_filename, lineno=caller.f_lineno)
