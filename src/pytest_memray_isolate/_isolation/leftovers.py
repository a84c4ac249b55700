"""What a test leaves behind in its isolated child: clean-up it registered for the
process's exit, and processes it detached from the child's process group.

An isolated child ends with ``os._exit``, which skips what a process owes at its exit:
``atexit`` handlers, and through them the finalizers of ``weakref.finalize`` (such as a
``tempfile.TemporaryDirectory``'s) and of ``multiprocessing`` (its ``pymp-*``
directory). The child forgets what pytest's process registered (that is pytest's to
run, at its own end) and, when it ends, runs what the test registered, and nothing
when the test registered nothing.

A process the test detached (``setsid`` and a second fork, as daemons do) is out of
the child's process group, which the parent kills. On Linux the child becomes a
subreaper, so such a process is re-parented to it, and the child ends its remaining
children before it exits. Elsewhere a detached process whose parent has exited is out
of reach.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import weakref
from typing import Any, Callable, Optional

__all__ = ["at_child_end", "at_child_start", "prepare"]

#: ``prctl`` option: orphaned descendants are re-parented to this process (Linux 3.4+).
_PR_SET_CHILD_SUBREAPER = 36

#: libc's ``prctl`` once :func:`prepare` loaded it (Linux), else ``None``.
_prctl: Optional[Callable[..., int]] = None
_prepared = False

#: The first ``weakref.finalize`` index, and the first multiprocessing finalizer number,
#: that belong to the test (those below were inherited from pytest's process).
_first_finalizer = 0
_first_mp_finalizer: Optional[int] = None


def prepare() -> None:
    """Load what a child needs to adopt detached processes, once, before forking
    children: importing ``ctypes`` in each child would cost it a millisecond."""
    global _prctl, _prepared
    _prepared = True
    if sys.platform != "linux":
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        _prctl = ctypes.CDLL(None, use_errno=True).prctl


def at_child_start() -> None:
    """Forget pytest's at-exit clean-up, note where the test's begins, adopt orphans."""
    global _first_finalizer, _first_mp_finalizer
    atexit._clear()
    finalize: Any = weakref.finalize
    # Its atexit hook was registered once, in pytest's process: register it again if
    # the test makes a finalizer that is due at exit.
    finalize._registered_with_atexit = False
    _first_finalizer = next(finalize._index_iter)
    mp_util: Any = sys.modules.get("multiprocessing.util")
    _first_mp_finalizer = None if mp_util is None else next(mp_util._finalizer_counter)
    if not _prepared:
        prepare()
    if _prctl is not None:
        _prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def at_child_end() -> None:
    """Run the at-exit clean-up the test registered, then end the processes it left."""
    _run_exit_clean_up()
    _end_remaining_children()


def _run_exit_clean_up() -> None:
    if atexit._ncallbacks():
        _skip_inherited_finalizers()
        atexit._run_exitfuncs()
    if _first_mp_finalizer is not None and _has_own_mp_finalizers():
        _run_mp_finalizers()


def _run_mp_finalizers() -> None:
    """Run the test's multiprocessing finalizers (a pool's ``pymp-*`` directory, for one).

    multiprocessing was imported in pytest's process, its atexit hook with it. Not the
    hook itself: it would also stop pytest's own multiprocessing children, which this
    process inherited the list of. Its finalizers skip those made in another process.
    """
    mp_util: Any = sys.modules["multiprocessing.util"]
    mp_util._run_finalizers(0)
    mp_util._run_finalizers()


def _skip_inherited_finalizers() -> None:
    """Keep finalizers made in pytest's process from running here (they would remove
    pytest's temporary directories, for example); the test's own run."""
    finalize: Any = weakref.finalize
    for info in list(finalize._registry.values()):
        if info.index < _first_finalizer:
            info.atexit = False


def _has_own_mp_finalizers() -> bool:
    assert _first_mp_finalizer is not None
    mp_util: Any = sys.modules["multiprocessing.util"]
    return any(number >= _first_mp_finalizer for _, number in list(mp_util._finalizer_registry))


def _end_remaining_children() -> None:
    """Kill this process's children, with the process groups of those that left its own.

    With none (the usual case) this costs one system call.
    """
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return
    import psutil  # only here: a child with children left is rare

    own_group = os.getpgrp()
    with contextlib.suppress(psutil.Error):
        for process in psutil.Process().children():
            _kill_with_group(process.pid, own_group)


def _kill_with_group(pid: int, own_group: int) -> None:
    with contextlib.suppress(OSError):
        group = os.getpgid(pid)
        if group != own_group:
            os.killpg(group, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
