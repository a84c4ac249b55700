"""Fork isolation: each tracked call runs in a child forked from the pytest process.

Fixtures are set up and torn down here in the parent; only the call crosses into the
child, so session and module fixtures are never set up or torn down twice. The child
runs in a process group of its own, so everything it starts is killed with it.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import pickle
import signal
import sys
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import psutil
import pytest
from memray import FileReader

from ..sizes import format_size
from . import ChildReport, Job, WarningRecord, child
from .watch import ChildEnd, Limits, kill_group, wait_for_child

__all__ = ["ForkRunner", "describe_exit", "exit_facts"]


def _exit_code_and_signal(status: int) -> Tuple[int, Optional[str]]:
    """The exit code from a wait status (negative for a signal) and the signal's name."""
    code = os.waitstatus_to_exitcode(status)
    name = None
    if code < 0:
        with contextlib.suppress(ValueError):
            name = signal.Signals(-code).name
    return code, name


def exit_facts(end: ChildEnd) -> Dict[str, Any]:
    """How a child ended, as plain data: exit code or signal, and why it was killed."""
    code, signal_name = _exit_code_and_signal(end.status)
    return {
        "exit_code": code if code >= 0 else None,
        "signal": signal_name,
        "killed_for": end.killed_for,
        "max_rss": end.max_rss,
    }


def describe_exit(status: int) -> str:
    """Say how a child ended, from its wait status: ``was killed by signal SIGSEGV (11)``."""
    code, signal_name = _exit_code_and_signal(status)
    if code < 0:
        return f"was killed by signal {signal_name or 'an unknown signal'} ({-code})"
    return f"exited with status {code}"


def _warning_category(module: str, qualname: str) -> type[Warning]:
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if isinstance(found, type) and issubclass(found, Warning):
        return found
    return UserWarning


def _reissue(recorded: List[WarningRecord]) -> None:
    """Raise the child's warnings again here, where pytest's warning capture sees them."""
    for text, module, qualname, filename, lineno in recorded:
        warnings.warn_explicit(text, _warning_category(module, qualname), filename, lineno)


def _read_text(path: Any) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            return str(stream.read()).strip()
    except OSError:
        return ""


class ForkRunner:
    """Runs each tracked call in a forked child and collects what the child reported."""

    def __init__(self, *, own_group: bool = True) -> None:
        self._own_group = own_group
        # memray's Tracker imports and computes this on first use; doing it once here
        # saves every child about 10 ms.
        from memray.reporters.module_tools import get_python_path_info

        get_python_path_info()

    def wrap(self, runtest: Callable[[], object], job: Job) -> Callable[[], None]:
        """A replacement for ``item.runtest`` that runs the original in a child."""

        def run_isolated() -> None:
            __tracebackhide__ = True  # pytest shows the test's frames, not these
            started_rss = psutil.Process().memory_info().rss
            pid = self._fork()
            if pid == 0:
                child.become_child(job, own_group=self._own_group)
                child.run_call(runtest)
                return  # back up pytest's stack in the child, to the call report
            if self._own_group:
                with contextlib.suppress(OSError):  # the child does the same; whichever runs first
                    os.setpgid(pid, pid)
            self._collect(pid, job, started_rss)

        return run_isolated

    @staticmethod
    def _fork() -> int:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        # A dump_traceback_later watchdog does not survive fork and hangs the child
        # when it is cancelled there (pytest's faulthandler_timeout).
        faulthandler.cancel_dump_traceback_later()
        with warnings.catch_warnings():
            # Python 3.12+ warns about forking with threads; the child only runs the
            # test's call, and the threads it would need are the test's own.
            warnings.simplefilter("ignore", DeprecationWarning)
            return os.fork()

    def _collect(self, pid: int, job: Job, started_rss: int) -> None:
        __tracebackhide__ = True  # pytest shows the test's frames, not these
        deadline = None if job.timeout is None else time.monotonic() + job.timeout
        try:
            end = wait_for_child(pid, Limits(deadline, job.max_rss), job.faults)
        except BaseException:  # Ctrl-C in the parent: take the child down with it
            kill_group(pid) if self._own_group else os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise
        if self._own_group:
            kill_group(pid)  # whatever the test started and left running
        message = _read_message(job)
        if "report" not in message:
            job.child_end = exit_facts(end)
        if end.killed_for is not None:
            pytest.fail(self._killed_text(job, end), pytrace=False)
        if "report" in message:
            job.child = ChildReport(message["report"], message["warnings"], message["during_call"])
            job.objects_verdict = message["objects_verdict"]
            _reissue(job.child.warnings)
            return
        if "stop" in message:
            kind, text, returncode = message["stop"]
            if kind == "interrupt":
                raise KeyboardInterrupt
            pytest.exit(text, returncode)
        if "error" in message:
            pytest.fail(
                "The isolated child process running this test could not send its report:\n"
                + message["error"],
                pytrace=False,
            )
        pytest.fail(self._crash_text(job, end, started_rss), pytrace=False)

    @staticmethod
    def _killed_text(job: Job, end: ChildEnd) -> str:
        if end.killed_for == "timeout":
            text = (
                f"Timeout after {job.timeout:g} s: the isolated child process running this test was killed."
            )
        else:
            assert job.max_rss is not None
            text = (
                f"The isolated child process running this test reached {format_size(end.rss_when_killed)}"
                f" of resident memory, over the limit of {format_size(job.max_rss)} (--memray-max-rss),"
                " and was killed."
            )
        stacks = _read_text(job.faults)
        return f"{text}\n\n{stacks}" if stacks else text

    @staticmethod
    def _crash_text(job: Job, end: ChildEnd, started_rss: int) -> str:
        lines = [
            f"The isolated child process running this test {describe_exit(end.status)} before reporting a result."
        ]
        peak = _peak_from_capture(job)
        if peak is not None:
            lines.append(f"Memory allocated at the peak before the crash: {format_size(peak)} (memray).")
        elif end.max_rss > started_rss:
            lines.append(
                f"Resident memory grew by about {format_size(end.max_rss - started_rss)} before the crash"
                " (the child's peak resident size; the aggregated capture is unreadable after a crash,"
                " use --memray-capture-format=all for memray's figure)."
            )
        stacks = _read_text(job.faults)
        if stacks:
            lines += ["", stacks]
        return "\n".join(lines)


def _peak_from_capture(job: Job) -> Optional[int]:
    """memray's peak from the capture of a crashed child, where its format survives a crash."""
    if not job.tracker.all_allocations:
        return None
    try:
        with FileReader(job.capture) as reader:
            peak = int(reader.metadata.peak_memory)
    except OSError:
        return None
    return peak


def _read_message(job: Job) -> Dict[str, Any]:
    try:
        with open(job.message, "rb") as stream:
            message: Dict[str, Any] = pickle.load(stream)
    except FileNotFoundError:
        return {}
    except Exception as error:  # a child killed while writing
        return {"error": f"its message was unreadable ({error!r})"}
    return message
