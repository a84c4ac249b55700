"""Runs of pytest in a process of their own, without paying an interpreter's start each time.

Most of the suite's end-to-end tests run pytest in a subprocess, as users do; on this
project's 2-core machine about half of each such run (0.4 of 0.8 s) was Python starting
and importing pytest, memray and the plugin. A *warm* process here imports them once,
then forks one child per run: the child takes the run's working directory, umask, environment,
``sys.path`` additions (``PYTHONPATH``) and standard streams, runs ``pytest.main()`` as
``python -m pytest`` does, and exits with its status.

The plugin's modules are imported ahead as a run's pytest would import them: those its
entry points import, through pytest's assertion-rewriting import hook, so their asserts
are rewritten and the run's pytest, finding them imported by such a hook, takes them as
they are. They keep no state from the warm process: none reads the environment, the
process or the time when imported. Modules the plugin imports only when a run needs them
(an isolation mode's) are imported by the run, as is the whole plugin under a pytest that
cannot rewrite before it parses a configuration (8.2). A run that must see a truly fresh
interpreter (what a start imports, options read when Python starts) uses
``pytester.runpytest_subprocess`` instead (tests/test_startup.py).

The warm process is started once per pytest-xdist worker, single-threaded, and never
runs pytest itself, so every child starts from the same state.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

__all__ = ["WarmStarter"]

#: The warm process: import what every run needs, then fork a child per request line.
_SERVER = r"""
import gc, importlib, json, os, sys
import pytest, _pytest.pytester, memray, memray._memray, psutil
from _pytest.assertion import install_importhook
from _pytest.config import default_plugins, get_config
# pytest's own plugins, which every run imports as it configures, before any test runs.
for name in default_plugins:
    importlib.import_module("_pytest." + name)
# The plugin's entry points, imported through a rewriting hook as a run would import them.
# Where pytest cannot make the hook before a configuration is parsed (8.2, the oldest this
# project supports, has no ini values until then), each run imports the plugin itself.
try:
    hook = install_importhook(get_config())
except AttributeError:
    hook = None
if hook is not None:
    hook.mark_rewrite("pytest_memray_isolate")
    import pytest_memray_isolate.plugin, pytest_memray_isolate._conflict
    sys.meta_path.remove(hook)
# What is imported here lives as long as every run: no run's collections need look at it.
gc.freeze()

def run(request):
    devnull = os.open(os.devnull, os.O_RDONLY)
    out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    pid = os.fork()
    if pid:
        for descriptor in (devnull, out, err):
            os.close(descriptor)
        return pid
    status = 1
    try:
        for target, descriptor in ((0, devnull), (1, out), (2, err)):
            os.dup2(descriptor, target)
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["environ"])
        extra = [entry for entry in request["environ"].get("PYTHONPATH", "").split(os.pathsep) if entry]
        sys.path[1:1] = extra
        sys.argv = [pytest.__file__, *request["args"]]
        import tempfile
        tempfile.tempdir = None
        status = int(pytest.main())
    except SystemExit as exit:
        status = exit.code if isinstance(exit.code, int) else 1
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(int(status))

for line in sys.stdin:
    pid = run(json.loads(line))
    sys.stdout.write(json.dumps({"pid": pid}) + "\n")
    sys.stdout.flush()
    _, wait_status = os.waitpid(pid, 0)
    sys.stdout.write(json.dumps({"status": os.waitstatus_to_exitcode(wait_status)}) + "\n")
    sys.stdout.flush()
"""


class WarmStarter:
    """One warm process, started on first use; :meth:`run` forks a pytest run from it."""

    def __init__(self) -> None:
        self._server: Optional[subprocess.Popen[bytes]] = None
        #: What was read from the warm process past the last whole line.
        self._pending = b""

    @property
    def pid(self) -> Optional[int]:
        """The warm process's pid, once started."""
        return None if self._server is None else self._server.pid

    def _started(self) -> subprocess.Popen[bytes]:
        if self._server is None or self._server.poll() is not None:
            environ = {
                name: value
                for name, value in os.environ.items()
                if name not in ("PYTHONPATH", "PYTEST_ADDOPTS")
                and not name.startswith(("PYTEST_XDIST", "COV_"))
            }
            self._server = subprocess.Popen(
                [sys.executable, "-c", _SERVER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=environ,
                cwd="/",
            )
            self._pending = b""
        return self._server

    def run(
        self,
        args: Sequence[str],
        *,
        cwd: Path,
        output: Path,
        environ: Dict[str, str],
        timeout: Optional[float] = None,
    ) -> pytest.RunResult:
        """``python -m pytest ARGS`` in ``cwd`` with ``environ``, forked from the warm process;
        its output is kept in ``stdout`` and ``stderr`` in ``output``."""
        server = self._started()
        assert server.stdin is not None
        out, err = _output_files(output)
        started = time.monotonic()
        umask = os.umask(0o022)
        os.umask(umask)
        request = {
            "args": list(args),
            "cwd": str(cwd),
            "umask": umask,
            "environ": environ,
            "stdout": str(out),
            "stderr": str(err),
        }
        server.stdin.write((json.dumps(request) + "\n").encode())
        server.stdin.flush()
        pid = json.loads(self._line(server, None) or "{}")["pid"]
        reply = self._line(server, timeout)
        if reply is None:  # a hung run: kill it, as subprocess.run's timeout would
            os.kill(pid, signal.SIGKILL)
            self._line(server, None)
            raise subprocess.TimeoutExpired(["pytest", *args], timeout or 0)
        status = json.loads(reply)["status"]
        duration = time.monotonic() - started
        outlines = out.read_text(errors="replace").splitlines()
        errlines = err.read_text(errors="replace").splitlines()
        print("\n".join(outlines))  # shown when the test fails, as pytester shows its runs
        print("\n".join(errlines), file=sys.stderr)
        return pytest.RunResult(status, outlines, errlines, duration)

    def close(self) -> None:
        if self._server is not None:
            for stream in (self._server.stdin, self._server.stdout):
                if stream is not None:
                    stream.close()
            self._server.wait()
            self._server = None

    def _line(self, server: subprocess.Popen[bytes], timeout: Optional[float]) -> Optional[str]:
        """The warm process's next line, or ``None`` once ``timeout`` seconds pass without one."""
        assert server.stdout is not None
        descriptor = server.stdout.fileno()
        give_up = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._pending:
            if give_up is not None:
                ready, _, _ = select.select([descriptor], [], [], max(0.0, give_up - time.monotonic()))
                if not ready:
                    return None
            chunk = os.read(descriptor, 65536)
            if not chunk:
                raise RuntimeError("the warm pytest process ended")
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode()


def _output_files(directory: Path) -> List[Path]:
    """Where a run's output goes: the files pytester's own subprocess runs write."""
    return [directory / "stdout", directory / "stderr"]
