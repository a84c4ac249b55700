"""SIGTERM and SIGHUP to pytest: its isolated children and temporary files go with it.

Without the plugin, either signal ends pytest at once. Its isolated children run in
process groups (and the forkserver and spawned children in sessions) of their own,
which the signal does not reach; they would outlive pytest, and so would the plugin's
temporary directory. So the plugin handles both signals while pytest runs: it kills
every running child's group and removes the directory, then puts back the default
handler and sends the signal again, so pytest ends exactly as it would have. A signal
that pytest's process already handles or ignores (``nohup``) is left alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
from types import FrameType
from typing import Callable, List, Optional

__all__ = ["TerminationGuard"]

_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class TerminationGuard:
    """Runs ``clean_up`` when pytest's process is told to end, then lets it end.

    A forked child inherits the handler; there it only puts the default back and ends
    the child (resetting the handlers in every child would cost each test 12 us).
    """

    def __init__(self, clean_up: Callable[[], None]) -> None:
        self._clean_up = clean_up
        self._owner = os.getpid()
        self._guarded: List[signal.Signals] = []
        for signum in _SIGNALS:
            with contextlib.suppress(ValueError, OSError):  # not the main thread: no handlers
                if signal.getsignal(signum) == signal.SIG_DFL:
                    signal.signal(signum, self._terminated)
                    self._guarded.append(signum)

    def _terminated(self, signum: int, frame: Optional[FrameType]) -> None:
        if os.getpid() == self._owner:
            with contextlib.suppress(Exception):
                self._clean_up()
        self.restore()
        os.kill(os.getpid(), signum)

    def restore(self) -> None:
        """Put back the default handlers (at pytest's end, or on the signal itself)."""
        while self._guarded:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(self._guarded.pop(), signal.SIG_DFL)
