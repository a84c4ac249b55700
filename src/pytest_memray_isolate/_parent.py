"""The plugin object: takes each tracked test through plan, call, judgement and report."""

from __future__ import annotations

import heapq
import os
import sys
import warnings
from contextlib import ExitStack, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Generator, List, Optional, Protocol, Tuple, final

import pytest
from memray import AllocationRecord, FileReader

from ._capture_files import CaptureFiles, forked_captures, no_scratch_message
from ._isolation.messages import CallSpec, Job
from ._isolation.runner import IsolationRunner
from ._isolation.setup_effects import recording, wrapped_setup
from ._isolation.supervise import kill_running
from ._isolation.termination import TerminationGuard
from ._judging.capture import MemoryResult, high_watermark_records, leaked_records, read_capture, top_frame
from ._judging.limits import (
    FilterFailed,
    GrowingLeak,
    Verdict,
    check_allocations,
    check_growing_leaks,
    check_increase,
    check_leaks,
    check_memory_limit,
    counted_leaks,
    growing_leaks,
    leaks_by_place,
)
from ._plan import TrackingPlan, plan_for
from ._reporting.flamegraph import write_flamegraph
from ._reporting.json_report import build_document, write_atomically
from ._reporting.summary import closing_lines, ranked, summary_block
from ._settings import IgnoredSettingWarning, Settings, unused_without_isolation
from ._tracking.follow_fork import still_running
from ._tracking.heavy import HeavyCaptures
from ._tracking.tracker import patched_call
from ._tracking.window import new_marker, quiet_memray

__all__ = ["PLAN_KEY", "PREFIX_KEY", "PYTEST_TIMEOUT_KEY", "RESULT_ATTRIBUTE", "Manager"]

PLAN_KEY = pytest.StashKey[TrackingPlan]()
#: The timeout pytest-timeout resolved for an item (see timeouts.py).
PYTEST_TIMEOUT_KEY = pytest.StashKey[float]()
_MEMORY_SECTION_PREFIX = "memray"
#: The call report's attribute carrying the test's MemoryResult as plain data.
RESULT_ATTRIBUTE = "memray_result"
#: The key of pytest-xdist's workerinput carrying the controller's file prefix.
PREFIX_KEY = "memray_isolate_bin_prefix"
#: pytest-memray's cache key, so a switch from it keeps the recorded history.
_CACHE_KEY = "memray/{nodeid}"


def _leak_facts(record: AllocationRecord) -> Dict[str, Any]:
    """One counted leak as plain data: its size and innermost Python frame outside the plugin."""
    frame = top_frame(record.stack_trace()) or ("???", "???", 0)
    function, filename, lineno = frame
    return {
        "size": record.size,
        "function": function,
        "filename": filename,
        "lineno": lineno,
        "growth": [record.size],
    }


def _growing_leak_facts(leak: GrowingLeak) -> Dict[str, Any]:
    """A place whose leaks grew on every repetition, as plain data: the last repetition's size,
    its innermost Python frame outside the plugin, and what it leaked on each repetition."""
    function, filename, lineno = top_frame(leak.place) or ("???", "???", 0)
    return {
        "size": leak.growth[-1],
        "function": function,
        "filename": filename,
        "lineno": lineno,
        "growth": list(leak.growth),
    }


def _writes_several_captures(plan: TrackingPlan) -> bool:
    """Whether the test writes captures besides its own: repetitions', forked processes'."""
    return plan.tracker.follow_fork or (plan.leaks is not None and plan.leaks.repeated)


def _counted_captures(job: Job, result: MemoryResult) -> List[Path]:
    """The test's capture and, following forks, those of the forked processes that count."""
    counted = {process.pid for process in result.processes if process.role == "forked" and process.counted}
    if not counted:
        return [job.capture]
    return [job.capture, *(path for pid, path in forked_captures(job.capture) if pid in counted)]


class _TopPeaks:
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


def _share_identity(from_child: pytest.TestReport, here: pytest.TestReport) -> None:
    """Let the child's report use this process's objects for what both reports say alike.

    pytest keeps every report until the run ends; a report rebuilt from the child's data
    would otherwise hold its own copies of the node id, location, keywords and the like
    (about a quarter of a kibibyte a test), and of the report type's name, which only
    rebuilt reports carry.
    """
    ours = vars(here)
    theirs = vars(from_child)
    for name in _ALIKE_IN_BOTH:
        if name in ours and name in theirs and ours[name] == theirs[name]:
            theirs[name] = ours[name]
    kind = theirs.get("$report_type")
    if isinstance(kind, str):
        theirs["$report_type"] = sys.intern(kind)


#: What a test's call report says alike in the child and here (``_id`` from pytest 9).
_ALIKE_IN_BOTH = ("nodeid", "location", "keywords", "when", "_id")


class _Terminal(Protocol):
    """What the summary needs of pytest's terminal reporter: ``pytest.TerminalReporter`` is
    not public in pytest 8.2, the oldest pytest supported."""

    def write_line(self, line: str, **markup: bool) -> None: ...

    def write_sep(self, sep: str, title: Optional[str] = ..., **markup: bool) -> None: ...


@final
class Manager:
    """Owns the session's capture files, the runners and the results."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self._config = config
        self._settings = settings
        self._is_worker = hasattr(config, "workerinput")
        worker_input = getattr(config, "workerinput", {})
        prefix = settings.bin_prefix or worker_input.get(PREFIX_KEY)
        self._files = CaptureFiles(settings.bin_path, prefix)
        if settings.tracking_all:
            self._make_scratch_now()
        self._runners: Dict[str, IsolationRunner] = {}
        self._jobs: Dict[str, Job] = {}
        #: The leaks that counted against each limit_leaks test, for reports.
        self._leaks: Dict[str, List[Dict[str, Any]]] = {}
        self.results: Dict[str, MemoryResult] = {}
        #: Everything known about each tracked test, for --memray-json (see _reporting/json_report.py).
        self.records: Dict[str, Dict[str, Any]] = {}
        every = settings.most_allocations == 0 or settings.json_path is not None
        self._reported = _TopPeaks(None if every else settings.most_allocations)
        self._heavy = HeavyCaptures(config)
        self._termination = TerminationGuard(self._terminated)
        #: Why --memray-json could not be written at the end, for the summary.
        self._json_error: Optional[str] = None

    def _terminated(self) -> None:
        """pytest is told to end (SIGTERM, SIGHUP): leave no child and no file behind."""
        kill_running()
        self._files.remove_scratch()

    def _make_scratch_now(self) -> None:
        """A run that tracks every test cannot go far without the private directory: a
        usage error at start-up, rather than one failure per test."""
        try:
            self._files.make_scratch()
        except OSError as error:
            settings = self._settings
            who = settings.source_of("isolate" if settings.isolate is not None else "memray")
            raise pytest.UsageError(no_scratch_message(who, error)) from None

    # -- collection -------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: List[pytest.Item]) -> None:
        isolated = False
        for item in items:
            plan = plan_for(item, self._settings)
            if plan is not None:
                item.stash[PLAN_KEY] = plan
                isolated = isolated or plan.isolated
        ignored = unused_without_isolation(self._settings)
        if ignored is not None and items and not isolated:
            warnings.warn(IgnoredSettingWarning(ignored), stacklevel=1)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        plan = item.stash.get(PLAN_KEY, None)
        if plan is None:
            return
        if plan.error is not None:
            pytest.fail(plan.error, pytrace=False)
        if plan.skip is not None:
            pytest.skip(plan.skip)

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, object, object]:
        """Note what the project's xunit and unittest setups set, for forkserver and spawn
        children, which do not run them again (see _isolation/setup_effects.py)."""
        what = wrapped_setup(fixturedef, self._config.rootpath)
        if what is None:
            return (yield)
        with recording(fixturedef, request, what):
            return (yield)

    # -- call -----------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        plan = item.stash.get(PLAN_KEY, None)
        if plan is None or plan.error is not None:
            return (yield)
        capture, scratch = self._paths_for(item.nodeid, plan)
        tracker = plan.tracker
        if tracker.ends_open and self._heavy.is_heavy(item.nodeid):
            tracker = replace(tracker, ends_open=False)  # its capture would be slow to read
        spec = CallSpec(
            item.nodeid,
            capture,
            scratch,
            tracker=tracker,
            objects=plan.objects,
            timeout=self._timeout_for(item, plan) if plan.isolated else None,
            max_rss=self._settings.max_rss if plan.isolated else None,
            warmups=plan.leaks.warmups if plan.leaks is not None else 0,
            repeats=plan.leaks.repeats if plan.leaks is not None else 1,
            window_marker=new_marker() if tracker.ends_open else None,
        )
        job = Job(spec)
        self._jobs[item.nodeid] = job
        runner = self._runner_for(plan)
        if runner is None:
            patched = patched_call(item, spec, job.notes)
        else:
            patched = patched_call(
                item,
                spec,
                job.notes,
                track=runner.tracks_here,
                settle_heap=True,
                outer=lambda runtest: runner.wrap(item, runtest, job),
            )
        with patched:
            return (yield)

    def _paths_for(self, nodeid: str, plan: TrackingPlan) -> Tuple[Path, Path]:
        """The job's capture and scratch stem; without a private directory (only a run
        tracking marked tests finds out this late), the test fails saying what to set."""
        try:
            return self._files.paths_for(nodeid, derived=_writes_several_captures(plan))
        except OSError as error:
            message = no_scratch_message(f"{nodeid}: tracking its memory", error)
        pytest.fail(message, pytrace=False)

    def _timeout_for(self, item: pytest.Item, plan: TrackingPlan) -> Optional[float]:
        """The child's time limit: memray_isolate(timeout=...), then pytest-timeout's, then ours."""
        if plan.timeout is not None:
            return plan.timeout or None  # the marker's 0 lifts every other limit
        from_pytest_timeout = item.stash.get(PYTEST_TIMEOUT_KEY, None)
        if from_pytest_timeout is not None and item.get_closest_marker("timeout") is not None:
            return from_pytest_timeout
        return self._settings.timeout or from_pytest_timeout

    def _runner_for(self, plan: TrackingPlan) -> Optional[IsolationRunner]:
        if not plan.isolated:
            return None
        runner = self._runners.get(plan.mode)
        if runner is None:
            runner = self._runners[plan.mode] = self._new_runner(plan.mode)
        return runner

    def _new_runner(self, mode: str) -> IsolationRunner:
        # Each runner is imported when first needed: a run that isolates nothing (or
        # only forks) need not pay for the others, or for cloudpickle, at start-up.
        if mode == "spawn":
            from ._isolation.spawn import SpawnRunner

            return SpawnRunner(self._config)
        if mode == "forkserver":
            from ._isolation.forkserver import ForkserverRunner

            return ForkserverRunner(self._config, self._files.scratch)
        from ._isolation.fork import ForkRunner

        # A child in its own process group cannot read the terminal; keep it in
        # pytest's group when the tests may (-s with a terminal on stdin, for pdb).
        reads_terminal = self._config.getoption("capture") == "no" and os.isatty(0)
        return ForkRunner(self._config, own_group=not reads_terminal)

    # -- judgement ------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if call.when != "call":
            return report
        job = self._jobs.pop(item.nodeid, None)
        if job is None:
            return report
        outcome = job.child
        for data in (
            outcome.during_call if outcome is not None else ()
        ):  # subtests, logged as they would have been
            logged = self._config.hook.pytest_report_from_serializable(config=self._config, data=data)
            item.ihook.pytest_runtest_logreport(report=logged)
        if outcome is not None and outcome.reported is not None:
            from_child = self._config.hook.pytest_report_from_serializable(
                config=self._config, data=outcome.reported.report
            )
            if outcome.output_captured_here:
                # The child wrote to this process's capture; its report has what it logged.
                names = {name for name, _ in report.sections}
                from_child.sections = report.sections + [
                    section for section in from_child.sections if section[0] not in names
                ]
            _share_identity(from_child, report)
            report = from_child
            # Properties recorded in the child belong to the item here too: the teardown
            # report (which junitxml reads them from) is made in this process.
            item.user_properties[:] = report.user_properties
        plan = item.stash[PLAN_KEY]
        if job.window_closed:
            self._heavy.record(job.nodeid, job.capture.stat().st_size)
        try:
            result = self._judge(plan, job, report)
        finally:
            self._files.done_with(job.capture, job.spec.scratch, derived=_writes_several_captures(plan))
        # The figures travel with the report, so pytest-xdist brings them to the controller.
        record = {
            "result": None if result is None else result.as_dict(),
            "mode": plan.mode,
            "limit": plan.limit_description(),
            "child": None if outcome is None or outcome.exit_facts is None else outcome.exit_facts.as_dict(),
            "leaks": self._leaks.pop(job.nodeid, None),
            # A crashed child's capture has no figures, but a kept one is still the user's.
            "unread_capture": self._unread_kept_capture(job, result),
        }
        setattr(report, RESULT_ATTRIBUTE, record)
        if result is not None:
            item.user_properties.append(("memray_peak_memory", result.peak_memory))
            item.user_properties.append(("memray_total_allocations", result.total_allocations))
        return report

    def _unread_kept_capture(self, job: Job, result: Optional[MemoryResult]) -> Optional[str]:
        if result is not None or self._files.keep_in is None or not job.capture.exists():
            return None
        return str(job.capture)

    def _judge(self, plan: TrackingPlan, job: Job, report: pytest.TestReport) -> Optional[MemoryResult]:
        """Read the capture and apply the limits; the figures, or ``None`` without a capture."""
        # A child that died during the call may have left a torn last record.
        torn = job.window_marker is not None and not job.window_closed
        with quiet_memray() if torn else nullcontext():
            return self._judge_capture(plan, job, report)

    def _judge_capture(
        self, plan: TrackingPlan, job: Job, report: pytest.TestReport
    ) -> Optional[MemoryResult]:
        kept = self._files.keep_in is not None
        try:
            result = read_capture(
                job.capture,
                job.nodeid,
                kept=kept,
                wanted=self._reported.wanted,
                forked=forked_captures(job.capture) if plan.tracker.follow_fork else None,
                running=still_running(job.spec) if plan.tracker.follow_fork else frozenset(),
                count_places=job.tracker.ends_open and not job.tracker.all_allocations,
            )
        except OSError:
            # No readable capture: a child that died before its Tracker finished. The
            # test's own outcome already says why; there is no figure to report.
            return None
        if kept and job.repeats > 1:
            earlier = [str(path) for path in job.repetition_captures()[:-1] if path.exists()]
            result = replace(result, kept_others=(*earlier, *result.kept_others))
        # Limits judge only tests that passed on their own, as pytest-memray's do.
        verdict = self._verdict(plan, job, result) if report.passed else None
        graph = self._flamegraph(plan, job, failed=verdict is not None)
        if graph is not None:
            result = replace(result, flamegraph=str(graph))
        if verdict is not None:
            report.outcome = "failed"
            report.longrepr = verdict.message
            link = "" if graph is None else f"Flame graph: {graph}"
            if verdict.section is not None:
                name, text = verdict.section
                report.sections.append((name, f"{text}\n{link}" if link else text))
            elif link:
                report.sections.append(("memray-flamegraph", link))
        return result

    def _flamegraph(self, plan: TrackingPlan, job: Job, *, failed: bool) -> Optional[Path]:
        directory = self._settings.flamegraph_dir
        if directory is None or not (failed or self._settings.flamegraph_all):
            return None
        return write_flamegraph(job.capture, directory, job.nodeid, leaks=plan.leaks is not None)

    def _verdict(self, plan: TrackingPlan, job: Job, result: MemoryResult) -> Optional[Verdict]:
        try:
            verdict = self._memory_verdict(plan, job, result)
        except FilterFailed as failed:  # the user's filter_fn: its test fails, not the session
            return failed.verdict
        if verdict is None and plan.allocations is not None:
            with FileReader(job.capture) as reader:
                verdict = check_allocations(reader.get_allocation_records(), plan.allocations)
        return verdict

    def _memory_verdict(self, plan: TrackingPlan, job: Job, result: MemoryResult) -> Optional[Verdict]:
        settings = self._settings
        if plan.memory is not None:
            with ExitStack() as stack:
                records = []
                for path in _counted_captures(job, result):
                    reader = stack.enter_context(FileReader(path))
                    records += high_watermark_records(
                        reader, current_thread_only=plan.memory.current_thread_only
                    )
                verdict = check_memory_limit(
                    records,
                    plan.memory,
                    verbosity=self._verbosity(),
                    stacks=settings.stacks,
                    native=plan.tracker.native_traces,
                    processes=result.processes,
                )
                allocated = sum(record.size for record in records)
            return verdict or self._check_increase(job.nodeid, allocated)
        if plan.leaks is not None and plan.leaks.repeated:
            repetitions = []
            for path in job.repetition_captures():
                with FileReader(path) as reader:
                    leaks = leaked_records(reader, current_thread_only=plan.leaks.current_thread_only)
                    repetitions.append(leaks_by_place(leaks, plan.leaks))
            growing = growing_leaks(repetitions, plan.leaks)
            self._leaks[job.nodeid] = [_growing_leak_facts(leak) for leak in growing]
            return check_growing_leaks(growing, plan.leaks, stacks=settings.stacks)
        if plan.leaks is not None:
            with FileReader(job.capture) as reader:
                leaks = leaked_records(reader, current_thread_only=plan.leaks.current_thread_only)
                counted = counted_leaks(leaks, plan.leaks)
                self._leaks[job.nodeid] = [_leak_facts(record) for record in counted]
                return check_leaks(counted, plan.leaks, stacks=settings.stacks)
        if plan.objects is not None:
            return job.objects_verdict
        return None

    def _check_increase(self, nodeid: str, allocated: int) -> Optional[Verdict]:
        """Compare with the last passing run (pytest's cache), then record this one if it passes."""
        tolerance = self._settings.fail_on_increase
        cache = getattr(self._config, "cache", None)
        if cache is None:
            return None
        key = _CACHE_KEY.format(nodeid=nodeid)
        entry = cache.get(key, {})
        previous = entry.get("total_allocated_memory") if isinstance(entry, dict) else None
        if tolerance is not None:
            verdict = check_increase(allocated, previous if isinstance(previous, int) else None, tolerance)
            if verdict is not None:
                return verdict
        cache.set(key, {"total_allocated_memory": allocated})
        return None

    def _verbosity(self) -> int:
        configured = self._settings.verbosity
        return self._config.get_verbosity() if configured is None else configured

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_report_teststatus(self, report: pytest.TestReport) -> Generator[None, object, object]:
        status = yield
        memory_failure = any(name.startswith(_MEMORY_SECTION_PREFIX) for name, _ in report.sections)
        if report.when == "call" and report.failed and memory_failure:
            return ("failed", "M", "MEMORY PROBLEMS")
        return status

    # -- guards for the child ---------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = getattr(report, RESULT_ATTRIBUTE, None)
        if report.when != "call" or not isinstance(record, dict):
            return
        if not self._is_worker:
            # pytest keeps every report until the end; the figures are taken from here.
            delattr(report, RESULT_ATTRIBUTE)
        if self._settings.json_path is not None:
            self.records[report.nodeid] = {**record, "nodeid": report.nodeid, "outcome": report.outcome}
        if record.get("unread_capture") is not None:
            self._files.record_kept(record["unread_capture"])
        if record["result"] is not None:
            result = MemoryResult.from_dict(record["result"])
            for kept in (result.kept_file, *result.kept_others):
                if kept is not None:
                    self._files.record_kept(kept)
            if result.detailed:  # the others can never be among the tests the report shows
                self.results[result.nodeid] = result

    # -- end of the run ---------------------------------------------------------------

    def pytest_terminal_summary(self, terminalreporter: _Terminal) -> None:
        if self._settings.tracking_all and not self._settings.hide_summary:
            self._write_summary(terminalreporter)
        if self._json_error is not None:
            terminalreporter.write_line(self._json_error, red=True)

    def _write_summary(self, terminalreporter: _Terminal) -> None:
        terminalreporter.write_line("")
        terminalreporter.write_sep("=", "MEMRAY REPORT")
        for result in ranked(self.results.values(), self._settings.most_allocations):
            if not result.histogram:
                continue
            for line in summary_block(result):
                terminalreporter.write_line(line)
        for line in closing_lines(self.results.values(), self._settings.isolate):
            terminalreporter.write_line(line)
        kept = self._files.summary_line()
        if kept is not None:
            terminalreporter.write_line(kept)

    @property
    def file_prefix(self) -> str:
        """The prefix of kept capture files, chosen once for the run (and its workers)."""
        return self._files.prefix

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self._heavy.save()
        path = self._settings.json_path
        if path is None or hasattr(self._config, "workerinput"):
            return
        document = build_document(self.records.values(), self._settings, exitstatus=int(session.exitstatus))
        try:
            write_atomically(path, document)
        except OSError as error:
            # Said at the end of the summary, which an exception here would have cut off;
            # the run fails so that an earlier report is not taken for this one.
            self._json_error = f"Could not write the memray JSON report to {path}: {error}"
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_unconfigure(self) -> None:
        for runner in self._runners.values():
            runner.close()
        self._files.remove_scratch()
        self._termination.restore()
