"""Forkserver isolation: a clean server process forks one child per tracked call.

The server is a pytest session of its own, started once (per pytest-xdist worker) from a
fresh interpreter: it shares neither pytest's threads nor its heap. It imports each test
file the first time one of its tests is asked for and never runs a test itself; each
child it forks sets one test up with the fixture values the parent sent and runs its
call under a Tracker (see child_session.py), so every child starts from the same server.

The parent talks to the server over a Unix socket, one line per message: it sends the
path of a request file together with its own stdout and stderr descriptors (which, during
a test's call, are pytest's capture files, so the child's output is captured exactly as a
forked child's is); the server answers ``started PID`` then ``ended STATUS MAX_RSS`` when
it has reaped that child, or ``unrunnable`` when it could not get the test (the reason is
in the spec's reply file). The server ends when the parent closes the socket.

Each request also carries the write end of a pipe on which the child says its report is
complete (see supervise.py): the parent then goes on with the next test while the child
exits, and skips the ``ended`` line that the server sends for it later.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
from pathlib import Path
from typing import Callable, NoReturn, Optional, Tuple

import pytest

from .child_end import await_child, read_reply
from .messages import CallSpec, Job, Unrunnable
from .remote_logging import LiveOutput, append_to_log_file
from .request import SERVER_ENV, child_command, send_request, start_session
from .runner import flush_output
from .supervise import kill_group, report_pipe, running

__all__ = ["ForkserverRunner", "ServerLost"]

#: How long a closed server gets to exit on its own before it is killed.
_STOP_GRACE = 5.0


class ServerLost(Exception):
    """The forkserver ended while the parent was waiting for it."""


class _Server:
    """One running forkserver and the parent's ends of its pipes."""

    def __init__(self, config: pytest.Config, output: Path, live_output: LiveOutput) -> None:
        self._live_output = live_output
        self._socket, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._buffer = b""
        #: Children that said their report was complete before they ended: the server's
        #: "ended" line for each is still to come, and nobody waits for it.
        self._ends_to_skip = 0
        self._output = output
        # The server's own output (start-up, importing test files) goes to a file, shown
        # if it fails; its children write to the streams each request brings.
        with server_end, open(output, "wb") as server_output:
            self.process = start_session(
                child_command(config),
                config.invocation_params.dir,
                mode="forkserver",
                environment={SERVER_ENV: str(server_end.fileno())},
                output=server_output,
                keep_descriptors=[server_end.fileno()],
            )
        running[self.process.pid] = True  # its session's group

    @property
    def replies(self) -> int:
        return self._socket.fileno()

    def send(self, line: str, report_signal: int) -> None:
        """Send a request line, with this process's stdout and stderr for the child, the
        pipe on which the child says its report is complete, and pytest's output for its
        live log lines (if pytest shows them)."""
        flush_output()
        try:
            socket.send_fds(
                self._socket,
                [(line + "\n").encode()],
                [1, 2, report_signal, *self._live_output.descriptors()],
            )
        except OSError as error:
            raise ServerLost(str(error)) from error

    def skip_end(self) -> None:
        """Nobody waits for the current child's end any more: skip the line that says it."""
        self._ends_to_skip += 1

    def reply(self, timeout: Optional[float]) -> Optional[str]:
        """The server's next line (but the skipped ends); ``None`` if none came within ``timeout`` seconds."""
        while True:
            line = self._next_line(timeout)
            if line is None or not (self._ends_to_skip and line.startswith("ended ")):
                return line
            self._ends_to_skip -= 1

    def _next_line(self, timeout: Optional[float]) -> Optional[str]:
        while b"\n" not in self._buffer:
            if timeout is not None and not select.select([self._socket], [], [], timeout)[0]:
                return None
            chunk = self._socket.recv(4096)
            if not chunk:
                raise ServerLost(self.how_it_ended())
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def how_it_ended(self) -> str:
        try:
            code = self.process.wait(_STOP_GRACE)
        except subprocess.TimeoutExpired:
            how = "it closed its socket"
        else:
            how = f"it exited with status {code}" if code >= 0 else f"it was killed by signal {-code}"
        return how

    def output(self) -> str:
        """What the server printed (its session's own output, and any error that ended it)."""
        return self._output.read_text(errors="replace").strip() if self._output.exists() else ""

    def stop(self) -> None:
        """Close the server's socket, so it ends; kill it if it does not.

        The ends still owed for children that reported are read first: the server sends
        each once it has reaped that child, and would find the socket closed.
        """
        with contextlib.suppress(ServerLost, OSError):
            while self._ends_to_skip and self._next_line(_STOP_GRACE) is not None:
                self._ends_to_skip -= 1
        self._socket.close()
        try:
            self.process.wait(_STOP_GRACE)
        except subprocess.TimeoutExpired:
            kill_group(self.process.pid)
            self.process.wait()
        running.pop(self.process.pid, None)


class _ServedChild:
    """A test's child forked by the server: the server reaps it and says how it ended."""

    def __init__(self, server: _Server, pid: int, report_signal: int) -> None:
        self.pid = pid
        self._server = server
        self._report_signal = report_signal

    def reap(self, block: bool) -> Optional[Tuple[int, int]]:
        line = self._server.reply(None if block else 0)
        if line is None:
            return None
        kind, status, max_rss = line.split()
        assert kind == "ended", line
        return int(status), int(max_rss)

    def reap_later(self) -> None:
        """The server reaps it; its line saying so is skipped when it comes."""
        self._server.skip_end()

    def exit_descriptor(self) -> int:
        return self._server.replies

    def report_descriptor(self) -> int:
        return self._report_signal

    def close(self) -> None:
        """The server's socket outlives the child."""
        os.close(self._report_signal)


class ForkserverRunner:
    """Runs each tracked call in a child of the session's forkserver."""

    #: The child puts the Tracker around its own copy of the test function.
    tracks_here = False

    def __init__(self, config: pytest.Config, scratch: Path, live_output: LiveOutput) -> None:
        self._config = config
        self._output = scratch / "forkserver.out"
        self._live_output = live_output
        append_to_log_file(config)
        self._server: Optional[_Server] = None

    def wrap(self, item: pytest.Item, runtest: Callable[[], object], job: Job) -> Callable[[], None]:
        """A replacement for ``item.runtest`` that runs the call in a child of the server."""

        def run_served() -> None:
            __tracebackhide__ = True  # pytest shows the test's frames, not these
            request = send_request(item, job.spec, "forkserver")
            server = self._running_server()
            pid = None
            reported, report_signal = report_pipe()
            watched: Optional[_ServedChild] = None
            try:
                try:
                    server.send(str(request), report_signal)
                finally:
                    os.close(report_signal)
                answer = (server.reply(None) or "").split()
                if answer[0] != "started":
                    collect_unrunnable(job.spec)
                pid = int(answer[1])
                watched = _ServedChild(server, pid, reported)  # closes ``reported`` when done
                await_child(watched, job, started_rss=None, time_from_start=True, output_captured_here=True)
                if server.process.poll() is not None:  # the test took its server down
                    raise ServerLost(server.how_it_ended())
            except ServerLost as lost:
                ended = str(lost)
            else:
                return
            finally:
                if watched is None:
                    os.close(reported)
            self._server = None
            if pid is not None:
                kill_group(pid)  # the test's child, orphaned
            text = (
                f"The forkserver running this test's child ended unexpectedly ({ended});"
                " a new one starts for the next test."
            )
            output = server.output()
            pytest.fail(  # outside the except block: no chained tracebacks
                f"{text}\n\nThe forkserver's output:\n{output}" if output else text, pytrace=False
            )

        return run_served

    def _running_server(self) -> _Server:
        if self._server is not None and self._server.process.poll() is not None:
            self._server = None  # it died after its last child reported
        if self._server is None:
            self._server = _Server(self._config, self._output, self._live_output)
        return self._server

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def collect_unrunnable(spec: CallSpec) -> NoReturn:
    """Fail the test with the reason the server wrote instead of starting a child."""
    __tracebackhide__ = True  # pytest shows the test's frames, not these
    reply = read_reply(spec)
    text = reply.text if isinstance(reply, Unrunnable) else "The forkserver could not run this test."
    pytest.fail(text, pytrace=False)
