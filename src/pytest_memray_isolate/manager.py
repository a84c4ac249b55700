"""The plugin object: takes each tracked test through plan, call, judgement and report."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Generator, Iterator, List, Optional, cast

import pytest
from memray import FileReader

from .capture import MemoryResult, high_watermark_records, read_capture
from .limits import check_memory_limit
from .markers import TrackingPlan, plan_for
from .report import ranked, summary_block
from .runners import Job, child
from .runners.fork import ForkRunner
from .runners.tracking import tracked
from .settings import Settings

__all__ = ["PLAN_KEY", "Manager"]

PLAN_KEY = pytest.StashKey[TrackingPlan]()
_MEMORY_SECTION_PREFIX = "memray"


def _calls_its_function_object(item: pytest.Item) -> bool:
    """Whether pytest runs this item by calling ``item.obj`` (plain test functions do;
    unittest methods and doctests have a ``runtest`` of their own)."""
    return isinstance(item, pytest.Function) and type(item).runtest is pytest.Function.runtest


@contextmanager
def _patched_call(item: pytest.Item, job: Job, fork_runner: Optional[ForkRunner]) -> Iterator[None]:
    """Put the Tracker (and, when isolated, the fork) around this item's call, then undo it.

    The Tracker wraps the test function itself where pytest calls one, so fixture
    lookup and pytest's hook machinery are not counted; other items are tracked
    around their whole ``runtest``.
    """
    isolated = fork_runner is not None
    saved = {name: vars(item)[name] for name in ("obj", "runtest") if name in vars(item)}
    runtest = item.runtest
    if _calls_its_function_object(item):
        function_item = cast(pytest.Function, item)
        function_item.obj = tracked(function_item.obj, job, settle_heap=isolated)
    else:
        runtest = tracked(runtest, job, settle_heap=isolated)
    if fork_runner is not None:
        runtest = fork_runner.wrap(runtest, job)
    item.runtest = runtest  # type: ignore[method-assign]
    try:
        yield
    finally:
        for name in ("obj", "runtest"):
            if name in saved:
                setattr(item, name, saved[name])
            else:
                vars(item).pop(name, None)


class Manager:
    """Owns the session's capture directory, the runners and the results."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self._config = config
        self._settings = settings
        self._directory = Path(tempfile.mkdtemp(prefix="pytest-memray-isolate-"))
        self._numbers = itertools.count()
        self._fork_runner: Optional[ForkRunner] = None
        self._jobs: Dict[str, Job] = {}
        self.results: Dict[str, MemoryResult] = {}

    # -- collection -------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: List[pytest.Item]) -> None:
        for item in items:
            plan = plan_for(item, self._settings)
            if plan is not None:
                item.stash[PLAN_KEY] = plan

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        plan = item.stash.get(PLAN_KEY, None)
        if plan is not None and plan.error is not None:
            pytest.fail(plan.error, pytrace=False)

    # -- call -----------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        plan = item.stash.get(PLAN_KEY, None)
        if plan is None or plan.error is not None or child.current_job() is not None:
            return (yield)
        job = self._new_job(item.nodeid)
        self._jobs[item.nodeid] = job
        with _patched_call(item, job, self._fork_runner_for(plan)):
            return (yield)

    def _new_job(self, nodeid: str) -> Job:
        number = next(self._numbers)
        return Job(
            nodeid=nodeid,
            capture=self._directory / f"{number}.bin",
            message=self._directory / f"{number}.report",
        )

    def _fork_runner_for(self, plan: TrackingPlan) -> Optional[ForkRunner]:
        if not plan.isolated:
            return None
        if self._fork_runner is None:
            self._fork_runner = ForkRunner()
        return self._fork_runner

    # -- judgement ------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if call.when != "call":
            return report
        if child.current_job() is not None:
            child.send_report(self._config, report)
        job = self._jobs.pop(item.nodeid, None)
        if job is None:
            return report
        if job.child is not None:
            report = self._config.hook.pytest_report_from_serializable(
                config=self._config, data=job.child.report
            )
            # Properties recorded in the child belong to the item here too: the teardown
            # report (which junitxml reads them from) is made in this process.
            item.user_properties[:] = report.user_properties
        self._judge(item, job, report)
        return report

    def _judge(self, item: pytest.Item, job: Job, report: pytest.TestReport) -> None:
        if not job.capture.exists():
            return
        try:
            self.results[item.nodeid] = read_capture(job.capture, item.nodeid)
            plan = item.stash[PLAN_KEY]
            if plan.limit is not None and report.passed:
                with FileReader(job.capture) as reader:
                    records = high_watermark_records(
                        reader, current_thread_only=plan.limit.current_thread_only
                    )
                    verdict = check_memory_limit(records, plan.limit, verbosity=self._config.get_verbosity())
                if verdict is not None:
                    report.outcome = "failed"
                    report.longrepr = verdict.message
                    if verdict.section is not None:
                        report.sections.append(verdict.section)
        except OSError:
            # An unreadable capture: a child that died mid-write. The test's own
            # outcome already says why; there is no figure to report.
            pass
        finally:
            job.capture.unlink(missing_ok=True)

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_report_teststatus(self, report: pytest.TestReport) -> Generator[None, object, object]:
        status = yield
        memory_failure = any(name.startswith(_MEMORY_SECTION_PREFIX) for name, _ in report.sections)
        if report.when == "call" and report.failed and memory_failure:
            return ("failed", "M", "MEMORY PROBLEMS")
        return status

    # -- guards for the child ---------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self) -> None:
        if child.current_job() is not None:
            child.escaped()

    # -- end of the run ---------------------------------------------------------------

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self._settings.hide_summary or not self._settings.tracking_all:
            return
        terminalreporter.write_line("")
        terminalreporter.write_sep("=", "MEMRAY REPORT")
        for result in ranked(self.results.values(), self._settings.most_allocations):
            if not result.histogram:
                continue
            for line in summary_block(result):
                terminalreporter.write_line(line)

    def pytest_unconfigure(self) -> None:
        if child.current_job() is None:
            shutil.rmtree(self._directory, ignore_errors=True)
