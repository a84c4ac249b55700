"""Waiting for an isolated child: until it reports or exits, its deadline passes, or its memory runs away.

The parent sleeps on a descriptor that wakes it the moment the child ends (the child's
pidfd, or the forkserver's reply pipe) or, where there is none, in short steps, and
checks the clock and the child's resident memory in between. Without a deadline, a
memory ceiling or such a descriptor it simply blocks until the child ends.

A forked child also writes one byte on a pipe once its report is complete. The parent
then goes on with the next test at once and reaps the child later
(:func:`reap_reported`): a process with pytest loaded takes a millisecond or two to
exit, time the parent need not spend waiting. The pipe is read for that byte, never
for its end, so a process the test started that holds the pipe open cannot stall the
parent; a child that dies without the byte is seen through its pidfd as before.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Protocol, Tuple

__all__ = [
    "ChildBudget",
    "ChildEnd",
    "OwnChild",
    "WatchedChild",
    "kill_group",
    "kill_running",
    "reap_reported",
    "report_pipe",
    "resident_size",
    "running",
    "wait_for_child",
]

#: How often the child's resident memory is read while it runs.
_RSS_INTERVAL = 0.01
#: Extra seconds a child with a time limit gets to reach its test (see ChildBudget).
STARTUP_ALLOWANCE = 60.0
#: How long a timed-out child gets to write its stack dump before it is killed.
_DUMP_GRACE = 1.0


@dataclass(frozen=True)
class ChildBudget:
    """What the parent enforces on one child: a time limit and a resident-memory ceiling.

    The time counts from when the child reaches the test (``started`` exists), so a
    spawned interpreter's start-up is not charged to the test; a child that never gets
    there has :data:`STARTUP_ALLOWANCE` seconds more. ``max_rss`` limits how much the
    child's resident memory grows beyond its size at the test's start, which it writes
    to ``start_size``: what it inherited (a fork) or loaded (fixture values) before the
    test is not the test's.
    """

    timeout: Optional[float] = None
    max_rss: Optional[int] = None
    started: Optional[Path] = None
    start_size: Optional[Path] = None


@dataclass(frozen=True)
class ChildEnd:
    """How a child ended: its wait status, its peak resident memory, and why it was killed."""

    status: int
    max_rss: int
    killed_for: Optional[str] = None  # "timeout" or "memory"
    rss_when_killed: int = 0
    #: Its resident size at the test's start, for a child killed for its memory.
    rss_at_start: int = 0


#: What :func:`wait_for_child` returns for a child that said its report is complete
#: before it exited: it has no exit status yet, and needs none.
REPORTED = ChildEnd(0, 0)

#: Children that reported before they exited, reaped by :func:`reap_reported`.
_unreaped: List[int] = []

#: Children running now (and the forkserver), each with whether it leads a process group
#: of its own: what :func:`kill_running` kills if pytest is told to end.
running: Dict[int, bool] = {}


def report_pipe() -> Tuple[int, int]:
    """A pipe for a forked child to say its report is complete: the parent reads one
    byte from the first descriptor, the child writes it on the second."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    return read_end, write_end


def reap_reported() -> None:
    """Reap the children that reported before they exited (they are exiting, or killed)."""
    while _unreaped:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(_unreaped.pop(), 0)


def max_rss_bytes(ru_maxrss: int) -> int:
    """``ru_maxrss`` in bytes (Linux counts kibibytes, macOS bytes)."""
    return ru_maxrss if sys.platform == "darwin" else ru_maxrss * 1024


def kill_group(pid: int) -> None:
    """Kill the child's process group: the child and whatever it started."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def kill_running() -> None:
    """Kill every child running now, with its process group where it has one of its own."""
    for pid, own_group in list(running.items()):
        if own_group:
            kill_group(pid)
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


class WatchedChild(Protocol):
    """A running child the parent waits for, whoever its parent process is."""

    pid: int

    def reap(self, block: bool) -> Optional[Tuple[int, int]]:
        """Its wait status and peak resident bytes once it has ended, else ``None``."""

    def exit_descriptor(self) -> int:
        """A descriptor that becomes readable when it ends, or -1 where there is none."""

    def report_descriptor(self) -> int:
        """A descriptor on which it says its report is complete, or -1 where there is none."""

    def reap_later(self) -> None:
        """It said its report is complete but may still be exiting: have it reaped without
        waiting for it now."""

    def close(self) -> None:
        """Release what watching it took."""


class OwnChild:
    """A child of this process (forked or spawned): reaped with ``wait4``, watched by pidfd.

    ``report_signal`` is the read end of a :func:`report_pipe` the child writes on, if any.
    """

    def __init__(self, pid: int, report_signal: int = -1) -> None:
        self.pid = pid
        self._fd = -1
        self._report_signal = report_signal

    def reap(self, block: bool) -> Optional[Tuple[int, int]]:
        __tracebackhide__ = True  # pytest shows the test's frames, not these
        reaped, status, usage = os.wait4(self.pid, 0 if block else os.WNOHANG)
        return None if reaped == 0 else (status, max_rss_bytes(usage.ru_maxrss))

    def reap_later(self) -> None:
        _unreaped.append(self.pid)

    def report_descriptor(self) -> int:
        return self._report_signal

    def exit_descriptor(self) -> int:
        pidfd_open = getattr(os, "pidfd_open", None)
        if self._fd < 0 and pidfd_open is not None:
            with contextlib.suppress(OSError):
                self._fd = pidfd_open(self.pid)
        return self._fd

    def close(self) -> None:
        for descriptor in (self._fd, self._report_signal):
            if descriptor >= 0:
                os.close(descriptor)
        self._fd = self._report_signal = -1


class _ExitSignal:
    """Sleeps until the child ends, says its report is complete, or the timeout passes.

    The report byte is watched only together with the child's end: without a pidfd a
    child that dies without reporting would leave nothing to wake on.
    """

    def __init__(self, child: WatchedChild) -> None:
        self._poll: Optional[select.poll] = None
        self._report = -1
        descriptor = child.exit_descriptor()
        if descriptor >= 0:
            self._poll = select.poll()
            self._poll.register(descriptor, select.POLLIN)
            self._report = child.report_descriptor()
            if self._report >= 0:
                self._poll.register(self._report, select.POLLIN)

    @property
    def sees_report(self) -> bool:
        """Whether the child's report-complete byte can still arrive and wake this."""
        return self._report >= 0

    def reported(self) -> bool:
        """Whether the child said its report is complete (it may still be exiting)."""
        if self._report < 0:
            return False
        try:
            byte = os.read(self._report, 1)
        except BlockingIOError:
            return False
        if byte:
            return True
        # Closed without the byte (the child died, or closed it): only its end can tell now.
        assert self._poll is not None
        self._poll.unregister(self._report)
        self._report = -1
        return False

    def sleep(self, seconds: Optional[float]) -> None:
        """Sleep at most ``seconds`` (``None``: until something happens)."""
        if self._poll is not None:
            self._poll.poll(None if seconds is None else max(0, int(seconds * 1000)) + 1)
        else:
            time.sleep(min(5.0 if seconds is None else seconds, 0.005))


def resident_size(pid: int) -> int:
    """A process's resident memory in bytes; 0 once it is gone."""
    import psutil  # here, not at the top: it would cost every pytest start-up 7 ms

    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


def _dump_then_kill(pid: int, dump: Path) -> None:
    """Ask the child for its stacks (SIGUSR1, see child.py), give it a moment, kill it."""
    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        return
    give_up = time.monotonic() + _DUMP_GRACE
    while time.monotonic() < give_up:
        if dump.exists() and dump.stat().st_size > 0:
            time.sleep(0.05)  # let it finish the other threads' stacks
            break
        time.sleep(0.01)
    kill_group(pid)


def _ended(
    child: WatchedChild,
    block: bool,
    killed_for: Optional[str] = None,
    rss_when_killed: int = 0,
    rss_at_start: int = 0,
) -> Optional[ChildEnd]:
    reaped = child.reap(block)
    if reaped is None:
        return None
    return ChildEnd(reaped[0], reaped[1], killed_for, rss_when_killed, rss_at_start)


def _read_start_size(path: Path) -> Optional[int]:
    """The size the child wrote at the test's start, once its line is whole; else ``None``."""
    try:
        text = path.read_text()
    except OSError:
        return None
    return int(text) if text.endswith("\n") else None


class _Ceiling:
    """The resident size the child may reach: its size at the test's start plus ``max_rss``.

    Until the child has written that size it is still starting (a forkserver or spawn
    child loading fixture values), and no ceiling applies yet.
    """

    def __init__(self, budget: ChildBudget) -> None:
        self._growth = budget.max_rss
        self._start_file = budget.start_size
        self.start: Optional[int] = None

    def reached(self, pid: int) -> Optional[int]:
        """The child's resident size if it grew ``max_rss`` or more beyond its start, else ``None``."""
        if self._growth is None:
            return None
        if self.start is None:
            self.start = None if self._start_file is None else _read_start_size(self._start_file)
            if self.start is None:
                return None
        resident = resident_size(pid)
        return resident if resident - self.start >= self._growth else None


class _Deadline:
    """When the child's time is up: counted from its start at the test, once it gets there."""

    def __init__(self, budget: ChildBudget) -> None:
        self._timeout = budget.timeout
        self._started_file = budget.started if budget.timeout is not None else None
        self.at: Optional[float] = None
        if self._timeout is not None:
            allowance = 0.0 if self._started_file is None else STARTUP_ALLOWANCE
            self.at = time.monotonic() + self._timeout + allowance

    def update(self, now: float) -> None:
        if self._timeout is None or self._started_file is None or not self._started_file.exists():
            return
        self._started_file = None
        self.at = now + self._timeout

    @property
    def waiting_for_start(self) -> bool:
        return self._started_file is not None


def wait_for_child(child: WatchedChild, budget: ChildBudget, dump: Path) -> ChildEnd:
    """Wait for ``child`` to end, enforcing ``budget``; the child is reaped, unless it said its
    report is complete before it ended (then :data:`REPORTED`, and :func:`reap_reported` later)."""
    __tracebackhide__ = True  # pytest shows the test's frames, not these
    try:
        exit_signal = _ExitSignal(child)
        unlimited = budget.timeout is None and budget.max_rss is None
        if unlimited and not exit_signal.sees_report:
            end = _ended(child, True)
            assert end is not None
            return end
        deadline = _Deadline(budget)
        ceiling = _Ceiling(budget)
        while True:
            if exit_signal.reported():
                child.reap_later()
                return REPORTED
            end = _ended(child, False)
            if end is not None:
                return end
            if unlimited:
                exit_signal.sleep(None)
                continue
            now = time.monotonic()
            deadline.update(now)
            if deadline.at is not None and now >= deadline.at:
                _dump_then_kill(child.pid, dump)
                return _ended(child, True, "timeout") or ChildEnd(0, 0, "timeout")
            resident = ceiling.reached(child.pid)
            if resident is not None:
                kill_group(child.pid)
                start = ceiling.start or 0
                return _ended(child, True, "memory", resident, start) or ChildEnd(
                    0, 0, "memory", resident, start
                )
            often = budget.max_rss is not None or deadline.waiting_for_start
            step = _RSS_INTERVAL if often else 1.0
            if deadline.at is not None:
                step = min(step, deadline.at - now)
            exit_signal.sleep(step)
    finally:
        child.close()
