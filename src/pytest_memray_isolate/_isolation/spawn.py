"""Spawn isolation: each tracked call runs in a fresh Python interpreter.

Nothing of pytest's process is inherited: the child is a pytest session of its own that
imports the test's module afresh, sets the test up with the fixture values the parent
sent, and runs its call under a Tracker (see child_session.py). It costs an interpreter's
start-up per test; it is the mode for code that must not be forked (threads that fork
can deadlock, macOS frameworks, CUDA).
"""

from __future__ import annotations

import os
import subprocess
from typing import Callable, Optional, Tuple

import pytest

from .child_end import await_child
from .messages import Job
from .remote_logging import LiveOutput, append_to_log_file
from .request import REQUEST_ENV, STREAMS_ENV, child_command, send_request, start_session
from .runner import flush_output
from .supervise import OwnChild

__all__ = ["SpawnRunner"]


class _SpawnedChild(OwnChild):
    """A child started by ``subprocess``, reaped here: its ``Popen`` learns how it ended."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        super().__init__(process.pid)
        self._process = process

    def reap(self, block: bool) -> Optional[Tuple[int, int]]:
        reaped = super().reap(block)
        if reaped is not None:
            self._process.returncode = os.waitstatus_to_exitcode(reaped[0])
        return reaped


class SpawnRunner:
    """Runs each tracked call in a newly started interpreter."""

    #: The child puts the Tracker around its own copy of the test function.
    tracks_here = False

    def __init__(self, config: pytest.Config, live_output: LiveOutput) -> None:
        self._command = child_command(config)
        self._directory = config.invocation_params.dir
        self._live_output = live_output
        append_to_log_file(config)

    def wrap(self, item: pytest.Item, runtest: Callable[[], object], job: Job) -> Callable[[], None]:
        """A replacement for ``item.runtest`` that runs the call in a spawned child."""

        def run_spawned() -> None:
            __tracebackhide__ = True  # pytest shows the test's frames, not these
            flush_output()
            request = send_request(item, job.spec, "spawn")
            # The child writes to these (pytest's capture, during the call) once it reaches
            # the test; until then its output goes to a file, shown only if it fails to start.
            # Its live log lines, if pytest shows them, go to pytest's output.
            streams = [os.dup(descriptor) for descriptor in [1, 2, *self._live_output.descriptors()]]
            try:
                with open(job.spec.startup_output_file, "wb") as startup:
                    process = start_session(
                        self._command,
                        self._directory,
                        mode="spawn",
                        environment={REQUEST_ENV: str(request), STREAMS_ENV: ",".join(map(str, streams))},
                        output=startup,
                        keep_descriptors=streams,
                    )
            finally:
                for stream in streams:
                    os.close(stream)
            await_child(
                _SpawnedChild(process), job, started_rss=None, time_from_start=True, output_captured_here=True
            )

        return run_spawned

    def close(self) -> None:
        """Nothing outlives a test in spawn mode."""
