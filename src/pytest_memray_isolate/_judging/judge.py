"""Judging one tracked test in one step: its figures and its verdict, from its capture files.

The step only reads: the capture files, and what the run handed it in a
:class:`JudgeContext`. What it found comes back as a :class:`Judgement`, which the parent
applies to the test's report and to pytest's cache. Each capture is opened once, and each
question asked of it (the allocations alive at the high watermark, those leaked) is
answered once, for the figures and the limits alike (see ``capture.OpenCapture``).
"""

from __future__ import annotations

import heapq
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from memray import AllocationRecord, FileReader

from .._capture_files import forked_captures, region_capture
from .._isolation.messages import Job
from .._options import Tolerance
from .._plan import LeakLimit, MemoryLimit, TrackingPlan
from .._tracking.follow_fork import still_running
from .._tracking.window import quiet_memray
from .capture import (
    CallCaptures,
    MemoryResult,
    OpenCapture,
    RegionFigures,
    figures,
    leaked_records,
    open_captures,
    top_frame,
)
from .limits import (
    FilterFailed,
    GrowingLeak,
    Verdict,
    check_allocations,
    check_growing_leaks,
    check_increase,
    check_leaks,
    check_memory_limit,
    check_rss,
    counted_leaks,
    growing_leaks,
    leaks_by_place,
)

__all__ = ["CountedLeak", "JudgeContext", "Judgement", "TopPeaks", "judge"]

#: Where a leak's innermost frame outside the plugin is, when memray kept none.
_UNKNOWN_FRAME = ("???", "???", 0)


@dataclass(frozen=True)
class CountedLeak:
    """A leak that counted against a limit_leaks marker, for reports (--memray-json)."""

    #: Bytes leaked there (on the last tracked repetition, when the test was repeated).
    size: int
    #: Its innermost Python frame outside the plugin.
    function: str
    filename: str
    lineno: int
    #: Bytes leaked there on each tracked repetition, in order (one number if not repeated).
    growth: Tuple[int, ...]

    @classmethod
    def of_record(cls, record: AllocationRecord) -> CountedLeak:
        """A leak of a test called once: one allocation still alive at its end."""
        function, filename, lineno = top_frame(record.stack_trace()) or _UNKNOWN_FRAME
        return cls(record.size, function, filename, lineno, (record.size,))

    @classmethod
    def of_growing(cls, leak: GrowingLeak) -> CountedLeak:
        """A place whose leaks grew on every repetition of a repeated test."""
        function, filename, lineno = top_frame(leak.place) or _UNKNOWN_FRAME
        return cls(leak.growth[-1], function, filename, lineno, leak.growth)


@dataclass(frozen=True)
class JudgeContext:
    """What judging a test needs from the run, besides the test's plan and job."""

    #: Frames of each allocation's stack shown in failure reports (--stacks).
    stacks: int
    #: How much a limit_memory failure lists (pytest's verbosity, or the plugin's own setting).
    verbosity: int
    #: Whether the user keeps the capture files (--memray-bin-path).
    keep_captures: bool
    #: Whether the MEMRAY REPORT may show a test of this peak (see :class:`TopPeaks`): only
    #: then are the histogram and top locations read.
    wanted: Callable[[int], bool] = lambda peak: True
    #: --fail-on-increase's tolerance, if given.
    fail_on_increase: Optional[Tolerance] = None
    #: What the test allocated at its high watermark on its last passing run (pytest's cache).
    previous_allocated: Optional[int] = None


@dataclass(frozen=True)
class Judgement:
    """What judging a test found; applying it is the caller's part."""

    #: The test's figures, or ``None`` when its capture could not be read (a child that
    #: died before its Tracker wrote anything): the test's own outcome says why.
    result: Optional[MemoryResult]
    #: Why the test fails a memory check, or ``None``.
    verdict: Optional[Verdict] = None
    #: For a limit_leaks test that passed on its own: the leaks that counted against the limit.
    leaks: Optional[Tuple[CountedLeak, ...]] = None
    #: For a limit_memory test that passed it (and --fail-on-increase): what it allocated at
    #: its high watermark, to record in pytest's cache for the next run to compare with.
    allocated: Optional[int] = None
    #: For a test that measured regions (``memray_region``): each one's figures (a child
    #: that died: those it measured before, and the one it died in); ``None`` for other tests.
    regions: Optional[Tuple[RegionFigures, ...]] = None
    #: The capture a flame graph shows, when it is not the test's own (its highest region's).
    graphed: Optional[Path] = None


class TopPeaks:
    """Which tests the MEMRAY REPORT may show: the ``size`` highest peaks seen so far.

    A test whose peak is below the ``size`` highest seen in this process can never be in
    the report (under pytest-xdist neither, since the report's tests are each among their
    worker's highest), so its histogram and top locations are not read.
    """

    def __init__(self, size: Optional[int]) -> None:
        self._size = size
        self._peaks: List[int] = []

    def wanted(self, peak: int) -> bool:
        if self._size is None:
            return True
        if len(self._peaks) < self._size:
            heapq.heappush(self._peaks, peak)
            return True
        if peak > self._peaks[0]:
            heapq.heapreplace(self._peaks, peak)
            return True
        return False


def judge(plan: TrackingPlan, job: Job, *, passed: bool, context: JudgeContext) -> Judgement:
    """Read the test's captures into its figures and, if it ``passed`` on its own, apply its limits.

    Limits judge only tests that passed on their own, as pytest-memray's do. The resident
    limit looks at no capture: it judges a test that measured regions as any other.
    """
    if job.spec.regions:
        judgement = _judge_regions(plan, job, passed=passed, context=context)
    else:
        judgement = _judge_capture(plan, job, passed=passed, context=context)
    if passed and judgement.verdict is None and plan.rss is not None and judgement.result is not None:
        verdict = check_rss(job.nodeid, job.resident, plan.rss, heap_peak=judgement.result.peak_memory)
        judgement = replace(judgement, verdict=verdict)
    return judgement


def _judge_capture(plan: TrackingPlan, job: Job, *, passed: bool, context: JudgeContext) -> Judgement:
    """A test tracked around its whole call: its figures and memory limits from its capture."""
    # A child that died during the call may have left a torn last record.
    torn = job.window_marker is not None and not job.window_closed
    with quiet_memray() if torn else nullcontext(), ExitStack() as stack:
        follow = plan.tracker.follow_fork
        try:
            captures = open_captures(
                stack,
                job.capture,
                kept=context.keep_captures,
                forked=forked_captures(job.capture) if follow else None,
                running=still_running(job.spec) if follow else frozenset(),
            )
            result = figures(
                captures,
                job.nodeid,
                wanted=context.wanted,
                count_places=job.tracker.ends_open and not job.tracker.all_allocations,
            )
        except OSError:
            # No readable capture: a child that died before its Tracker finished.
            return Judgement(None)
        if context.keep_captures and job.repeats > 1:
            earlier = [str(path) for path in job.repetition_captures()[:-1] if path.exists()]
            result = replace(result, kept_others=(*earlier, *result.kept_others))
        if not passed:
            return Judgement(result)
        try:
            judgement = _memory_judgement(plan, job, captures, result, context)
        except FilterFailed as failed:  # the user's filter_fn: its test fails, not the session
            return Judgement(result, failed.verdict)
        if judgement.verdict is None and plan.allocations is not None:
            records = captures.test.reader.get_allocation_records()
            judgement = replace(judgement, verdict=check_allocations(records, plan.allocations))
        return judgement


def _memory_judgement(
    plan: TrackingPlan, job: Job, captures: CallCaptures, result: MemoryResult, context: JudgeContext
) -> Judgement:
    """The verdict of the test's one memory limit (limit_memory, limit_leaks or
    limit_leaked_objects), with what it found along the way."""
    if plan.memory is not None:
        return _memory_limit(plan.memory, captures, result, context, native=plan.tracker.native_traces)
    if plan.leaks is not None and plan.leaks.repeated:
        return _growing_leaks(plan.leaks, job, captures.test, result, context)
    if plan.leaks is not None:
        leaks = leaked_records(captures.test, current_thread_only=plan.leaks.current_thread_only)
        counted = counted_leaks(leaks, plan.leaks)
        verdict = check_leaks(counted, plan.leaks, stacks=context.stacks)
        return Judgement(result, verdict, leaks=tuple(CountedLeak.of_record(record) for record in counted))
    if plan.objects is not None:
        return Judgement(result, job.objects_verdict)
    return Judgement(result)


def _memory_limit(
    limit: MemoryLimit, captures: CallCaptures, result: MemoryResult, context: JudgeContext, *, native: bool
) -> Judgement:
    """limit_memory over the counted processes' high watermarks, then --fail-on-increase."""
    records: List[AllocationRecord] = []
    for capture in captures.counted:
        if limit.current_thread_only:
            # Another query on the same open reader: the test's thread's own high
            # watermark, which is not the one of all threads merged that the figures read.
            records += capture.of_main_thread(capture.high_watermark(merge_threads=False))
        else:
            # The records the figures read (top locations, histogram): read once.
            records += capture.high_watermark(merge_threads=True)
    verdict = check_memory_limit(
        records,
        limit,
        verbosity=context.verbosity,
        stacks=context.stacks,
        native=native,
        processes=result.processes,
    )
    if verdict is not None:
        return Judgement(result, verdict)
    allocated = sum(record.size for record in records)
    tolerance = context.fail_on_increase
    if tolerance is not None:
        verdict = check_increase(allocated, context.previous_allocated, tolerance)
        if verdict is not None:
            return Judgement(result, verdict)
    return Judgement(result, allocated=allocated)


def _growing_leaks(
    limit: LeakLimit, job: Job, last: OpenCapture, result: MemoryResult, context: JudgeContext
) -> Judgement:
    """limit_leaks of a repeated test: the places whose leaks grew on every tracked repetition.

    The last repetition's capture is the test's own, open already; each earlier one is
    opened once, and closed before the next.
    """
    repetitions = []
    *earlier, _ = job.repetition_captures()
    for path in earlier:
        with FileReader(path) as reader:
            leaks = leaked_records(OpenCapture(reader), current_thread_only=limit.current_thread_only)
            repetitions.append(leaks_by_place(leaks, limit))
    leaks = leaked_records(last, current_thread_only=limit.current_thread_only)
    repetitions.append(leaks_by_place(leaks, limit))
    growing = growing_leaks(repetitions, limit)
    verdict = check_growing_leaks(growing, limit, stacks=context.stacks)
    return Judgement(result, verdict, leaks=tuple(CountedLeak.of_growing(leak) for leak in growing))


def _judge_regions(plan: TrackingPlan, job: Job, *, passed: bool, context: JudgeContext) -> Judgement:
    """A test tracked only inside its regions: its figures are the highest region's, and
    each limit applies to the region highest in what the limit looks at.

    The regions' figures were read where the test ran (it asserted on them); only a test
    with a limit has its regions' captures opened again here, highest peak first, and the
    first region that fails a limit gives the verdict, naming the region.
    """
    regions = job.regions
    if not regions:
        return Judgement(None, regions=regions)
    if context.keep_captures:
        regions = tuple(
            replace(region, capture_file=str(region_capture(job.capture, region.number)))
            for region in regions
        )
    by_peak = sorted(regions, key=lambda region: region.peak_memory, reverse=True)
    highest = by_peak[0]
    result = MemoryResult(
        nodeid=job.nodeid,
        peak_memory=highest.peak_memory,
        total_allocations=max(region.total_allocations for region in regions),
        histogram=highest.histogram,
        top_locations=highest.top_locations,
        detailed=context.wanted(highest.peak_memory),
        kept_others=tuple(region.capture_file for region in regions if region.capture_file),
        regions=regions,
    )
    graphed = region_capture(job.capture, highest.number)
    if not passed or not (plan.memory or plan.leaks or plan.allocations):
        return Judgement(result, regions=regions, graphed=graphed)
    allocated: Optional[int] = None
    for region in by_peak:
        path = region_capture(job.capture, region.number)
        with ExitStack() as stack:
            try:
                captures = open_captures(stack, path)
                judgement = _memory_judgement(plan, job, captures, result, context)
                if judgement.verdict is None and plan.allocations is not None:
                    records = captures.test.reader.get_allocation_records()
                    judgement = replace(judgement, verdict=check_allocations(records, plan.allocations))
            except FilterFailed as failed:  # the user's filter_fn: its test fails, not the session
                judgement = Judgement(result, failed.verdict)
        if allocated is None:
            allocated = judgement.allocated  # the highest region's, for --fail-on-increase
        verdict = judgement.verdict
        if verdict is not None:
            where = f"memray_region {region.number}, opened at {region.opened_at}"
            verdict = replace(verdict, message=f"{verdict.message} (in {where})")
            return replace(judgement, verdict=verdict, allocated=None, regions=regions, graphed=path)
    return Judgement(result, regions=regions, graphed=graphed, allocated=allocated)
