"""What the parent sends a child that is not its fork: the request, and the command line.

A spawned child, and the forkserver, are pytest sessions of their own, started with the
parent's own command line from the parent's invocation directory, so they load the same
plugins, conftest files and options. Each test they run is described by a request file:
the test's node id and file, its call spec (where the capture and the reply go), the fixture
values, and the parent's environment and working directory at the time of the call.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Dict, List, Optional, Sequence

import cloudpickle
import pytest

from .fixture_values import CannotSend, pack_values
from .messages import CHILD_ENV, REQUEST_ENV, SERVER_ENV, STREAMS_ENV, CallSpec
from .remote_logging import log_file_arguments

__all__ = [
    "REQUEST_ENV",
    "SERVER_ENV",
    "STREAMS_ENV",
    "Request",
    "child_command",
    "load_request",
    "send_request",
    "start_session",
]


@dataclass(frozen=True)
class Request:
    """One test for a child to run: which, with what, and where its results go."""

    nodeid: str
    #: The test's node id with its file made absolute, for the child's collection.
    collect_arg: str
    #: The test's file, absolute: the forkserver collects whole files.
    path: str
    spec: CallSpec
    values: bytes
    environ: Dict[str, str]
    cwd: str
    #: The isolation mode, for messages.
    mode: str


def _collect_arg(item: pytest.Item) -> str:
    _, separator, rest = item.nodeid.partition("::")
    return f"{item.path}{separator}{rest}" if separator else str(item.path)


def _cannot_send_text(item: pytest.Item, mode: str, problem: CannotSend) -> str:
    what = problem.what or "the fixture values"
    error = f"{type(problem.error).__name__}: {problem.error}"
    return (
        f"{item.nodeid}: {what} cannot be sent to the {mode} child process ({error}).\n"
        f"Only values that pickle (with cloudpickle) can cross to a {mode} child. Run this test with"
        ' fork isolation instead: @pytest.mark.memray_isolate("fork"), or --memray-isolate=fork.'
    )


def send_request(item: pytest.Item, spec: CallSpec, mode: str) -> Path:
    """Write the request for ``item``; fails the test when its fixture values cannot be sent."""
    __tracebackhide__ = True  # pytest shows the test's frames, not these
    try:
        values = pack_values(item)
    except CannotSend as problem:
        refused: Optional[CannotSend] = problem
    else:
        refused = None
    if refused is not None:  # failed outside the except block: no chained tracebacks
        pytest.fail(_cannot_send_text(item, mode, refused), pytrace=False)
    request = Request(
        nodeid=item.nodeid,
        collect_arg=_collect_arg(item),
        path=str(item.path),
        spec=spec,
        values=values,
        environ=dict(os.environ),
        cwd=os.getcwd(),
        mode=mode,
    )
    with open(spec.request_file, "wb") as stream:
        stream.write(cloudpickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL))
    return spec.request_file


def load_request(path: str) -> Request:
    with open(path, "rb") as stream:
        request: Request = pickle.load(stream)
    return request


def child_command(config: pytest.Config) -> List[str]:
    """The command line of a child pytest session, and so its options: the parent's own.

    The child collects only the tests it is asked for, whatever paths the command line
    names; pytest-xdist, if the parent runs under it, must not distribute again. The
    child captures no output: it writes to the parent's stdout and stderr, which during
    the call are the parent's capture, so output printed before a crash is not lost.
    Under ``--capture=sys`` pytest captures only its own ``sys.stdout`` and
    ``sys.stderr``, not the descriptors, so the child captures as pytest would. It
    appends to the run's log file (see remote_logging.py).
    """
    command = [sys.executable, "-m", "pytest", *map(str, config.invocation_params.args)]
    capture = "sys" if config.getoption("capture", "fd") == "sys" else "no"
    command += [f"--rootdir={config.rootpath}", f"--capture={capture}"]
    if config.inipath is not None:
        command += ["-c", str(config.inipath)]
    if config.pluginmanager.hasplugin("xdist"):
        command += ["-n", "0"]
    command += log_file_arguments(config)
    seed = getattr(config.option, "randomly_seed", None)
    if isinstance(seed, int):  # pytest-randomly: the seed it chose for this run
        command.append(f"--randomly-seed={seed}")
    if getattr(config.option, "cov_source", None):
        # pytest-cov in the child must add to the run's coverage data, not erase it.
        command.append("--cov-append")
    return command


def start_session(
    command: List[str],
    directory: Path,
    *,
    mode: str,
    environment: Dict[str, str],
    output: IO[bytes],
    keep_descriptors: Sequence[int],
) -> subprocess.Popen[bytes]:
    """Start a child pytest session (a spawned child, or the forkserver).

    It runs in a session and process group of its own (killed at the end, and out of
    reach of Ctrl-C in the terminal: pytest stops it), reads nothing, and its own output
    goes to ``output``; ``keep_descriptors`` stay open in it. Its ``CHILD_ENV`` says ``mode``.
    """
    return subprocess.Popen(
        command,
        cwd=directory,
        env={**os.environ, **environment, CHILD_ENV: mode},
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=output,
        pass_fds=tuple(keep_descriptors),
        start_new_session=True,
    )
