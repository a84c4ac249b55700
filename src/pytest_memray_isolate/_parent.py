"""The plugin object: takes each tracked test through plan, call, judgement and report."""

from __future__ import annotations

import functools
import os
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Generator, List, Optional, Tuple, final

import pytest

from ._capture_files import CaptureFiles, no_scratch_message
from ._isolation.child import note_pytests_warning_recorder
from ._isolation.messages import CallSpec, Job
from ._isolation.remote_logging import LiveOutput
from ._isolation.runner import IsolationRunner
from ._isolation.setup_effects import recording, wrapped_setup
from ._isolation.supervise import kill_running
from ._isolation.termination import TerminationGuard
from ._judging.capture import MemoryResult
from ._judging.judge import JudgeContext, Judgement, TopPeaks, judge
from ._plan import TrackingPlan, plan_for
from ._reporting.flamegraph import FlameGraphWriter
from ._reporting.record import TestRecord, attach_record
from ._settings import IgnoredSettingWarning, Settings, unused_without_isolation
from ._tracking.heavy import HeavyCaptures
from ._tracking.tracker import patched_call
from ._tracking.window import new_marker

__all__ = ["PLAN_KEY", "PREFIX_KEY", "PYTEST_TIMEOUT_KEY", "Manager"]

PLAN_KEY = pytest.StashKey[TrackingPlan]()
#: The timeout pytest-timeout resolved for an item (see _integrations/pytest_timeout.py).
PYTEST_TIMEOUT_KEY = pytest.StashKey[float]()
_MEMORY_SECTION_PREFIX = "memray"
#: The key of pytest-xdist's workerinput carrying the controller's file prefix.
PREFIX_KEY = "memray_isolate_bin_prefix"
#: pytest-memray's cache key, so a switch from it keeps the recorded history.
_CACHE_KEY = "memray/{nodeid}"


def _writes_several_captures(plan: TrackingPlan) -> bool:
    """Whether the test writes captures besides its own: repetitions', forked processes',
    regions'."""
    return plan.regions or plan.tracker.follow_fork or (plan.leaks is not None and plan.leaks.repeated)


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


def _fail_teardown(error: str) -> None:
    """Fail the test's teardown with what a finalizer it registered during its call raised
    in its child (run there, after the call report)."""
    pytest.fail(
        "A finalizer the test registered during its call failed in its isolated child process:\n" + error,
        pytrace=False,
    )


#: What a test's call report says alike in the child and here (``_id`` from pytest 9).
_ALIKE_IN_BOTH = ("nodeid", "location", "keywords", "when", "_id")


@final
class Manager:
    """Owns the session's capture files and the runners; judges each tracked test and puts
    its record on its call report, for the :class:`Reporter` wherever the run is reported."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self._config = config
        self._settings = settings
        worker_input = getattr(config, "workerinput", {})
        prefix = settings.bin_prefix or worker_input.get(PREFIX_KEY)
        self._files = CaptureFiles(settings.bin_path, prefix)
        if settings.tracking_all:
            self._make_scratch_now()
        self._runners: Dict[str, IsolationRunner] = {}
        self._jobs: Dict[str, Job] = {}
        every = settings.most_allocations == 0 or settings.json_path is not None
        self._reported = TopPeaks(None if every else settings.most_allocations)
        self._heavy = HeavyCaptures(config)
        self._flamegraphs = FlameGraphWriter()
        self._live_output = LiveOutput(config)
        self._termination = TerminationGuard(self._terminated)

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
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        """Inside pytest's warning capture, before the test's fixtures: a forked child tells
        pytest's recorder from one a fixture sets up (see _isolation/child.py)."""
        note_pytests_warning_recorder()
        return (yield)

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
            regions=plan.regions,
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

            return SpawnRunner(self._config, self._live_output)
        if mode == "forkserver":
            from ._isolation.forkserver import ForkserverRunner

            return ForkserverRunner(self._config, self._files.scratch, self._live_output)
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
        during_call = outcome.during_call if outcome is not None else ()
        for data in during_call:  # subtests, logged here as they would have been
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
            for error in outcome.reported.teardown_errors:
                item.addfinalizer(functools.partial(_fail_teardown, error))
            # Properties recorded in the child belong to the item here too: the teardown
            # report (which junitxml reads them from) is made in this process.
            item.user_properties[:] = report.user_properties
        plan = item.stash[PLAN_KEY]
        if job.window_closed:
            self._heavy.record(job.nodeid, job.capture.stat().st_size)
        try:
            passed = report.passed
            judgement = judge(plan, job, passed=passed, context=self._judge_context(plan, job.nodeid, passed))
            result = self._apply(plan, job, judgement, report)
        finally:
            self._files.done_with(job.capture, job.spec.scratch, derived=_writes_several_captures(plan))
        resident = job.resident
        if result is not None:
            unavailable = None if resident.growth is not None else resident.description
            result = replace(result, rss_growth=resident.growth, rss_unavailable=unavailable)
        # The record travels with the report, so pytest-xdist brings it to the controller.
        record = TestRecord.of_test(
            report.nodeid,
            report.outcome,
            mode=plan.mode,
            limit=plan.limit_description(),
            duration=report.duration,
            rss_growth=resident.growth,
            result=result,
            child=None if outcome is None else outcome.exit_facts,
            leaks=judgement.leaks,
            regions=judgement.regions,
            # A crashed child's capture has no figures, but a kept one is still the user's.
            unread_capture=self._unread_kept_capture(job, result),
        )
        attach_record(report, record, result)
        if result is not None:
            item.user_properties.append(("memray_peak_memory", result.peak_memory))
            item.user_properties.append(("memray_total_allocations", result.total_allocations))
            if result.rss_growth is not None:
                item.user_properties.append(("memray_rss_growth", result.rss_growth))
        return report

    def _unread_kept_capture(self, job: Job, result: Optional[MemoryResult]) -> Optional[str]:
        if result is not None or self._files.keep_in is None or not job.capture.exists():
            return None
        return str(job.capture)

    def _judge_context(self, plan: TrackingPlan, nodeid: str, passed: bool) -> JudgeContext:
        """What judging the test needs from the run; pytest's cache is read only for a
        limit_memory test that may be compared with its last passing run."""
        settings = self._settings
        tolerance = settings.fail_on_increase
        compared = passed and plan.memory is not None and tolerance is not None
        return JudgeContext(
            stacks=settings.stacks,
            verbosity=self._verbosity(),
            keep_captures=self._files.keep_in is not None,
            wanted=self._reported.wanted,
            fail_on_increase=tolerance,
            previous_allocated=self._previous_allocated(nodeid) if compared else None,
        )

    def _apply(
        self, plan: TrackingPlan, job: Job, judgement: Judgement, report: pytest.TestReport
    ) -> Optional[MemoryResult]:
        """Act on the judgement: record what passed in pytest's cache, write the flame
        graph, fail the report with the verdict; the figures, with the graph's path."""
        result, verdict = judgement.result, judgement.verdict
        if result is None:
            return None
        if judgement.allocated is not None:
            self._record_allocated(job.nodeid, judgement.allocated)
        graph = self._flamegraph(plan, job, judgement.graphed or job.capture, failed=verdict is not None)
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

    def _flamegraph(self, plan: TrackingPlan, job: Job, capture: Path, *, failed: bool) -> Optional[Path]:
        directory = self._settings.flamegraph_dir
        if directory is None or not (failed or self._settings.flamegraph_all):
            return None
        return self._flamegraphs.write(capture, directory, job.nodeid, leaks=plan.leaks is not None)

    def _previous_allocated(self, nodeid: str) -> Optional[int]:
        """What the test allocated on its last passing run, from pytest's cache (if any)."""
        cache = getattr(self._config, "cache", None)
        if cache is None:
            return None
        entry = cache.get(_CACHE_KEY.format(nodeid=nodeid), {})
        previous = entry.get("total_allocated_memory") if isinstance(entry, dict) else None
        return previous if isinstance(previous, int) else None

    def _record_allocated(self, nodeid: str, allocated: int) -> None:
        """Keep what a test that passed allocated, for the next run's --fail-on-increase."""
        cache = getattr(self._config, "cache", None)
        if cache is not None:
            cache.set(_CACHE_KEY.format(nodeid=nodeid), {"total_allocated_memory": allocated})

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

    # -- end of the run ---------------------------------------------------------------

    @property
    def file_prefix(self) -> str:
        """The prefix of kept capture files, chosen once for the run (and its workers)."""
        return self._files.prefix

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self) -> None:
        self._heavy.save()

    def pytest_unconfigure(self) -> None:
        for runner in self._runners.values():
            runner.close()
        self._flamegraphs.close()
        self._live_output.close()
        self._files.remove_scratch()
        self._termination.restore()
