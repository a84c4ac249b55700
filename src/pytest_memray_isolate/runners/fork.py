"""Fork isolation: each tracked call runs in a child forked from the pytest process.

Fixtures are set up and torn down here in the parent; only the call crosses into the
child, so session and module fixtures are never set up or torn down twice.
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import signal
import sys
import warnings
from typing import Any, Callable, Dict, List, Tuple

import pytest

from . import ChildReport, Job, child

__all__ = ["ForkRunner", "describe_exit"]


def describe_exit(status: int) -> str:
    """Say how a child ended, from its wait status: ``killed by signal SIGSEGV (11)``."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "an unknown signal"
        return f"was killed by signal {name} ({-code})"
    return f"exited with status {code}"


def _warning_category(module: str, qualname: str) -> type[Warning]:
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if isinstance(found, type) and issubclass(found, Warning):
        return found
    return UserWarning


def _reissue(recorded: List[Tuple[str, str, str, str, int]]) -> None:
    """Raise the child's warnings again here, where pytest's warning capture sees them."""
    for text, module, qualname, filename, lineno in recorded:
        warnings.warn_explicit(text, _warning_category(module, qualname), filename, lineno)


class ForkRunner:
    """Runs each tracked call in a forked child and collects what the child reported."""

    def __init__(self) -> None:
        # memray's Tracker imports and computes this on first use; doing it once here
        # saves every child about 10 ms.
        from memray.reporters.module_tools import get_python_path_info

        get_python_path_info()

    def wrap(self, runtest: Callable[[], object], job: Job) -> Callable[[], None]:
        """A replacement for ``item.runtest`` that runs the original in a child."""

        def run_isolated() -> None:
            pid = self._fork()
            if pid == 0:
                child.become_child(job)
                child.run_call(runtest)
                return  # back up pytest's stack in the child, to the call report
            self._collect(pid, job)

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

    @staticmethod
    def _collect(pid: int, job: Job) -> None:
        try:
            _, status = os.waitpid(pid, 0)
        except BaseException:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise
        message = _read_message(job)
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
        if "error" in message:
            pytest.fail(
                "The isolated child process running this test could not send its report:\n"
                + message["error"],
                pytrace=False,
            )
        pytest.fail(
            f"The isolated child process running this test {describe_exit(status)} "
            "before reporting a result.",
            pytrace=False,
        )


def _read_message(job: Job) -> Dict[str, Any]:
    try:
        with open(job.message, "rb") as stream:
            message: Dict[str, Any] = pickle.load(stream)
    except FileNotFoundError:
        return {}
    except Exception as error:  # a child killed while writing
        return {"error": f"its message was unreadable ({error!r})"}
    os.unlink(job.message)
    return message
