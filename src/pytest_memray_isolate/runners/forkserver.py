"""Forkserver isolation: a clean server process forks one child per tracked call.

The server is a pytest session of its own, started once (per pytest-xdist worker) from a
fresh interpreter: it shares neither pytest's threads nor its heap. It imports each test
file the first time one of its tests is asked for and never runs a test itself; each
child it forks sets one test up with the fixture values the parent sent and runs its
call under a Tracker (see remote_child.py), so every child starts from the same server.

The parent talks to the server over two pipes, one line per message: it sends the path
of a request file; the server answers ``started PID`` then ``ended STATUS MAX_RSS`` when
it has reaped that child, or ``unrunnable`` when it could not get the test (the reason
is in the job's message file). The server ends when the parent closes its pipe.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
from typing import Callable, Iterator, Optional, Tuple

import pytest

from . import Job
from .outcome import collect, read_message
from .remote import SERVER_ENV, child_command, send_request
from .watch import kill_group

__all__ = ["ForkserverRunner", "ServerLost"]

#: How long a closed server gets to exit on its own before it is killed.
_STOP_GRACE = 5.0


class ServerLost(Exception):
    """The forkserver ended while the parent was waiting for it."""


class _Server:
    """One running forkserver and the parent's ends of its pipes."""

    def __init__(self, config: pytest.Config) -> None:
        requests_read, self._requests = os.pipe()
        self._replies, replies_write = os.pipe()
        self._buffer = b""
        with _real_output(config):  # the server's output is the terminal's, not this test's
            self.process = subprocess.Popen(
                child_command(config),
                cwd=config.invocation_params.dir,
                env={**os.environ, SERVER_ENV: f"{requests_read},{replies_write}"},
                stdin=subprocess.DEVNULL,
                pass_fds=(requests_read, replies_write),
                start_new_session=True,  # no Ctrl-C from the terminal: the parent stops it
            )
        os.close(requests_read)
        os.close(replies_write)

    @property
    def replies(self) -> int:
        return self._replies

    def send(self, line: str) -> None:
        try:
            os.write(self._requests, (line + "\n").encode())
        except OSError as error:
            raise ServerLost(str(error)) from error

    def reply(self, timeout: Optional[float]) -> Optional[str]:
        """The server's next line; ``None`` if none came within ``timeout`` seconds."""
        while b"\n" not in self._buffer:
            if timeout is not None and not select.select([self._replies], [], [], timeout)[0]:
                return None
            chunk = os.read(self._replies, 4096)
            if not chunk:
                raise ServerLost(self._how_it_ended())
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def _how_it_ended(self) -> str:
        try:
            code = self.process.wait(_STOP_GRACE)
        except subprocess.TimeoutExpired:
            return "it closed its pipe"
        return f"it exited with status {code}" if code >= 0 else f"it was killed by signal {-code}"

    def stop(self) -> None:
        """Close the server's pipe, so it ends; kill it if it does not."""
        for descriptor in (self._requests, self._replies):
            with contextlib.suppress(OSError):
                os.close(descriptor)
        try:
            self.process.wait(_STOP_GRACE)
        except subprocess.TimeoutExpired:
            kill_group(self.process.pid)
            self.process.wait()


@contextlib.contextmanager
def _real_output(config: pytest.Config) -> Iterator[None]:
    """Suspend pytest's output capture, so a process started now inherits the real streams."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    disabled = getattr(capture, "global_and_fixture_disabled", None)
    if disabled is None:
        yield
        return
    with disabled():
        yield


class _ServedChild:
    """A test's child forked by the server: the server reaps it and says how it ended."""

    def __init__(self, server: _Server, pid: int) -> None:
        self.pid = pid
        self._server = server

    def reap(self, block: bool) -> Optional[Tuple[int, int]]:
        line = self._server.reply(None if block else 0)
        if line is None:
            return None
        kind, status, max_rss = line.split()
        assert kind == "ended", line
        return int(status), int(max_rss)

    def exit_descriptor(self) -> int:
        return self._server.replies

    def close(self) -> None:
        """The server's pipes outlive the child."""


class ForkserverRunner:
    """Runs each tracked call in a child of the session's forkserver."""

    #: The child puts the Tracker around its own copy of the test function.
    tracks_here = False

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._server: Optional[_Server] = None

    def wrap(self, item: pytest.Item, runtest: Callable[[], object], job: Job) -> Callable[[], None]:
        """A replacement for ``item.runtest`` that runs the call in a child of the server."""

        def run_served() -> None:
            __tracebackhide__ = True  # pytest shows the test's frames, not these
            request = send_request(item, job, "forkserver")
            server = self._running_server()
            try:
                server.send(str(request))
                answer = (server.reply(None) or "").split()
                if answer[0] == "started":
                    collect(_ServedChild(server, int(answer[1])), job, started_rss=None)
                    return
                collect_unrunnable(job)
            except ServerLost as lost:
                self._server = None
                pytest.fail(
                    f"The forkserver running this test's child ended unexpectedly ({lost});"
                    " a new one starts for the next test.",
                    pytrace=False,
                )

        return run_served

    def _running_server(self) -> _Server:
        if self._server is None:
            self._server = _Server(self._config)
        return self._server

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def collect_unrunnable(job: Job) -> None:
    """Fail the test with the reason the server wrote instead of starting a child."""
    __tracebackhide__ = True  # pytest shows the test's frames, not these
    message = read_message(job)
    pytest.fail(str(message.get("unrunnable", "The forkserver could not run this test.")), pytrace=False)
