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
from typing import Any, Callable, List, Optional, Tuple, Union

import pytest

from .._capture_files import region_capture
from .._judging.capture import MemoryResult, RegionFigures, read_capture, read_region
from .._sizes import format_size
from .._tracking.window import close_window, quiet_memray, trim_padding
from .messages import (
    CallSpec,
    ChildOutcome,
    ExitFacts,
    Job,
    Logged,
    RegionMeasured,
    RegionOpened,
    Reply,
    Reported,
    ReportLost,
    SerializedReport,
    Stopped,
    Unrunnable,
    WarningRecord,
)
from .supervise import ChildBudget, ChildEnd, WatchedChild, kill_group, running, wait_for_child

__all__ = ["await_child", "describe_exit", "exit_facts", "read_logged", "read_reply"]


def _exit_code_and_signal(status: int) -> Tuple[int, Optional[str]]:
    """The exit code from a wait status (negative for a signal) and the signal's name."""
    code = os.waitstatus_to_exitcode(status)
    name = None
    if code < 0:
        with contextlib.suppress(ValueError):
            name = signal.Signals(-code).name
    return code, name


def exit_facts(end: ChildEnd) -> ExitFacts:
    """How a child ended: exit code or signal, and why it was killed."""
    code, signal_name = _exit_code_and_signal(end.status)
    return ExitFacts(code if code >= 0 else None, signal_name, end.killed_for, end.max_rss)


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


def _reissue(recorded: Tuple[WarningRecord, ...]) -> None:
    """Raise the child's warnings again here, where pytest's warning capture sees them."""
    for text, module, qualname, filename, lineno in recorded:
        warnings.warn_explicit(text, _warning_category(module, qualname), filename, lineno)


def _read_text(path: Any) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            return str(stream.read()).strip()
    except OSError:
        return ""


def await_child(
    child: WatchedChild,
    job: Job,
    *,
    started_rss: Optional[Callable[[], int]],
    own_group: bool = True,
    time_from_start: bool = False,
    output_captured_here: bool = False,
) -> None:
    """Wait for ``child``, then set ``job.child``, and fail the test saying why when it sent no report.

    ``started_rss`` gives the resident size the child started from (a forked child shares
    pytest's), to say how much it grew before a crash; ``None`` for a fresh interpreter.
    With ``time_from_start`` the timeout counts from when the child reaches the test
    (it creates the spec's faults file there), not from its start-up.
    """
    __tracebackhide__ = True  # pytest shows the test's frames, not these
    spec = job.spec
    budget = ChildBudget(
        spec.timeout, spec.max_rss, spec.faults_file if time_from_start else None, spec.start_size_file
    )
    running[child.pid] = own_group
    try:
        end = wait_for_child(child, budget, spec.faults_file)
    except BaseException:  # Ctrl-C in the parent: take the child down with it
        kill_group(child.pid) if own_group else os.kill(child.pid, signal.SIGKILL)
        child.reap(True)
        raise
    finally:
        del running[child.pid]
    if own_group:
        kill_group(child.pid)  # whatever the test started and left running
    window_closed = spec.window_marker is not None and close_window(spec.capture, spec.window_marker)
    reply = read_reply(spec)
    reported = reply if isinstance(reply, Reported) else None
    during_call, regions = (
        (reported.during_call, reported.regions) if reported is not None else read_logged(spec)
    )
    job.child = ChildOutcome(
        reported=reported,
        during_call=during_call,
        regions=regions,
        exit_facts=None if reported is not None else exit_facts(end),
        window_closed=window_closed,
        output_captured_here=output_captured_here,
    )
    if end.killed_for is not None:
        pytest.fail(_killed_text(spec, end, regions), pytrace=False)
    if isinstance(reply, Reported):
        _reissue(reply.warnings)
        return
    if isinstance(reply, Stopped):
        if reply.kind == "interrupt":
            raise KeyboardInterrupt
        pytest.exit(reply.text, reply.returncode)
    if isinstance(reply, Unrunnable):
        pytest.fail(reply.text, pytrace=False)
    if isinstance(reply, ReportLost):
        pytest.fail(
            "The isolated child process running this test could not send its report:\n" + reply.error,
            pytrace=False,
        )
    started = None if started_rss is None else started_rss()
    pytest.fail(_crash_text(spec, end, started, regions), pytrace=False)


def _killed_text(spec: CallSpec, end: ChildEnd, regions: Tuple[RegionFigures, ...]) -> str:
    if end.killed_for == "timeout":
        text = f"Timeout after {spec.timeout:g} s: the isolated child process running this test was killed."
    else:
        assert spec.max_rss is not None
        grown = end.rss_when_killed - end.rss_at_start
        text = (
            f"The isolated child process running this test grew by {format_size(grown)} of resident"
            f" memory (from {format_size(end.rss_at_start)} at its start to"
            f" {format_size(end.rss_when_killed)}), over the limit of {format_size(spec.max_rss)}"
            " (--memray-max-rss), and was killed."
        )
    lines = [text, *_memray_lines(*_figures_at_death(spec, regions), "it was killed")]
    stacks = _read_text(spec.faults_file)
    if stacks:
        lines += ["", stacks]
    return "\n".join(lines)


def _crash_text(
    spec: CallSpec, end: ChildEnd, started_rss: Optional[int], regions: Tuple[RegionFigures, ...]
) -> str:
    lines = [
        f"The isolated child process running this test {describe_exit(end.status)} before reporting a result."
    ]
    if not spec.scratch.parent.exists():
        lines.append(
            f"The plugin's temporary directory {spec.scratch.parent} no longer exists (a test removed it):"
            " the child could not send its report."
        )
    figures, region_note = _figures_at_death(spec, regions)
    lines += _memray_lines(figures, region_note, "the crash")
    unreadable = (
        ""
        if figures is not None or spec.regions
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
    stacks = _read_text(spec.faults_file)
    if stacks:
        lines += ["", stacks]
    # Start-up output (the child session's own header, a plugin's warning) explains only a
    # child that never reached the test; the test's own output is in its report sections.
    startup = "" if spec.faults_file.exists() else _read_text(spec.startup_output_file)
    if startup:
        lines += ["", "Its output before it reached the test:", startup]
    return "\n".join(lines)


def _last_region_started(spec: CallSpec) -> int:
    """The number of the last region a test measuring regions started (its capture exists)."""
    number = 0
    while region_capture(spec.capture, number + 1).exists():
        number += 1
    return number


def _figures_at_death(
    spec: CallSpec, regions: Tuple[RegionFigures, ...]
) -> Tuple[Union[MemoryResult, RegionFigures, None], str]:
    """memray's figures of a child that did not report, and which region they are of.

    A test measuring regions has the figures of the last region it started: the one it
    died in (read from its capture by ``read_logged``), or the last before it died. Other
    tests have those of their capture, where its format survives a crash (an aggregated
    capture is written only when its Tracker stops).
    """
    if spec.regions:
        number = _last_region_started(spec)
        last = next((region for region in regions if region.number == number), None)
        return last, "" if last is None else f", in memray_region {number}"
    if not (spec.tracker.all_allocations or spec.tracker.ends_open) or spec.repeats > 1:
        return None, ""
    if spec.window_marker is None:
        trim_padding(spec.capture)  # close_window trimmed the others
    with quiet_memray():
        try:
            return read_capture(spec.capture, spec.nodeid), ""
        except Exception:  # nothing written yet, or not a capture at all
            return None, ""


def _memray_lines(figures: Union[MemoryResult, RegionFigures, None], note: str, until: str) -> List[str]:
    """memray's peak up to ``until`` and the biggest allocating places at that peak (nothing
    for a test that had allocated nothing yet); ``note`` says which region they are of."""
    if figures is None or figures.peak_memory == 0:
        return []
    peak = format_size(figures.peak_memory)
    lines = [f"Memory allocated at the peak before {until}: {peak} (memray{note})."]
    if figures.top_locations:
        lines.append("Biggest allocating places at that peak:")
        lines += [
            f"\t- {where.function}:{where.filename}:{where.lineno} -> {format_size(where.size)}"
            for where in figures.top_locations
        ]
    return lines


def read_logged(spec: CallSpec) -> Tuple[Tuple[SerializedReport, ...], Tuple[RegionFigures, ...]]:
    """What a child that sent no call report had logged (see ``ChildPlugin`` and region.py):
    the subtests' reports, and the regions it measured, with the one it died in read from
    that region's capture. A record torn by its death ends the file."""
    logged: List[SerializedReport] = []
    measured: List[RegionFigures] = []
    opened: Optional[RegionOpened] = None
    try:
        with open(spec.logged_file, "rb") as stream:
            while True:
                entry = pickle.load(stream)
                if isinstance(entry, Logged):
                    logged.append(entry.report)
                elif isinstance(entry, RegionOpened):
                    opened = entry
                elif isinstance(entry, RegionMeasured):
                    measured.append(entry.figures)
                else:
                    break
    except Exception:  # no file, its end, or a torn last record
        pass
    if opened is not None and all(region.number != opened.number for region in measured):
        died_in = _unfinished_region(spec, opened)
        if died_in is not None:
            measured.append(died_in)
    return tuple(logged), tuple(measured)


def _unfinished_region(spec: CallSpec, opened: RegionOpened) -> Optional[RegionFigures]:
    """The figures of the region a child died in, up to its death (none if its capture has
    no allocation yet); what it leaked is not known, as the region never ended."""
    capture = region_capture(spec.capture, opened.number)
    trim_padding(capture)
    with quiet_memray():
        try:
            return read_region(capture, opened.number, opened.filename, opened.lineno, leaks=False)
        except Exception:  # nothing written yet
            return None


def read_reply(spec: CallSpec) -> Optional[Reply]:
    """The child's reply, ``None`` if it wrote none (it died first)."""
    try:
        with open(spec.reply_file, "rb") as stream:
            reply: Reply = pickle.load(stream)
    except FileNotFoundError:
        return None
    except Exception as error:  # a child killed while writing
        return ReportLost(f"its message was unreadable ({error!r})")
    return reply
