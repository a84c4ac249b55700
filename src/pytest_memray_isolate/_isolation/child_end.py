"""What an isolated child's end means for its test: its report, or why it has none.

Every isolation mode ends here: the parent waits for the child (enforcing the timeout
and the memory ceiling), takes back the call report the child sent, or fails the test
saying how the child ended.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

from .._judging.capture import MemoryResult, read_capture
from .._sizes import format_size
from .._tracking.window import close_window, quiet_memray, trim_padding
from .messages import ChildReport, Job, WarningRecord
from .supervise import ChildEnd, Limits, WatchedChild, kill_group, running, wait_for_child

__all__ = ["collect", "describe_exit", "exit_facts", "read_logged", "read_message"]


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


def collect(
    child: WatchedChild,
    job: Job,
    *,
    started_rss: Optional[Callable[[], int]],
    own_group: bool = True,
    time_from_start: bool = False,
) -> None:
    """Wait for ``child``, then put its report on ``job`` or fail the test saying why there is none.

    ``started_rss`` gives the resident size the child started from (a forked child shares
    pytest's), to say how much it grew before a crash; ``None`` for a fresh interpreter.
    With ``time_from_start`` the timeout counts from when the child reaches the test
    (it creates the job's faults file there), not from its start-up.
    """
    __tracebackhide__ = True  # pytest shows the test's frames, not these
    limits = Limits(job.timeout, job.max_rss, job.faults if time_from_start else None, job.start_size)
    running[child.pid] = own_group
    try:
        end = wait_for_child(child, limits, job.faults)
    except BaseException:  # Ctrl-C in the parent: take the child down with it
        kill_group(child.pid) if own_group else os.kill(child.pid, signal.SIGKILL)
        child.reap(True)
        raise
    finally:
        del running[child.pid]
    if own_group:
        kill_group(child.pid)  # whatever the test started and left running
    if job.window_marker is not None:
        job.window_closed = close_window(job.capture, job.window_marker)
    message = read_message(job)
    job.during_call = message["during_call"] if "report" in message else read_logged(job)
    if "report" not in message:
        job.child_end = exit_facts(end)
    if end.killed_for is not None:
        pytest.fail(_killed_text(job, end), pytrace=False)
    if "report" in message:
        job.child = ChildReport(message["report"], message["warnings"])
        job.objects_verdict = message["objects_verdict"]
        _reissue(job.child.warnings)
        return
    if "stop" in message:
        kind, text, returncode = message["stop"]
        if kind == "interrupt":
            raise KeyboardInterrupt
        pytest.exit(text, returncode)
    if "unrunnable" in message:
        pytest.fail(message["unrunnable"], pytrace=False)
    if "error" in message:
        pytest.fail(
            "The isolated child process running this test could not send its report:\n" + message["error"],
            pytrace=False,
        )
    pytest.fail(_crash_text(job, end, None if started_rss is None else started_rss()), pytrace=False)


def _killed_text(job: Job, end: ChildEnd) -> str:
    if end.killed_for == "timeout":
        text = f"Timeout after {job.timeout:g} s: the isolated child process running this test was killed."
    else:
        assert job.max_rss is not None
        grown = end.rss_when_killed - end.rss_at_start
        text = (
            f"The isolated child process running this test grew by {format_size(grown)} of resident"
            f" memory (from {format_size(end.rss_at_start)} at its start to"
            f" {format_size(end.rss_when_killed)}), over the limit of {format_size(job.max_rss)}"
            " (--memray-max-rss), and was killed."
        )
    lines = [text, *_memray_lines(_figures_from_capture(job), "it was killed")]
    stacks = _read_text(job.faults)
    if stacks:
        lines += ["", stacks]
    return "\n".join(lines)


def _crash_text(job: Job, end: ChildEnd, started_rss: Optional[int]) -> str:
    lines = [
        f"The isolated child process running this test {describe_exit(end.status)} before reporting a result."
    ]
    if not job.scratch.parent.exists():
        lines.append(
            f"The plugin's temporary directory {job.scratch.parent} no longer exists (a test removed it):"
            " the child could not send its report."
        )
    figures = _figures_from_capture(job)
    lines += _memray_lines(figures, "the crash")
    unreadable = (
        ""
        if figures is not None
        else "; the aggregated capture is unreadable after a crash,"
        " use --memray-capture-format=all for memray's figure"
    )
    if started_rss is not None and end.max_rss > started_rss:
        lines.append(
            f"Resident memory grew by about {format_size(end.max_rss - started_rss)} before the crash"
            f" (the child's peak resident size{unreadable})."
        )
    elif started_rss is None and end.max_rss > 0:
        note = f" ({unreadable[2:]})" if unreadable else ""
        lines.append(f"The child's peak resident size was {format_size(end.max_rss)}{note}.")
    stacks = _read_text(job.faults)
    if stacks:
        lines += ["", stacks]
    # Start-up output (the child session's own header, a plugin's warning) explains only a
    # child that never reached the test; the test's own output is in its report sections.
    startup = "" if job.faults.exists() else _read_text(job.startup_output)
    if startup:
        lines += ["", "Its output before it reached the test:", startup]
    return "\n".join(lines)


def _figures_from_capture(job: Job) -> Optional[MemoryResult]:
    """memray's figures from the capture of a child that did not report, where its format
    survives a crash (an aggregated capture is written only when its Tracker stops)."""
    if not (job.tracker.all_allocations or job.tracker.ends_open) or job.repeats > 1:
        return None
    if job.window_marker is None:
        trim_padding(job.capture)  # close_window trimmed the others
    with quiet_memray():
        try:
            return read_capture(job.capture, job.nodeid)
        except Exception:  # nothing written yet, or not a capture at all
            return None


def _memray_lines(figures: Optional[MemoryResult], until: str) -> List[str]:
    """memray's peak up to ``until`` and the biggest allocating places at that peak (nothing
    for a test that had allocated nothing yet)."""
    if figures is None or figures.peak_memory == 0:
        return []
    lines = [f"Memory allocated at the peak before {until}: {format_size(figures.peak_memory)} (memray)."]
    if figures.top_locations:
        lines.append("Biggest allocating places at that peak:")
        lines += [
            f"\t- {where.function}:{where.filename}:{where.lineno} -> {format_size(where.size)}"
            for where in figures.top_locations
        ]
    return lines


def read_logged(job: Job) -> List[Dict[str, Any]]:
    """The reports a child that sent no call report had logged (see ``child.keep_for_parent``);
    a record torn by its death ends the list."""
    logged: List[Dict[str, Any]] = []
    try:
        with open(job.logged, "rb") as stream:
            while True:
                logged.append(pickle.load(stream)["report"])
    except Exception:  # no file, its end, or a torn last record
        return logged


def read_message(job: Job) -> Dict[str, Any]:
    try:
        with open(job.message, "rb") as stream:
            message: Dict[str, Any] = pickle.load(stream)
    except FileNotFoundError:
        return {}
    except Exception as error:  # a child killed while writing
        return {"error": f"its message was unreadable ({error!r})"}
    return message
