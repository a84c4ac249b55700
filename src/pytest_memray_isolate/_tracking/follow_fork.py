"""Which of the processes a test forked were still running when its call ended.

With ``--memray-follow-fork`` every process forked while the Tracker runs writes a
capture of its own, complete only once that process has ended. Only the process that
ran the test can tell, right after the call, which of them are still running (under
isolation they are killed with the test's child soon after); it writes their pids
down for the process that judges the test, which leaves their captures out.
"""

from __future__ import annotations

import contextlib
from typing import FrozenSet

from .._capture_files import forked_captures
from .._isolation.messages import CallSpec

__all__ = ["note_running", "still_running"]


def _is_running(pid: int) -> bool:
    import psutil  # here, not at the top: it would cost every pytest start-up 7 ms

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:  # gone: it has ended and been reaped
        return False


def note_running(spec: CallSpec) -> None:
    """Write down the pids of the test's forked processes that have not ended yet."""
    running = [pid for pid, _ in forked_captures(spec.capture) if _is_running(pid)]
    with contextlib.suppress(OSError):
        spec.still_running_file.write_text(" ".join(map(str, running)))


def still_running(spec: CallSpec) -> FrozenSet[int]:
    """The pids ``note_running`` wrote down (none if it never ran: the test's process died first)."""
    try:
        words = spec.still_running_file.read_text().split()
    except OSError:
        return frozenset()
    return frozenset(int(word) for word in words)
