"""Fork isolation: each tracked call runs in a child forked from the pytest process.

Fixtures are set up and torn down here in the parent; only the call crosses into the
child, so session and module fixtures are never set up or torn down twice. The child
runs in a process group of its own, so everything it starts is killed with it.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import random
import warnings
from typing import Callable, List

import pytest

from .. import _names
from .._integrations.xdist import controller_link
from .._tracking.tracker import prepare_for_forks
from . import leftovers
from .child import become_child
from .child_end import await_child
from .messages import Job
from .runner import flush_output
from .supervise import OwnChild, reap_reported, report_pipe, resident_size

__all__ = ["ForkRunner", "quiet_fork"]


def quiet_fork() -> int:
    """``os.fork()`` with the output flushed and no pending watchdog.

    The child keeps the parent's ``random`` state: the ``random`` module reseeds itself in
    a forked child, which would give a test other numbers than without isolation (and
    undo pytest-randomly's seeding).
    """
    flush_output()
    # A dump_traceback_later watchdog does not survive fork and hangs the child
    # when it is cancelled there (pytest's faulthandler_timeout).
    faulthandler.cancel_dump_traceback_later()
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking with threads; the child only runs the
        # test's call, and the threads it would need are the test's own.
        warnings.simplefilter("ignore", DeprecationWarning)
        random_state = random.getstate()
        pid = os.fork()
    if pid == 0:
        random.setstate(random_state)
    return pid


class ForkRunner:
    """Runs each tracked call in a forked child and collects what the child reported."""

    def __init__(self, config: pytest.Config, *, own_group: bool = True) -> None:
        self._config = config
        self._own_group = own_group
        prepare_for_forks()
        leftovers.prepare()

    #: The forked child inherits the test function already wrapped in its Tracker.
    tracks_here = True

    def wrap(self, item: pytest.Item, runtest: Callable[[], object], job: Job) -> Callable[[], None]:
        """A replacement for ``item.runtest`` that runs the original in a child."""

        def run_isolated() -> None:
            __tracebackhide__ = True  # pytest shows the test's frames, not these
            reap_reported()
            reported, report_signal = report_pipe()
            try:
                pid = quiet_fork()
            except BaseException:
                os.close(reported)
                os.close(report_signal)
                raise
            if pid == 0:
                os.close(reported)
                plugin = become_child(
                    self._config,
                    job.spec,
                    job.notes,
                    own_group=self._own_group,
                    report_signal=report_signal,
                    replaces=self._parent_only(),
                )
                plugin.run_call(item, runtest)
                return  # back up pytest's stack in the child, to the call report
            os.close(report_signal)
            if self._own_group:
                with contextlib.suppress(OSError):  # the child does the same; whichever runs first
                    os.setpgid(pid, pid)
            # The child started from this process's size, which has not changed since.
            await_child(
                OwnChild(pid, reported), job, started_rss=_own_resident_size, own_group=self._own_group
            )

        return run_isolated

    def _parent_only(self) -> List[object]:
        """The plugins whose work is the parent's: the plugin's own parent roles, and
        pytest-xdist's link to the controller."""
        manager = self._config.pluginmanager
        own = [manager.get_plugin(name) for name in _names.PARENT_ONLY]
        return [plugin for plugin in own if plugin is not None] + controller_link(self._config)

    def close(self) -> None:
        """Reap the last child; nothing else outlives a test in fork mode."""
        reap_reported()


def _own_resident_size() -> int:
    return resident_size(os.getpid())
