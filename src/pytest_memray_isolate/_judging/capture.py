"""Reading one test's memray capture file into the figures the plugin reports."""

from __future__ import annotations

import math
import os
from contextlib import ExitStack
from dataclasses import asdict, astuple, dataclass
from pathlib import Path
from typing import AbstractSet, Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from memray import AllocationRecord, FileReader

from .._sizes import format_size

__all__ = [
    "STILL_RUNNING",
    "UNREADABLE",
    "Location",
    "MemoryResult",
    "ProcessFigures",
    "frames_of_test",
    "high_watermark_records",
    "is_own_file",
    "leaked_records",
    "process_lines",
    "read_capture",
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
    #: Kept capture files besides ``kept_file``: earlier repetitions' and forked processes'.
    kept_others: Tuple[str, ...] = ()

    def as_dict(self) -> Dict[str, Any]:
        """Plain data that survives pytest's report serialization (and so pytest-xdist)."""
        data = asdict(self)
        data["top_locations"] = [list(astuple(location)) for location in self.top_locations]
        data["kept_others"] = list(self.kept_others)
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> MemoryResult:
        locations = tuple(Location(*location) for location in data["top_locations"])
        processes = tuple(ProcessFigures(**process) for process in data.get("processes", ()))
        others = tuple(data.get("kept_others", ()))
        return cls(**{**data, "top_locations": locations, "processes": processes, "kept_others": others})


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


def _of_thread(
    reader: FileReader, records: Iterable[AllocationRecord], current_thread_only: bool
) -> List[AllocationRecord]:
    if not current_thread_only:
        return list(records)
    main_thread = reader.metadata.main_thread_id
    return [record for record in records if record.tid == main_thread]


def high_watermark_records(reader: FileReader, *, current_thread_only: bool) -> List[AllocationRecord]:
    """The allocations alive at the high watermark, optionally of the test's thread only."""
    records = reader.get_high_watermark_allocation_records(merge_threads=not current_thread_only)
    return _of_thread(reader, records, current_thread_only)


def leaked_records(reader: FileReader, *, current_thread_only: bool) -> List[AllocationRecord]:
    """The allocations still alive when tracking stopped, optionally of the test's thread only."""
    records = reader.get_leaked_allocation_records(merge_threads=not current_thread_only)
    return _of_thread(reader, records, current_thread_only)


def places_holding_memory(reader: FileReader) -> int:
    """How many places (stack and thread) held memory at the high watermark or at the end.

    That is what an aggregated capture counts as its allocations (memray writes one
    record per such place), read here from a capture of every allocation, so that a
    test's figure does not depend on the format its capture was written in.
    """
    places: Set[Tuple[int, int, int, int]] = set()
    for records in (
        reader.get_high_watermark_allocation_records(merge_threads=False),
        reader.get_leaked_allocation_records(merge_threads=False),
    ):
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
) -> Tuple[List[ProcessFigures], List[FileReader]]:
    """Figures of each forked process, and open readers of the counted ones' captures."""
    figures: List[ProcessFigures] = []
    readers: List[FileReader] = []
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
        readers.append(reader)
    return figures, readers


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
    """Summarise a capture file: peak, allocation count, and, when ``wanted(peak)``, the
    size histogram and top locations (the costly part, skipped for tests the report
    will not show).

    With ``forked`` (pid and capture of each process the test forked, --memray-follow-fork)
    the figures are sums over the test's process and the forked ones that had ended
    (those in ``running`` had not), and each process's own figures are kept too.

    With ``count_places`` the allocation count of a capture of every allocation is the
    one its aggregated capture would have given (see ``places_holding_memory``).
    """
    with ExitStack() as stack:
        reader = stack.enter_context(FileReader(path))
        metadata = reader.metadata
        processes: List[ProcessFigures] = []
        readers = [reader]
        if forked is not None:
            own = ProcessFigures(
                metadata.pid,
                "test",
                metadata.peak_memory,
                metadata.total_allocations,
                capture_file=str(path) if kept else None,
            )
            others, other_readers = _forked_figures(stack, forked, running, kept)
            processes = [own, *others]
            readers += other_readers
        counted = [process for process in processes if process.counted]
        peak = sum(process.peak_memory or 0 for process in counted) if processes else metadata.peak_memory
        if processes:
            total = sum(process.total_allocations or 0 for process in counted)
        elif count_places:
            total = places_holding_memory(reader)
        else:
            total = metadata.total_allocations
        detailed = wanted(peak)
        records: List[AllocationRecord] = []
        top_locations: Tuple[Location, ...] = ()
        if detailed:
            for each in readers:
                records += each.get_high_watermark_allocation_records(merge_threads=True)
            # Stack traces are looked up through the open readers.
            top_locations = _top_locations(records)
    return MemoryResult(
        nodeid=nodeid,
        peak_memory=peak,
        total_allocations=total,
        histogram=histogram([record.size for record in records]),
        top_locations=top_locations,
        kept_file=str(path) if kept else None,
        detailed=detailed,
        processes=tuple(processes),
        kept_others=tuple(process.capture_file for process in processes[1:] if process.capture_file),
    )
