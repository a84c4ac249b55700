"""Reading one test's memray capture file into the figures the plugin reports."""

from __future__ import annotations

import math
import os
from contextlib import ExitStack
from dataclasses import asdict, astuple, dataclass
from pathlib import Path
from typing import AbstractSet, Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from memray import AllocationRecord, AllocatorType, FileReader

from .._sizes import format_size

__all__ = [
    "RELEASES",
    "STILL_RUNNING",
    "UNREADABLE",
    "CallCaptures",
    "Location",
    "MemoryResult",
    "OpenCapture",
    "ProcessFigures",
    "RegionFigures",
    "figures",
    "frames_of_test",
    "high_watermark_records",
    "is_own_file",
    "leaked_records",
    "open_captures",
    "process_lines",
    "read_capture",
    "read_region",
    "top_frame",
]

#: Frames from these directories belong to the measuring machinery, not to the test.
_OWN_DIRS: Tuple[str, ...] = (str(Path(__file__).resolve().parent.parent) + os.sep,)
_TOP_LOCATIONS = 5
_HISTOGRAM_BINS = 5
_BARS = " ▁▂▃▄▅▆▇█"

Frame = Tuple[str, str, int]


@dataclass(frozen=True)
class Location:
    """Where an allocation happened, and how much it held at the high watermark."""

    function: str
    filename: str
    lineno: int
    size: int


@dataclass(frozen=True)
class ProcessFigures:
    """One process of a test followed into its forks (--memray-follow-fork).

    ``role`` is ``"test"`` for the process that ran the test and ``"forked"`` for the
    processes it forked. A process that is not ``counted`` has no figures; ``note`` says why.
    """

    pid: int
    role: str
    peak_memory: Optional[int]
    total_allocations: Optional[int]
    counted: bool = True
    note: Optional[str] = None
    #: Its capture file, when the user keeps them (--memray-bin-path).
    capture_file: Optional[str] = None


def process_lines(processes: Iterable[ProcessFigures]) -> List[str]:
    """One line per process of a test followed into its forks: its role, pid and peak."""
    lines = []
    for process in processes:
        who = "test process" if process.role == "test" else "forked process"
        if process.counted and process.peak_memory is not None:
            lines.append(f"{who} {process.pid}: {format_size(process.peak_memory)}")
        else:
            lines.append(f"{who} {process.pid}: not counted, {process.note}")
    return lines


@dataclass(frozen=True)
class RegionFigures:
    """One ``memray_region`` of a test, measured: what travels from the process that ran
    the test to the reports (and from an isolated child in its reply).

    ``total_allocations`` counts allocation events, as ``limit_allocations`` does: a
    region is captured in memray's "all" format, which keeps each one.
    """

    #: Its place among the test's regions, from 1.
    number: int
    #: Where the test opened it (the ``memray_region()`` call).
    filename: str
    lineno: int
    peak_memory: int
    total_allocations: int
    top_locations: Tuple[Location, ...]
    #: Bytes still allocated when the region ended, with ``leaks=True``; else ``None``.
    leaked_memory: Optional[int] = None
    #: Its capture file, when the user keeps them (--memray-bin-path).
    capture_file: Optional[str] = None
    #: The size histogram of its high watermark, for the MEMRAY REPORT (not in the JSON).
    histogram: str = ""

    @property
    def opened_at(self) -> str:
        """Where the test opened it, as reports name it: ``test_x.py:14``."""
        return f"{os.path.basename(self.filename)}:{self.lineno}"

    def as_dict(self) -> Dict[str, Any]:
        """Its entry in a test's ``regions`` (--memray-json), in the schema's order of keys."""
        return {
            "number": self.number,
            "filename": self.filename,
            "lineno": self.lineno,
            "peak_memory": self.peak_memory,
            "total_allocations": self.total_allocations,
            "top_locations": [asdict(location) for location in self.top_locations],
            "leaked_memory": self.leaked_memory,
            "capture_file": self.capture_file,
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any], *, histogram: str = "") -> RegionFigures:
        """The figures :meth:`as_dict` gave; the histogram, which it leaves out, apart."""
        locations = tuple(Location(**location) for location in data["top_locations"])
        return cls(**{**data, "top_locations": locations, "histogram": histogram})


#: memray's allocator kinds that release memory; every other record is an allocation.
RELEASES = frozenset({AllocatorType.FREE, AllocatorType.PYMALLOC_FREE, AllocatorType.MUNMAP})


#: Why a forked process's figures are left out.
STILL_RUNNING = "still running when the test's call ended"
UNREADABLE = "its capture file could not be read"


@dataclass(frozen=True)
class MemoryResult:
    """The figures of one tracked test, small enough to keep for the whole run."""

    nodeid: str
    peak_memory: int
    total_allocations: int
    histogram: str
    top_locations: Tuple[Location, ...]
    #: The capture file, when the user keeps them (--memray-bin-path).
    kept_file: Optional[str] = None
    #: The HTML flame graph made for this test (--memray-flamegraph).
    flamegraph: Optional[str] = None
    #: Whether the histogram and top locations were read (only for tests the report can show).
    detailed: bool = True
    #: With --memray-follow-fork, each process's figures; ``peak_memory`` and
    #: ``total_allocations`` above are then the sums over the counted ones.
    processes: Tuple[ProcessFigures, ...] = ()
    #: Kept capture files besides ``kept_file``: earlier repetitions', forked processes',
    #: regions'.
    kept_others: Tuple[str, ...] = ()
    #: How much the process's peak resident size grew during the call, or ``None`` with
    #: ``rss_unavailable`` saying why (see _tracking/resident.py).
    rss_growth: Optional[int] = None
    rss_unavailable: Optional[str] = None
    #: A test that measured regions (``memray_region``): each one's figures; ``peak_memory``
    #: and ``total_allocations`` above are then the highest of them.
    regions: Tuple[RegionFigures, ...] = ()

    def as_dict(self) -> Dict[str, Any]:
        """Plain data that survives pytest's report serialization (and so pytest-xdist)."""
        data = asdict(self)
        data["top_locations"] = [list(astuple(location)) for location in self.top_locations]
        data["kept_others"] = list(self.kept_others)
        data["regions"] = [[region.as_dict(), region.histogram] for region in self.regions]
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> MemoryResult:
        locations = tuple(Location(*location) for location in data["top_locations"])
        processes = tuple(ProcessFigures(**process) for process in data.get("processes", ()))
        others = tuple(data.get("kept_others", ()))
        regions = tuple(
            RegionFigures.from_dict(region, histogram=histogram)
            for region, histogram in data.get("regions", ())
        )
        return cls(
            **{
                **data,
                "top_locations": locations,
                "processes": processes,
                "kept_others": others,
                "regions": regions,
            }
        )


def is_own_file(filename: str) -> bool:
    """Whether code in ``filename`` is the plugin's own (its frames are not the test's)."""
    return filename.startswith(_OWN_DIRS)


def top_frame(frames: Iterable[Frame]) -> Optional[Frame]:
    """The innermost frame that is not the plugin's own, or ``None``."""
    for frame in frames:
        if not is_own_file(frame[1]):
            return frame
    return None


def frames_of_test(frames: Sequence[Frame]) -> List[Frame]:
    """The test's part of a stack (innermost first): from the innermost frame outside the
    plugin, outwards to the plugin's frame that called the test."""
    found: List[Frame] = []
    for frame in frames:
        if is_own_file(frame[1]):
            if found:
                break
            continue
        found.append(frame)
    return found


class OpenCapture:
    """One capture file open for reading; each query asked of it is run once.

    memray's reader goes through the whole file for every query. Judging a test asks
    some of the questions its figures asked already (the allocations alive at the high
    watermark), so the answers are kept for as long as the capture is open.
    """

    def __init__(self, reader: FileReader) -> None:
        self.reader = reader
        self._high_watermark: Dict[bool, List[AllocationRecord]] = {}
        self._leaked: Dict[bool, List[AllocationRecord]] = {}

    def high_watermark(self, *, merge_threads: bool) -> List[AllocationRecord]:
        """The allocations alive at the high watermark, merged over threads or per thread."""
        found = self._high_watermark.get(merge_threads)
        if found is None:
            records = self.reader.get_high_watermark_allocation_records(merge_threads=merge_threads)
            found = self._high_watermark[merge_threads] = list(records)
        return found

    def leaked(self, *, merge_threads: bool) -> List[AllocationRecord]:
        """The allocations still alive when tracking stopped, merged over threads or per thread."""
        found = self._leaked.get(merge_threads)
        if found is None:
            records = self.reader.get_leaked_allocation_records(merge_threads=merge_threads)
            found = self._leaked[merge_threads] = list(records)
        return found

    def of_main_thread(self, records: Iterable[AllocationRecord]) -> List[AllocationRecord]:
        """The records of the thread that ran the test."""
        main_thread = self.reader.metadata.main_thread_id
        return [record for record in records if record.tid == main_thread]


def high_watermark_records(capture: OpenCapture, *, current_thread_only: bool) -> List[AllocationRecord]:
    """The allocations alive at the high watermark, optionally of the test's thread only."""
    if not current_thread_only:
        return capture.high_watermark(merge_threads=True)
    return capture.of_main_thread(capture.high_watermark(merge_threads=False))


def leaked_records(capture: OpenCapture, *, current_thread_only: bool) -> List[AllocationRecord]:
    """The allocations still alive when tracking stopped, optionally of the test's thread only."""
    if not current_thread_only:
        return capture.leaked(merge_threads=True)
    return capture.of_main_thread(capture.leaked(merge_threads=False))


def places_holding_memory(capture: OpenCapture) -> int:
    """How many places (stack and thread) held memory at the high watermark or at the end.

    That is what an aggregated capture counts as its allocations (memray writes one
    record per such place), read here from a capture of every allocation, so that a
    test's figure does not depend on the format its capture was written in.
    """
    places: Set[Tuple[int, int, int, int]] = set()
    for records in (capture.high_watermark(merge_threads=False), capture.leaked(merge_threads=False)):
        places.update(
            (record.tid, record.stack_id, record.native_stack_id, record.native_segment_generation)
            for record in records
        )
    return len(places)


def histogram(sizes: Sequence[int], bins: int = _HISTOGRAM_BINS) -> str:
    """A one-line bar chart of allocation sizes on a log scale, as pytest-memray draws it.

    Bins are equal steps between the smallest and largest log-size; the largest value
    falls past the last bin and is not drawn, which keeps the bars identical to
    pytest-memray's for the same data.
    """
    if not sizes:
        return ""
    bins = min(len(sizes), bins)
    logs = [math.log(size) if size else 0.0 for size in sizes]
    low, high = min(logs), max(logs)
    step = ((high - low) / bins) or low or 1
    counts = [0] * bins
    for value in logs:
        index = int((value - low) // step)
        if 0 <= index < bins:
            counts[index] += 1
    tallest = max(counts) or 1
    return "".join(_BARS[count * (len(_BARS) - 1) // tallest] for count in counts)


def _top_locations(records: Sequence[AllocationRecord]) -> Tuple[Location, ...]:
    found: List[Location] = []
    for record in sorted(records, key=lambda record: record.size, reverse=True):
        try:
            frame = top_frame(record.stack_trace())
        except NotImplementedError:  # memray keeps no stack for some records
            continue
        if frame is None:
            continue
        function, filename, lineno = frame
        found.append(Location(function, filename, lineno, record.size))
        if len(found) == _TOP_LOCATIONS:
            break
    return tuple(found)


def _forked_figures(
    stack: ExitStack, forked: Sequence[Tuple[int, Path]], running: AbstractSet[int], kept: bool
) -> Tuple[List[ProcessFigures], List[OpenCapture]]:
    """Figures of each forked process, and the open captures of the counted ones."""
    figures: List[ProcessFigures] = []
    captures: List[OpenCapture] = []
    for pid, path in forked:
        kept_file = str(path) if kept else None
        if pid in running:
            figures.append(ProcessFigures(pid, "forked", None, None, False, STILL_RUNNING, kept_file))
            continue
        try:
            reader = stack.enter_context(FileReader(path))
        except OSError:
            figures.append(ProcessFigures(pid, "forked", None, None, False, UNREADABLE, kept_file))
            continue
        metadata = reader.metadata
        figures.append(
            ProcessFigures(
                pid, "forked", metadata.peak_memory, metadata.total_allocations, capture_file=kept_file
            )
        )
        captures.append(OpenCapture(reader))
    return figures, captures


@dataclass(frozen=True)
class CallCaptures:
    """The capture files of one tracked call, open: the test's own and, following forks, those
    of the forked processes that count (listed after it in ``counted``)."""

    path: Path
    test: OpenCapture
    counted: Tuple[OpenCapture, ...]
    #: With --memray-follow-fork, each process's figures (the test's first); else empty.
    processes: Tuple[ProcessFigures, ...]
    #: Whether the user keeps the capture files (--memray-bin-path).
    kept: bool


def open_captures(
    stack: ExitStack,
    path: Path,
    *,
    kept: bool = False,
    forked: Optional[Sequence[Tuple[int, Path]]] = None,
    running: AbstractSet[int] = frozenset(),
) -> CallCaptures:
    """Open a test's capture, and with ``forked`` (pid and capture of each process the test
    forked, --memray-follow-fork) those of the forked processes that had ended (those in
    ``running`` had not); they stay open until ``stack`` closes.

    Raises ``OSError`` when the test's own capture cannot be read.
    """
    test = OpenCapture(stack.enter_context(FileReader(path)))
    if forked is None:
        return CallCaptures(path, test, (test,), (), kept)
    metadata = test.reader.metadata
    own = ProcessFigures(
        metadata.pid,
        "test",
        metadata.peak_memory,
        metadata.total_allocations,
        capture_file=str(path) if kept else None,
    )
    others, other_captures = _forked_figures(stack, forked, running, kept)
    return CallCaptures(path, test, (test, *other_captures), (own, *others), kept)


def figures(
    captures: CallCaptures,
    nodeid: str,
    *,
    wanted: Callable[[int], bool] = lambda peak: True,
    count_places: bool = False,
) -> MemoryResult:
    """Summarise a test's open captures: peak, allocation count, and, when ``wanted(peak)``,
    the size histogram and top locations (the costly part, skipped for tests the report
    will not show).

    Following forks, the figures are sums over the processes that count, and each
    process's own figures are kept too.

    With ``count_places`` the allocation count of a capture of every allocation is the
    one its aggregated capture would have given (see ``places_holding_memory``).
    """
    metadata = captures.test.reader.metadata
    processes = captures.processes
    counted = [process for process in processes if process.counted]
    peak = sum(process.peak_memory or 0 for process in counted) if processes else metadata.peak_memory
    if processes:
        total = sum(process.total_allocations or 0 for process in counted)
    elif count_places:
        total = places_holding_memory(captures.test)
    else:
        total = metadata.total_allocations
    detailed = wanted(peak)
    records: List[AllocationRecord] = []
    top_locations: Tuple[Location, ...] = ()
    if detailed:
        for each in captures.counted:
            records += each.high_watermark(merge_threads=True)
        # Stack traces are looked up through the open readers.
        top_locations = _top_locations(records)
    return MemoryResult(
        nodeid=nodeid,
        peak_memory=peak,
        total_allocations=total,
        histogram=histogram([record.size for record in records]),
        top_locations=top_locations,
        kept_file=str(captures.path) if captures.kept else None,
        detailed=detailed,
        processes=processes,
        kept_others=tuple(process.capture_file for process in processes[1:] if process.capture_file),
    )


def read_capture(
    path: Path,
    nodeid: str,
    *,
    kept: bool = False,
    wanted: Callable[[int], bool] = lambda peak: True,
    forked: Optional[Sequence[Tuple[int, Path]]] = None,
    running: AbstractSet[int] = frozenset(),
    count_places: bool = False,
) -> MemoryResult:
    """The figures of a test's capture (see ``open_captures`` and ``figures``), read at once.

    For what only needs the figures; judging a test reads its open captures further.
    """
    with ExitStack() as stack:
        captures = open_captures(stack, path, kept=kept, forked=forked, running=running)
        return figures(captures, nodeid, wanted=wanted, count_places=count_places)


def read_region(path: Path, number: int, filename: str, lineno: int, *, leaks: bool) -> RegionFigures:
    """The figures of one region's capture (memray's "all" format), read where the region
    ran, as soon as its Tracker stopped: the test reads them right after its ``with``.

    Every record is read once to count the allocation events (about a microsecond each).
    """
    with FileReader(path) as reader:
        capture = OpenCapture(reader)
        records = capture.high_watermark(merge_threads=True)
        made = sum(1 for record in reader.get_allocation_records() if record.allocator not in RELEASES)
        leaked = sum(record.size for record in capture.leaked(merge_threads=True)) if leaks else None
        peak = reader.metadata.peak_memory
        # Stack traces are looked up through the open reader.
        top_locations = _top_locations(records)
    return RegionFigures(
        number=number,
        filename=filename,
        lineno=lineno,
        peak_memory=peak,
        total_allocations=made,
        top_locations=top_locations,
        leaked_memory=leaked,
        histogram=histogram([record.size for record in records]),
    )
