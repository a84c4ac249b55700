"""The isolated child's side: run the call under a Tracker, send the report home, exit.

After ``fork`` the child returns up pytest's own call stack, so pytest's capture,
logging and xfail handling build the call report exactly as they would without
isolation. When the report is made, ``send_report`` hands it to the parent through
the job's message file and ends the process with ``os._exit``: the child never runs
teardown, other tests, or the session's end.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import pickle
import signal
import sys
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, NoReturn, Optional

import pytest

from . import leftovers
from .messages import Job
from .supervise import resident_size

__all__ = [
    "ESCAPED_EXIT_STATUS",
    "become_child",
    "cannot_run",
    "current_job",
    "flush_quietly",
    "on_call_report",
    "on_logreport",
    "run_call",
    "send_report",
    "tell_unrunnable",
]

#: Exit status of a child that reached pytest code past its call report (should not happen).
ESCAPED_EXIT_STATUS = 70


@dataclass
class _ChildState:
    job: Job
    warnings: List[warnings.WarningMessage]
    pid: int
    faults: Any
    #: Set once the test's call has returned or raised: reports made before are subtests'.
    call_done: bool = False
    #: Reports logged during the call (subtests), to be logged again in the parent.
    during_call: List[Dict[str, Any]] = field(default_factory=list)
    #: Where to say the report is complete (a :func:`watch.report_pipe`), if the parent listens.
    report_signal: Optional[int] = None


_state: Optional[_ChildState] = None


def current_job() -> Optional[Job]:
    """The job this process runs as an isolated child, or ``None`` in the parent."""
    return _state.job if _state is not None else None


def become_child(job: Job, *, own_group: bool, report_signal: Optional[int] = None) -> None:
    """Prepare a freshly forked child.

    It gets a process group of its own (so the parent can kill whatever it starts), its
    warnings are recorded for the parent, and faulthandler writes its stacks to the
    job's file on a fatal signal or when the parent asks with SIGUSR1 (timeout). With
    ``report_signal`` it writes a byte there once its report is complete.

    Whatever fails here ends the child, telling the parent why: a child that returned
    into pytest's code before its call would go on to run the rest of the session.
    """
    try:
        _prepare(job, own_group, report_signal)
    except BaseException:
        cannot_run(
            job,
            "The isolated child process could not be prepared for this test's call:\n"
            + traceback.format_exc(),
        )


def _prepare(job: Job, own_group: bool, report_signal: Optional[int]) -> None:
    global _state
    if own_group:
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
    if job.max_rss is not None:
        _write_start_size(job)
    faults = open(job.faults, "w")  # noqa: SIM115 - open until the process ends
    faulthandler.enable(file=faults, all_threads=True)
    faulthandler.register(signal.SIGUSR1, file=faults, all_threads=True)
    recorder = warnings.catch_warnings(record=True)
    recorded = recorder.__enter__()  # left open: the process ends inside it
    leftovers.at_child_start()
    _state = _ChildState(job, recorded, os.getpid(), faults, report_signal=report_signal)


def _write_start_size(job: Job) -> None:
    """Tell the parent this process's resident size at the test's start, for the memory
    ceiling: what it inherited or loaded before (fixture values) is not the test's.

    One write ending with a newline: the parent reads the size only once the line is whole.
    """
    with open(job.start_size, "w") as stream:
        stream.write(f"{resident_size(os.getpid())}\n")


def run_call(runtest: Callable[[], object]) -> None:
    """Run the test's (tracked) call; stop requests go to the parent, not to pytest here."""
    assert _state is not None
    try:
        runtest()
    except KeyboardInterrupt:
        _finish({"stop": ("interrupt", "", 0)})
    except pytest.exit.Exception as stop:
        _finish({"stop": ("exit", stop.msg, stop.returncode)})
    finally:
        _state.call_done = True


def call_done() -> bool:
    """Whether the test's call has ended: a call report made before it belongs to a subtest."""
    return _state is not None and _state.call_done


def keep_for_parent(config: pytest.Config, report: pytest.TestReport) -> None:
    """Keep a report logged during the call (a subtest's) to be logged in the parent.

    It is also written to the job's file at once: if the child dies later in the call, the
    parent still logs the subtests that ran.
    """
    assert _state is not None
    data = config.hook.pytest_report_to_serializable(config=config, report=report)
    _state.during_call.append(data)
    with contextlib.suppress(Exception):  # only a crash would need it
        payload = _picklable({"report": data})
        with open(_state.job.logged, "ab") as stream:
            stream.write(payload)


def on_call_report(config: pytest.Config, report: pytest.TestReport) -> None:
    """The child's call report is made: send it home (a subtest's, made earlier, waits)."""
    if call_done():
        send_report(config, report)


def on_logreport(config: pytest.Config, report: pytest.TestReport) -> None:
    """A report logged in the child: a subtest's goes home with the call report."""
    if call_done():
        escaped()
    keep_for_parent(config, report)


def tell_unrunnable(job: Job, text: str) -> None:
    """Tell the parent why the test's call could not run (its message file)."""
    with open(job.message, "wb") as stream:
        stream.write(pickle.dumps({"unrunnable": text}))


def cannot_run(job: Job, text: str) -> NoReturn:
    """End a child that could not get to the test's call, telling the parent why."""
    status = 0
    try:
        tell_unrunnable(job, text)
    except BaseException:
        status = _tell_on_stderr(text)
    flush_quietly()
    os._exit(status)


def _tell_on_stderr(text: str) -> int:
    """Write what the parent should know to stderr (the test's captured output) when the
    message file cannot be written (its directory removed, the disk full); the exit
    status that says so."""
    flush_quietly()
    with contextlib.suppress(OSError):
        os.write(2, text.encode(errors="replace") + b"\n")
    return 1


def _warning_record(message: warnings.WarningMessage) -> tuple[str, str, str, str, int]:
    category = message.category
    where = (message.filename, message.lineno)
    return (str(message.message), category.__module__, category.__qualname__, *where)


def send_report(config: pytest.Config, report: pytest.TestReport) -> NoReturn:
    """Send the call report and the recorded warnings to the parent, then end the child."""
    assert _state is not None
    # Plugins settle a report's final outcome when its status is asked for (pytest's
    # subtests fail a test with failed subtests, counted here in the child): ask now.
    config.hook.pytest_report_teststatus(report=report, config=config)
    data = config.hook.pytest_report_to_serializable(config=config, report=report)
    recorded = [_warning_record(message) for message in _state.warnings]
    _finish(
        {
            "report": data,
            "during_call": _state.during_call,
            "warnings": recorded,
            "objects_verdict": _state.job.objects_verdict,
        }
    )


def _picklable(message: Dict[str, Any]) -> bytes:
    try:
        return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        # record_property accepts any object; what cannot cross the process boundary
        # travels as its repr.
        report = message.get("report") or {}
        report["user_properties"] = [(name, repr(value)) for name, value in report.get("user_properties", [])]
        return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def _save_coverage() -> None:
    """Save coverage.py's data (pytest-cov), which ``os._exit`` would otherwise lose.

    coverage.py notices the fork and writes the child's data to a file of its own, which
    pytest-cov combines with the others at the end of the run.
    """
    coverage = sys.modules.get("coverage")
    current = getattr(getattr(coverage, "Coverage", None), "current", None)
    measuring = current() if callable(current) else None
    if measuring is not None:
        with contextlib.suppress(Exception):
            measuring.stop()
            measuring.save()


def flush_quietly() -> None:
    """Flush every standard stream before ``os._exit``; a child on its way out must not fail."""
    for output in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if output is not None:
            with contextlib.suppress(BaseException):
                output.flush()


def _finish(message: Dict[str, Any]) -> NoReturn:
    assert _state is not None
    if os.getpid() != _state.pid:  # a process the test forked, back in pytest's code
        os._exit(0)
    with contextlib.suppress(BaseException):  # the report goes home whatever a handler does
        leftovers.at_child_end()
    _save_coverage()
    status = 0
    try:
        payload = _picklable(message)
        with open(_state.job.message, "wb") as stream:
            stream.write(payload)
    except BaseException:
        status = 1
        error = traceback.format_exc()
        try:
            with open(_state.job.message, "wb") as stream:
                stream.write(pickle.dumps({"error": error}))
        except BaseException:
            _tell_on_stderr(
                "The isolated child process running this test could not send its report:\n" + error
            )
    flush_quietly()
    if status == 0 and "report" in message:
        _say_reported(_state.report_signal)
    os._exit(status)


def _say_reported(report_signal: Optional[int]) -> None:
    """Tell the parent the report is complete: it need not wait for this process to exit."""
    if report_signal is not None:
        with contextlib.suppress(OSError):
            os.write(report_signal, b"!")


def escaped() -> NoReturn:
    """End a child that got past its call report; the parent reports the test as broken."""
    os._exit(ESCAPED_EXIT_STATUS)
