"""Applying limits to a test's capture: a verdict with the failure message and report section.

Messages and section names are pytest-memray's, so reports read the same.
"""

from __future__ import annotations

import traceback
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

from memray import AllocationRecord, AllocatorType

from .._options import Tolerance
from .._plan import AllocationLimit, LeakedObjectsCheck, LeakLimit, MemoryLimit, RssLimit
from .._sizes import format_size
from .._stacks import Stack, StackFrame
from .._tracking.resident import Resident
from .capture import Frame, ProcessFigures, frames_of_test, process_lines, top_frame

__all__ = [
    "FilterFailed",
    "GrowingLeak",
    "Verdict",
    "allocation_lines",
    "check_allocations",
    "check_growing_leaks",
    "check_increase",
    "check_leaked_objects",
    "check_leaks",
    "check_memory_limit",
    "check_rss",
    "counted_leaks",
    "growing_leaks",
    "leaks_by_place",
]

_INDENT = " " * 4
#: At verbosity 0 and 1 the failure section lists this many of the biggest allocations.
_LISTED_AT_DEFAULT_VERBOSITY = 10
#: Leak reports show at least this many frames, to tell one leak's origin from another's.
_LEAK_STACKS = 5
_OBJECT_TYPES_SHOWN = 10
_OBJECTS_SHOWN = 10
_REPR_LENGTH = 100


@dataclass(frozen=True)
class Verdict:
    """Why a test failed a memory check: the failure message and a report section."""

    message: str
    section: Optional[Tuple[str, str]]


class FilterFailed(Exception):
    """A user's ``filter_fn`` raised: its test fails with :attr:`verdict`, the session goes on."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.message)
        self.verdict = verdict


def _kept(marker: str, filter_fn: Callable[[Any], bool], value: object) -> bool:
    """Whether ``filter_fn`` keeps ``value``; what it raises becomes a :class:`FilterFailed`.

    The filter is the user's code, run while pytest builds the report: left alone, its
    exception would abort the whole session.
    """
    try:
        return bool(filter_fn(value))
    except Exception as error:
        name = getattr(filter_fn, "__qualname__", None) or repr(filter_fn)
        message = f"{marker}' filter_fn {name} raised {type(error).__name__}: {error}"
        # The filter's own frames, from the call into it.
        tb = error.__traceback__.tb_next if error.__traceback__ is not None else None
        text = "".join(traceback.format_exception(type(error), error, tb)).rstrip()
        section = "memray-tracked-objects" if marker == "limit_leaked_objects" else "memray-leaked-memory"
        raise FilterFailed(Verdict(message, (section, text))) from error


def _visible_frames(frames: Sequence[Frame]) -> List[Frame]:
    """The stack from the innermost frame that is not the plugin's own, outwards."""
    first = top_frame(frames)
    return [] if first is None else list(frames[frames.index(first) :])


def allocation_lines(records: Iterable[AllocationRecord], *, stacks: int, native: bool) -> List[str]:
    """One entry per allocation: its size, then up to ``stacks`` frames of its stack."""
    lines: List[str] = []
    for record in records:
        frames = _visible_frames(record.hybrid_stack_trace() if native else record.stack_trace())
        if not frames:
            continue
        lines.append(f"{_INDENT}- {format_size(record.size)} allocated here:")
        for function, filename, lineno in frames[:stacks]:
            lines.append(f"{_INDENT * 2}{function}:{filename}:{lineno}")
        if len(frames) > stacks:
            lines.append(f"{_INDENT * 2}...")
    return lines


def check_memory_limit(
    records: Sequence[AllocationRecord],
    limit: MemoryLimit,
    *,
    verbosity: int,
    stacks: int = 1,
    native: bool = False,
    processes: Sequence[ProcessFigures] = (),
) -> Optional[Verdict]:
    """Fail when the allocations alive at the high watermark add up to the limit or more.

    ``records`` may come from several processes (--memray-follow-fork): each counted
    process's high watermark. ``processes`` then gives each process's figures.
    """
    allocated = sum(record.size for record in records)
    if allocated < limit.limit:
        return None
    message = f"Test was limited to {format_size(limit.limit)} but allocated {format_size(allocated)}"
    counted = sum(1 for process in processes if process.counted)
    if counted > 1:
        message += f" (the sum of {counted} processes' peaks)"
    if verbosity < 0:
        return Verdict(message, None)
    if verbosity >= 2:
        listed: Sequence[AllocationRecord] = records
    else:
        listed = sorted(records, key=lambda record: record.size, reverse=True)[:_LISTED_AT_DEFAULT_VERBOSITY]
    body = "\n".join(allocation_lines(listed, stacks=stacks, native=native))
    if len(records) > len(listed):
        body += f"\n    ...and {len(records) - len(listed)} more"
    if processes:
        body += "\nPeak of each process:\n" + "\n".join(
            f"{_INDENT}- {line}" for line in process_lines(processes)
        )
    return Verdict(message, ("memray-max-memory", "List of allocations:\n" + body))


#: memray's allocator kinds that release memory; every other record is an allocation.
_RELEASES = frozenset({AllocatorType.FREE, AllocatorType.PYMALLOC_FREE, AllocatorType.MUNMAP})
_ALLOCATION_PLACES_SHOWN = 10


def check_allocations(records: Iterable[AllocationRecord], limit: AllocationLimit) -> Optional[Verdict]:
    """Fail when the call made more allocations than the limit; list the places making most.

    ``records`` are every event of a capture in the "all" format, one record each.
    """
    places: Counter[Frame] = Counter()
    made = 0
    for record in records:
        if record.allocator in _RELEASES:
            continue
        made += 1
        try:
            place = top_frame(record.stack_trace())
        except NotImplementedError:
            place = None
        places[place or ("???", "???", 0)] += 1
    if made <= limit.count:
        return None
    lines = [
        f"{_INDENT}- {count} allocations at {function}:{filename}:{lineno}"
        for (function, filename, lineno), count in places.most_common(_ALLOCATION_PLACES_SHOWN)
    ]
    message = f"Test was limited to {limit.count} allocations but made {made}"
    return Verdict(message, ("memray-allocations", "Places making most allocations:\n" + "\n".join(lines)))


def check_rss(
    nodeid: str, resident: Resident, limit: RssLimit, *, heap_peak: Optional[int] = None
) -> Optional[Verdict]:
    """Fail when the process's peak resident size grew by the limit or more during the call.

    Without a figure (not Linux, ``/proc/self/clear_refs`` not writable) the test fails
    too, saying why: a limit that cannot be checked must not pass as kept. That failure is
    not a memory problem, so it has no memray section.
    """
    start, peak = resident.start, resident.peak
    limit_text = format_size(limit.limit)
    if start is None or peak is None:
        return Verdict(
            f"Test {nodeid} was limited to {limit_text} of resident memory growth,"
            f" but the growth is {resident.description}",
            None,
        )
    growth = max(0, peak - start)
    if growth < limit.limit:
        return None
    message = f"Test {nodeid} was limited to {limit_text} of resident memory growth but grew by {format_size(growth)}"
    lines = [f"Peak resident size during the call: {format_size(peak)} (at its start: {format_size(start)})"]
    if heap_peak is not None:
        lines.append(f"memray's peak of the call's allocations: {format_size(heap_peak)}")
    return Verdict(message, ("memray-resident-memory", "\n".join(lines)))


def check_increase(allocated: int, previous: Optional[int], tolerance: Tolerance) -> Optional[Verdict]:
    """Fail when a test uses more than its last passing run, beyond the tolerance."""
    if previous is None or allocated <= tolerance.allowance(previous):
        return None
    # pytest-memray's message, word for word, when no tolerance was given.
    message = f"Test previously used {format_size(previous)} but now uses {format_size(allocated)}"
    if tolerance.text != "none":
        message += f" (tolerance {tolerance.text})"
    return Verdict(message, ("memray-max-memory", "Test uses more memory than previous run"))


def _stack(frames: Iterable[Frame]) -> Stack:
    return Stack(tuple(StackFrame(function, filename, lineno) for function, filename, lineno in frames))


def counted_leaks(records: Sequence[AllocationRecord], limit: LeakLimit) -> List[AllocationRecord]:
    """The leaks that count: at or over the per-location limit, and kept by ``filter_fn``.

    ``filter_fn`` sees each leak's hybrid (Python and native) stack and returns whether it counts;
    if it raises, :class:`FilterFailed`.
    """
    return [
        record for record in records if record.size >= limit.limit and _kept_by_leaks_filter(record, limit)
    ]


def _kept_by_leaks_filter(record: AllocationRecord, limit: LeakLimit) -> bool:
    filter_fn = limit.filter_fn
    return filter_fn is None or _kept("limit_leaks", filter_fn, _stack(record.hybrid_stack_trace()))


def check_leaks(leaked: Sequence[AllocationRecord], limit: LeakLimit, *, stacks: int) -> Optional[Verdict]:
    """Fail when any leak counts (see ``counted_leaks``)."""
    if not leaked:
        return None
    message = f"Test was allowed to leak {format_size(limit.limit)} per location but at least one location leaked more"
    body = "\n".join(allocation_lines(leaked, stacks=max(stacks, _LEAK_STACKS), native=True))
    return Verdict(message, ("memray-leaked-memory", "List of leaked allocations:\n" + body))


#: A place leaks are told apart by across repetitions: its Python stack, innermost first.
#: (Native frames are left out: the interpreter takes other C paths once it has
#: specialised the test's code, so the same line would look like another place.)
Place = Tuple[Frame, ...]


@dataclass(frozen=True)
class GrowingLeak:
    """A place whose leaks reached the limit on every tracked repetition."""

    place: Place
    #: Bytes leaked there on each tracked repetition, in order.
    growth: Tuple[int, ...]


def leaks_by_place(records: Iterable[AllocationRecord], limit: LeakLimit) -> Counter[Place]:
    """Bytes leaked by one repetition, per place, of the leaks ``filter_fn`` keeps
    (:class:`FilterFailed` if it raises)."""
    sizes: Counter[Place] = Counter()
    for record in records:
        if not _kept_by_leaks_filter(record, limit):
            continue
        try:
            place: Place = tuple(record.stack_trace())
        except NotImplementedError:  # memray keeps no stack for some records
            place = ()
        sizes[place] += record.size
    return sizes


def growing_leaks(repetitions: Sequence[Counter[Place]], limit: LeakLimit) -> List[GrowingLeak]:
    """The places that leaked the limit or more on every repetition, steadiest growth first.

    Memory kept by a warm-up (a cache filled on first use) or kept once along the way
    (a table that grew) does not grow on every repetition, so it does not count.
    """
    if not repetitions:
        return []
    found = [
        GrowingLeak(place, tuple(sizes[place] for sizes in repetitions))
        for place in repetitions[0]
        if all(sizes[place] >= limit.limit for sizes in repetitions)
    ]
    return sorted(found, key=lambda leak: min(leak.growth), reverse=True)


def check_growing_leaks(leaks: Sequence[GrowingLeak], limit: LeakLimit, *, stacks: int) -> Optional[Verdict]:
    """Fail when a place leaked the limit or more on every tracked repetition; show each one's growth."""
    if not leaks:
        return None
    warmups = f"{limit.warmups} warm-up call{'s' if limit.warmups != 1 else ''}"
    places = f"{len(leaks)} location{'s' if len(leaks) != 1 else ''}"
    every = (
        f"every one of its {limit.repeats} tracked repetitions" if limit.repeats > 1 else "its tracked call"
    )
    message = (
        f"Test was allowed to leak {format_size(limit.limit)} per location on each repetition but {places}"
        f" leaked that much or more on {every} (after {warmups})"
    )
    numbers = ", ".join(str(number) for number in range(1, limit.repeats + 1))
    lines = [f"Locations whose leaks grew on every repetition (leaked on repetitions {numbers}):"]
    shown = max(stacks, _LEAK_STACKS)
    for leak in leaks:
        frames = frames_of_test(leak.place) or list(leak.place)
        growth = ", ".join(format_size(size) for size in leak.growth)
        lines.append(f"{_INDENT}- {growth} leaked here:")
        lines += [
            f"{_INDENT * 2}{function}:{filename}:{lineno}" for function, filename, lineno in frames[:shown]
        ]
        if len(frames) > shown:
            lines.append(f"{_INDENT * 2}...")
    return Verdict(message, ("memray-leaked-memory", "\n".join(lines)))


def _short_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception:
        text = "<repr failed>"
    return text if len(text) <= _REPR_LENGTH else text[: _REPR_LENGTH - 3] + "..."


def check_leaked_objects(survivors: Sequence[object], check: LeakedObjectsCheck) -> Optional[Verdict]:
    """Fail when objects created during the test are still alive after it (and pass the filter);
    a filter that raises fails the test, naming it."""
    filter_fn = check.filter_fn
    try:
        leaked = [
            obj for obj in survivors if filter_fn is None or _kept("limit_leaked_objects", filter_fn, obj)
        ]
    except FilterFailed as failed:
        return failed.verdict
    if not leaked:
        return None
    types = Counter(type(obj).__name__ for obj in leaked)
    common = types.most_common(_OBJECT_TYPES_SHOWN)
    width = max(len(str(count)) for _, count in common)
    lines = [f"{_INDENT}Object types that leaked (total: {len(leaked)} objects):"]
    lines += [f"{_INDENT * 2}- {count:>{width}} {name} instance(s)" for name, count in common]
    if len(types) > _OBJECT_TYPES_SHOWN:
        lines.append(f"{_INDENT * 2}... and {len(types) - _OBJECT_TYPES_SHOWN} more types")
    lines.append(f"\n{_INDENT}Sample of leaked objects:")
    lines += [f"{_INDENT * 2}- {type(obj).__name__}: {_short_repr(obj)}" for obj in leaked[:_OBJECTS_SHOWN]]
    if len(leaked) > _OBJECTS_SHOWN:
        lines.append(f"{_INDENT * 2}... and {len(leaked) - _OBJECTS_SHOWN} more")
    return Verdict(
        f"Test leaked {len(leaked)} objects",
        ("memray-tracked-objects", "List of leaked objects:\n" + "\n".join(lines)),
    )
