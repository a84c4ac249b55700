"""Waiting for an isolated child: until it exits, its deadline passes, or its memory runs away.

Without a deadline or a memory ceiling the parent simply blocks in ``wait4``. With one,
it sleeps on the child's pidfd (woken the moment the child exits) or, where there is no
pidfd, in short steps, and checks the clock and the child's resident memory in between.
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
from typing import Optional, Tuple

import psutil

__all__ = ["ChildEnd", "Limits", "kill_group", "wait_for_child"]

#: How often the child's resident memory is read while it runs.
_RSS_INTERVAL = 0.01
#: How long a timed-out child gets to write its stack dump before it is killed.
_DUMP_GRACE = 1.0


@dataclass(frozen=True)
class Limits:
    """What the parent enforces on one child: a deadline (monotonic clock) and a ceiling."""

    deadline: Optional[float] = None
    max_rss: Optional[int] = None


@dataclass(frozen=True)
class ChildEnd:
    """How a child ended: its wait status, its peak resident memory, and why it was killed."""

    status: int
    max_rss: int
    killed_for: Optional[str] = None  # "timeout" or "memory"
    rss_when_killed: int = 0


def _max_rss_bytes(ru_maxrss: int) -> int:
    return ru_maxrss if sys.platform == "darwin" else ru_maxrss * 1024


def _reap(pid: int, flags: int) -> Optional[Tuple[int, int]]:
    __tracebackhide__ = True  # pytest shows the test's frames, not these
    reaped, status, usage = os.wait4(pid, flags)
    return None if reaped == 0 else (status, _max_rss_bytes(usage.ru_maxrss))


def kill_group(pid: int) -> None:
    """Kill the child's process group: the child and whatever it started."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class _ExitSignal:
    """Sleeps until the child exits or the timeout passes (pidfd where the OS has one)."""

    def __init__(self, pid: int) -> None:
        self._poll: Optional[select.poll] = None
        self._fd = -1
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                self._fd = pidfd_open(pid)
            except OSError:
                self._fd = -1
        if self._fd >= 0:
            self._poll = select.poll()
            self._poll.register(self._fd, select.POLLIN)

    def sleep(self, seconds: float) -> None:
        if self._poll is not None:
            self._poll.poll(max(0, int(seconds * 1000)) + 1)
        else:
            time.sleep(min(seconds, 0.005))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)


def _resident(pid: int) -> int:
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


def wait_for_child(pid: int, limits: Limits, dump: Path) -> ChildEnd:
    """Wait for ``pid`` to end, enforcing ``limits``; the child is always reaped."""
    __tracebackhide__ = True  # pytest shows the test's frames, not these
    if limits.deadline is None and limits.max_rss is None:
        reaped = _reap(pid, 0)
        assert reaped is not None
        return ChildEnd(*reaped)
    exit_signal = _ExitSignal(pid)
    try:
        while True:
            reaped = _reap(pid, os.WNOHANG)
            if reaped is not None:
                return ChildEnd(*reaped)
            now = time.monotonic()
            if limits.deadline is not None and now >= limits.deadline:
                _dump_then_kill(pid, dump)
                status, max_rss = _reap(pid, 0) or (0, 0)
                return ChildEnd(status, max_rss, killed_for="timeout")
            if limits.max_rss is not None:
                resident = _resident(pid)
                if resident >= limits.max_rss:
                    kill_group(pid)
                    status, max_rss = _reap(pid, 0) or (0, 0)
                    return ChildEnd(status, max_rss, killed_for="memory", rss_when_killed=resident)
            step = _RSS_INTERVAL if limits.max_rss is not None else 1.0
            if limits.deadline is not None:
                step = min(step, limits.deadline - now)
            exit_signal.sleep(step)
    finally:
        exit_signal.close()
