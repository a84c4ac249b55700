"""Waiting for a forked child that says when its report is complete (_isolation/supervise.py).

The parent must go on as soon as the byte arrives, and must still see a child that dies
without it, even while a process the child started keeps the pipe open.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Callable

import pytest

from pytest_memray_isolate._isolation import supervise
from pytest_memray_isolate._isolation.child_end import describe_exit

pytestmark = [
    pytest.mark.skipif(
        not hasattr(os, "fork") or not hasattr(os, "pidfd_open"), reason="needs fork and pidfd"
    ),
    # Python 3.12+ warns when a process with threads (pytest-xdist's) forks; these children
    # only sleep, write a byte and exit.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    # The children linger for a minute: a wait that missed the byte or the child's end would
    # hang that long, so it fails sooner.
    pytest.mark.timeout(30),
]


def _fork(child: Callable[[int], None]) -> supervise.OwnChild:
    """Fork a child that runs ``child(write_end)`` and exits; watch it as the fork runner does."""
    read_end, write_end = supervise.report_pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_end)
            child(write_end)
        finally:
            os._exit(0)
    os.close(write_end)
    os.setpgid(pid, pid)
    return supervise.OwnChild(pid, read_end)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_child_that_reported_is_left_to_exit_and_reaped_later(tmp_path: Path) -> None:
    """The byte ends the wait although the child still runs; it is reaped later, not lost."""

    def report_then_linger(write_end: int) -> None:
        os.write(write_end, b"!")
        time.sleep(60)

    child = _fork(report_then_linger)
    end = supervise.wait_for_child(child, supervise.ChildBudget(), tmp_path / "faults")
    assert end is supervise.REPORTED
    assert _alive(child.pid)  # still there (not reaped): the parent did not wait for it
    supervise.kill_group(child.pid)
    supervise.reap_reported()
    with pytest.raises(ChildProcessError):
        os.waitpid(child.pid, os.WNOHANG)


def test_a_child_that_dies_without_the_byte_is_seen_while_its_own_child_holds_the_pipe(
    tmp_path: Path,
) -> None:
    """A grandchild keeps the pipe open, so only the child's pidfd can tell that it died."""

    def fork_then_die(write_end: int) -> None:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        os._exit(3)

    child = _fork(fork_then_die)
    try:
        end = supervise.wait_for_child(child, supervise.ChildBudget(), tmp_path / "faults")
    finally:
        supervise.kill_group(child.pid)
    assert describe_exit(end.status) == "exited with status 3"


@pytest.mark.parametrize(
    "budget", [supervise.ChildBudget(), supervise.ChildBudget(timeout=60.0)], ids=["no limit", "timeout"]
)
def test_a_child_that_closes_the_pipe_early_is_waited_for_to_the_end(
    tmp_path: Path, budget: supervise.ChildBudget
) -> None:
    """A closed pipe without the byte is not a report: the wait goes on until the child ends."""

    def close_then_exit(write_end: int) -> None:
        os.close(write_end)
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGTERM)

    child = _fork(close_then_exit)
    end = supervise.wait_for_child(child, budget, tmp_path / "faults")
    assert end is not supervise.REPORTED
    assert describe_exit(end.status) == "was killed by signal SIGTERM (15)"
