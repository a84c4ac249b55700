"""Judging one test (_judging/judge.py) on capture files written here by memray's Tracker.

The judge only reads: each test hands it a plan, a job naming the captures and a context,
and checks what comes back, with no pytest run around it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, List

import pytest
from memray import Tracker

from pytest_memray_isolate._isolation.messages import CallSpec, Job
from pytest_memray_isolate._judging.capture import read_capture
from pytest_memray_isolate._judging.judge import CountedLeak, JudgeContext, Judgement, judge
from pytest_memray_isolate._options import parse_tolerance
from pytest_memray_isolate._plan import IN_PROCESS, LeakLimit, MemoryLimit, TrackerOptions, TrackingPlan
from pytest_memray_isolate._tracking.tracker import tracker_arguments

MIB = 1024 * 1024
#: Memory the workloads keep past the end of their Tracker: their leaks.
KEPT: List[bytearray] = []
#: What the leak tests' workloads allocate and keep, in bytes.
LEAKED = 50_000
#: The options plan_for gives a limit_leaks test: native frames and every Python allocation.
LEAK_TRACKER = TrackerOptions(native_traces=True, trace_python_allocators=True)

#: The options of a test without a limit_leaks marker, the run's defaults.
PLAIN_TRACKER = TrackerOptions()

CONTEXT = JudgeContext(stacks=1, verbosity=0, keep_captures=False)


@pytest.fixture(autouse=True)
def _release_kept() -> None:
    """Each test starts without the memory an earlier one kept."""
    KEPT.clear()


def _capture(path: Path, workload: Callable[[], None], options: TrackerOptions = PLAIN_TRACKER) -> Path:
    with Tracker(path, **tracker_arguments(options)):
        workload()
    return path


def _job(capture: Path, tracker: TrackerOptions = PLAIN_TRACKER, repeats: int = 1) -> Job:
    return Job(CallSpec("t.py::test_it", capture, capture.with_suffix(""), tracker=tracker, repeats=repeats))


def _holds_two_mib() -> None:
    data = bytearray(2 * MIB)
    assert data


def _leaks() -> None:
    KEPT.append(bytearray(LEAKED))


def _thread_holds_three_mib_main_thread_little() -> None:
    def allocate() -> None:
        KEPT.append(bytearray(3 * MIB))

    thread = threading.Thread(target=allocate)
    thread.start()
    thread.join()


def test_a_test_over_its_limit_fails_with_the_figures_read_alone(tmp_path: Path) -> None:
    """The figures are those the capture gives when read on its own, and limit_memory
    fails a test that passed on its own, naming the limit; nothing goes to the cache."""
    capture = _capture(tmp_path / "t.bin", _holds_two_mib)
    plan = TrackingPlan(IN_PROCESS, memory=MemoryLimit(MIB, "1 MiB"))
    judgement = judge(plan, _job(capture), passed=True, context=CONTEXT)
    assert judgement.result == read_capture(capture, "t.py::test_it")
    assert judgement.result is not None
    assert judgement.result.peak_memory >= 2 * MIB
    assert judgement.verdict is not None
    assert judgement.verdict.message.startswith("Test was limited to 1.0MiB but allocated 2.0MiB")
    assert judgement.verdict.section is not None
    assert judgement.verdict.section[0] == "memray-max-memory"
    assert "_holds_two_mib" in judgement.verdict.section[1]
    assert judgement.allocated is None
    assert judgement.leaks is None


def test_a_test_that_failed_on_its_own_is_not_judged(tmp_path: Path) -> None:
    """Limits judge only tests that passed on their own: figures, but no verdict."""
    capture = _capture(tmp_path / "t.bin", _holds_two_mib)
    plan = TrackingPlan(IN_PROCESS, memory=MemoryLimit(MIB, "1 MiB"))
    judgement = judge(plan, _job(capture), passed=False, context=CONTEXT)
    assert judgement == Judgement(read_capture(capture, "t.py::test_it"))


def test_a_test_under_its_limit_gives_what_it_allocated_for_the_cache(tmp_path: Path) -> None:
    """Passing limit_memory (no earlier run to compare with) gives the bytes alive at the
    high watermark to record; with a previous run below the tolerance, the increase fails."""
    capture = _capture(tmp_path / "t.bin", _holds_two_mib)
    plan = TrackingPlan(IN_PROCESS, memory=MemoryLimit(10 * MIB, "10 MiB"))
    tolerance = parse_tolerance("10%")
    first = judge(plan, _job(capture), passed=True, context=CONTEXT)
    assert first.verdict is None
    assert first.allocated is not None
    assert 2 * MIB <= first.allocated < 3 * MIB
    same = JudgeContext(stacks=1, verbosity=0, keep_captures=False, fail_on_increase=tolerance)
    compared = judge(plan, _job(capture), passed=True, context=same)
    assert compared.verdict is None
    assert compared.allocated == first.allocated
    grown = JudgeContext(
        stacks=1, verbosity=0, keep_captures=False, fail_on_increase=tolerance, previous_allocated=MIB
    )
    increased = judge(plan, _job(capture), passed=True, context=grown)
    assert increased.verdict is not None
    assert increased.verdict.message.startswith("Test previously used 1.0MiB but now uses 2.0MiB")
    assert increased.verdict.message.endswith("(tolerance 10%)")
    assert increased.allocated is None


def test_current_thread_only_counts_the_test_thread_but_the_figures_count_all(tmp_path: Path) -> None:
    """With current_thread_only, 3 MiB held by another thread does not reach a 1 MiB limit,
    yet the figures (read from all threads merged) still show it; without, it fails."""
    capture = _capture(tmp_path / "t.bin", _thread_holds_three_mib_main_thread_little)
    own_thread = TrackingPlan(IN_PROCESS, memory=MemoryLimit(MIB, "1 MiB", current_thread_only=True))
    all_threads = TrackingPlan(IN_PROCESS, memory=MemoryLimit(MIB, "1 MiB"))
    passed = judge(own_thread, _job(capture), passed=True, context=CONTEXT)
    failed = judge(all_threads, _job(capture), passed=True, context=CONTEXT)
    assert passed.verdict is None
    assert passed.allocated is not None
    assert passed.allocated < MIB
    assert failed.verdict is not None
    assert failed.verdict.message.startswith("Test was limited to 1.0MiB but allocated 3.0MiB")
    assert passed.result == failed.result == read_capture(capture, "t.py::test_it")
    assert passed.result is not None
    assert passed.result.peak_memory >= 3 * MIB


def test_counted_leaks_come_back_as_records_of_their_place(tmp_path: Path) -> None:
    """limit_leaks: each leak over the limit is a CountedLeak naming the function that
    allocated it, and fails the test; under a higher limit none counts."""
    capture = _capture(tmp_path / "t.bin", _leaks, LEAK_TRACKER)
    strict = TrackingPlan(IN_PROCESS, tracker=LEAK_TRACKER, leaks=LeakLimit(10_000, "10 KB"))
    lenient = TrackingPlan(IN_PROCESS, tracker=LEAK_TRACKER, leaks=LeakLimit(MIB, "1 MiB"))
    failed = judge(strict, _job(capture, LEAK_TRACKER), passed=True, context=CONTEXT)
    assert failed.verdict is not None
    assert failed.verdict.message.startswith("Test was allowed to leak 9.8KiB per location")
    assert failed.leaks is not None
    assert len(failed.leaks) == 1
    (leak,) = failed.leaks
    assert leak.size >= LEAKED
    assert leak.growth == (leak.size,)
    assert (leak.function, Path(leak.filename).name) == ("_leaks", "test_judge.py")
    passed = judge(lenient, _job(capture, LEAK_TRACKER), passed=True, context=CONTEXT)
    assert passed.verdict is None
    assert passed.leaks == ()


def test_a_filter_that_raises_fails_the_test_without_leaks(tmp_path: Path) -> None:
    """A limit_leaks filter_fn that raises becomes the verdict; no leak is said to count."""

    def refuses(stack: object) -> bool:
        raise ValueError("no")

    capture = _capture(tmp_path / "t.bin", _leaks, LEAK_TRACKER)
    plan = TrackingPlan(IN_PROCESS, tracker=LEAK_TRACKER, leaks=LeakLimit(10_000, "10 KB", filter_fn=refuses))
    judgement = judge(plan, _job(capture, LEAK_TRACKER), passed=True, context=CONTEXT)
    assert judgement.verdict is not None
    assert "filter_fn" in judgement.verdict.message
    assert judgement.verdict.message.endswith("raised ValueError: no")
    assert judgement.leaks is None
    assert judgement.result is not None


def test_a_repeated_test_counts_places_that_leak_on_every_repetition(tmp_path: Path) -> None:
    """A repeated limit_leaks test: what one place leaked on each of three captures is its
    growth; a place that leaked on the first repetition only (a cache) does not count."""
    capture = tmp_path / "t.bin"
    job = _job(capture, LEAK_TRACKER, repeats=3)
    for number, path in enumerate(job.repetition_captures(), start=1):

        def repetition(first: bool = number == 1) -> None:
            _leaks()
            if first:
                KEPT.append(bytearray(LEAKED * 2))  # filled once, like a cache

        _capture(path, repetition, LEAK_TRACKER)
    plan = TrackingPlan(IN_PROCESS, tracker=LEAK_TRACKER, leaks=LeakLimit(10_000, "10 KB", repeats=3))
    judgement = judge(plan, job, passed=True, context=CONTEXT)
    assert judgement.verdict is not None
    assert "1 location leaked that much or more on every one of its 3 tracked repetitions" in (
        judgement.verdict.message
    )
    assert judgement.leaks is not None
    (leak,) = judgement.leaks
    assert leak.function == "_leaks"
    assert len(leak.growth) == 3
    assert all(size >= LEAKED for size in leak.growth)
    assert leak.size == leak.growth[-1]
    assert judgement.result == read_capture(capture, "t.py::test_it")


def test_kept_repetition_captures_are_listed_with_the_figures(tmp_path: Path) -> None:
    """When the user keeps captures, the earlier repetitions' files are named with the
    test's figures, the last (the test's own) as its kept file."""
    capture = tmp_path / "t.bin"
    job = _job(capture, LEAK_TRACKER, repeats=2)
    for path in job.repetition_captures():
        _capture(path, _leaks, LEAK_TRACKER)
    plan = TrackingPlan(IN_PROCESS, tracker=LEAK_TRACKER, leaks=LeakLimit(10_000, "10 KB", repeats=2))
    keeping = JudgeContext(stacks=1, verbosity=0, keep_captures=True)
    judgement = judge(plan, job, passed=False, context=keeping)
    assert judgement.result is not None
    assert judgement.result.kept_file == str(capture)
    assert judgement.result.kept_others == (str(tmp_path / "t-repeat1.bin"),)


def test_a_missing_capture_gives_no_figures_and_no_verdict(tmp_path: Path) -> None:
    """A child that died before its Tracker wrote anything: nothing to judge."""
    plan = TrackingPlan(IN_PROCESS, memory=MemoryLimit(MIB, "1 MiB"))
    assert judge(plan, _job(tmp_path / "none.bin"), passed=True, context=CONTEXT) == Judgement(None)


def test_only_tests_the_report_may_show_are_read_in_detail(tmp_path: Path) -> None:
    """With ``wanted`` saying no, the figures have no histogram or top locations, yet the
    limit is still judged on the allocations at the high watermark."""
    capture = _capture(tmp_path / "t.bin", _holds_two_mib)
    plan = TrackingPlan(IN_PROCESS, memory=MemoryLimit(MIB, "1 MiB"))
    unwanted = JudgeContext(stacks=1, verbosity=0, keep_captures=False, wanted=lambda peak: False)
    judgement = judge(plan, _job(capture), passed=True, context=unwanted)
    assert judgement.result is not None
    assert not judgement.result.detailed
    assert judgement.result.histogram == ""
    assert judgement.result.top_locations == ()
    assert judgement.verdict is not None
    assert judgement.verdict.message.startswith("Test was limited to 1.0MiB but allocated 2.0MiB")


def test_counted_leak_of_a_growing_place_takes_the_last_repetition() -> None:
    """A growing leak's reported size is what it leaked on the last repetition."""
    from pytest_memray_isolate._judging.limits import GrowingLeak

    leak = CountedLeak.of_growing(GrowingLeak((("f", "/x/f.py", 3),), (10, 20, 30)))
    assert leak == CountedLeak(30, "f", "/x/f.py", 3, (10, 20, 30))
