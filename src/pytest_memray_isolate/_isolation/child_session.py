"""The plugin of a spawned child's and of the forkserver's pytest session.

Both sessions start from the parent's command line (see request.py) and run only what
they are asked for: a spawned child collects its one test and runs it; the forkserver
collects test files as their tests are asked for and forks a child per test. In either
child the test is set up with the fixture values the parent sent (fixtures bound to a
process are made afresh), its call runs under a Tracker, and the call report goes home
exactly as a forked child's does (child.py). Nothing here prints: the parent reports.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import sys
import traceback
from typing import Any, Callable, Dict, Generator, List, NoReturn, Optional, Set, TextIO, final

import pytest

from .._tracking.heap import fill_free_space
from .._tracking.tracker import patched_call, prepare_for_forks
from . import child, leftovers
from .fixture_values import unpack_values
from .fork import quiet_fork
from .messages import TrackerNotes
from .request import REQUEST_ENV, SERVER_ENV, STREAMS_ENV, Request, load_request
from .setup_effects import SetupEffects
from .supervise import max_rss_bytes

__all__ = ["ChildSession", "from_environment"]


def from_environment(config: pytest.Config) -> Optional[ChildSession]:
    """The plugin for this session if the parent started it as a child or server, else ``None``."""
    request_path = os.environ.pop(REQUEST_ENV, None)
    server = os.environ.pop(SERVER_ENV, None)
    streams = os.environ.pop(STREAMS_ENV, None)
    if request_path is not None:
        parent_streams = [int(stream) for stream in streams.split(",")] if streams else []
        return ChildSession(config, request=load_request(request_path), streams=parent_streams)
    if server is not None:
        return ChildSession(config, server=socket.socket(fileno=int(server)))
    return None


def _text_stream(descriptor: int, like: TextIO) -> TextIO:
    """An unbuffered text stream on ``descriptor``: nothing is lost when the child dies."""
    raw = io.FileIO(descriptor, "w", closefd=False)
    return io.TextIOWrapper(raw, encoding=like.encoding, errors=like.errors, write_through=True)


class _NoStandardInput(io.TextIOBase):
    """``sys.stdin`` of a forkserver or spawn child, which has none of pytest's to read.

    Reading it fails at once with the way out, as a forked child reading while pytest
    captures does, instead of reading nothing (``input()`` would end in an EOFError far
    from the cause).
    """

    def __init__(self, mode: str) -> None:
        self._why = (
            f"a test isolated in a {mode} child process has no standard input to read;"
            " run it with --memray-isolate=fork (and -s) if it must read it"
        )

    def readable(self) -> bool:
        return True

    def read(self, size: Optional[int] = -1) -> str:
        __tracebackhide__ = True  # the failure points at the test's line
        raise OSError(self._why)

    def readline(self, size: Optional[int] = -1) -> str:  # type: ignore[override]
        __tracebackhide__ = True
        raise OSError(self._why)

    def readlines(self, hint: Optional[int] = -1) -> List[str]:  # type: ignore[override]
        __tracebackhide__ = True
        raise OSError(self._why)


def _keep_session_output_apart() -> int:
    """Give this session's own output (pytest's terminal reporter, made after this) streams
    of its own, on copies of the start-up descriptors; the copy of stdout is returned.

    Once the child reaches its test, descriptors 1 and 2 become the parent's stdout and
    stderr and ``sys.stdout``/``sys.stderr`` are made anew on them; whatever kept the old
    streams (the terminal reporter, which pytest's assertion messages need) goes on
    writing to the start-up output, never into the parent's capture.
    """
    session_stdout = os.dup(1)
    sys.stdout = _text_stream(session_stdout, sys.stdout)
    sys.stderr = _text_stream(os.dup(2), sys.stderr)
    return session_stdout


@final
class ChildSession:
    """Runs the tests the parent asks for, one per process, and reports only to the parent."""

    def __init__(
        self,
        config: pytest.Config,
        *,
        request: Optional[Request] = None,
        server: Optional[socket.socket] = None,
        streams: Optional[List[int]] = None,
    ) -> None:
        self._config = config
        #: The parent's stdout and stderr, which the test writes to (a spawned child's).
        self._streams = (streams or [])[:2]
        #: pytest's own output, for the call's live log lines (see remote_logging.py).
        self._live_output = streams[2] if streams is not None and len(streams) > 2 else None
        self._session_stdout = _keep_session_output_apart()
        self._request = request
        self._server = server
        self._values: Dict[str, Any] = {}
        #: Where a forkserver's child says its report is complete (see watch.report_pipe).
        self._report_signal: Optional[int] = None
        self._collection_errors: List[str] = []
        self._setup_failure: Optional[str] = None

    # -- collection: only what was asked for -------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self, session: pytest.Session) -> bool:
        if self._request is not None:
            self._collect(session, self._request.collect_arg)
        return True

    def _collect(self, session: pytest.Session, argument: str) -> List[pytest.Item]:
        self._collection_errors.clear()
        try:
            return list(session.perform_collect([argument]))
        except pytest.UsageError as error:
            self._collection_errors.append(" ".join(map(str, error.args)))
        except Exception:
            self._collection_errors.append(traceback.format_exc())
        return []

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._collection_errors.append(report.longreprtext)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        if self._server is not None:
            self._serve_until_closed(session, self._server)
        request = self._request
        assert request is not None
        self._run(self._find(session.items, request), request)

    # -- the forkserver ---------------------------------------------------------------

    def _serve_until_closed(self, session: pytest.Session, connection: socket.socket) -> NoReturn:
        """Serve; the server's session never reaches its end, where plugins would write the
        parent's reports (--junitxml) over the parent's own."""
        try:
            self._serve(session, connection)
        except (BrokenPipeError, ConnectionResetError):
            os._exit(0)  # pytest went away: nobody is left to answer
        except BaseException:
            traceback.print_exc()  # into the server's output, which the parent shows
            child.flush_quietly()
            os._exit(1)

    def _serve(self, session: pytest.Session, connection: socket.socket) -> NoReturn:
        """Answer the parent's requests until it closes the socket, then end without a summary."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the server
        prepare_for_forks()
        leftovers.prepare()
        items: Dict[str, pytest.Item] = {}
        collected: Set[str] = set()
        while True:
            # pytest's stdout and stderr, the pipe its child says "reported" on, and pytest's
            # output for live log lines (when pytest shows them).
            line, streams, _, _ = socket.recv_fds(connection, 65536, 4)
            if not line:
                os._exit(0)
            request = load_request(line.decode().strip())
            if request.nodeid not in items and request.path not in collected:
                collected.add(request.path)
                items.update((item.nodeid, item) for item in self._collect(session, request.path))
                fill_free_space()  # what collecting left free, filled once for all its children
            item = items.get(request.nodeid)
            if item is None:
                child.tell_unrunnable(request.spec, self._not_collected_text(request))
                connection.sendall(b"unrunnable\n")
            else:
                self._fork_for(item, request, connection, streams)
            for stream in streams:
                os.close(stream)

    def _fork_for(
        self, item: pytest.Item, request: Request, connection: socket.socket, streams: List[int]
    ) -> None:
        """Fork the test's child, tell the parent its pid, reap it, tell the parent how it ended."""
        pid = quiet_fork()
        if pid == 0:
            os.setpgid(0, 0)
            connection.close()
            self._streams = streams[:2]
            self._report_signal = streams[2] if len(streams) > 2 else None
            self._live_output = streams[3] if len(streams) > 3 else None
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self._run(item, request)
        with contextlib.suppress(OSError):  # the child does the same; whichever runs first
            os.setpgid(pid, pid)
        connection.sendall(f"started {pid}\n".encode())
        _, status, usage = os.wait4(pid, 0)
        connection.sendall(f"ended {status} {max_rss_bytes(usage.ru_maxrss)}\n".encode())

    # -- one test -------------------------------------------------------------------

    def _find(self, items: List[pytest.Item], request: Request) -> pytest.Item:
        found = [item for item in items if item.nodeid == request.nodeid]
        if not found:
            child.cannot_run(request.spec, self._not_collected_text(request))
        return found[0]

    def _not_collected_text(self, request: Request) -> str:
        text = f"The {request.mode} child process could not collect {request.nodeid}."
        if self._collection_errors:
            text += "\n\n" + "\n".join(self._collection_errors)
        return text

    def _run(self, item: pytest.Item, request: Request) -> NoReturn:
        """Set the test up with the parent's fixture values, run it; the call report ends the process."""
        self._request = request
        try:
            self._values = unpack_values(request.values)
        except Exception:
            child.cannot_run(
                request.spec,
                f"The {request.mode} child process could not load the fixture values sent to it:\n"
                + traceback.format_exc(),
            )
        for target, stream in enumerate(self._streams, start=1):  # the parent's stdout, stderr
            os.dup2(stream, target)
        sys.stdout, sys.stderr = _text_stream(1, sys.stdout), _text_stream(2, sys.stderr)
        sys.stdin = _NoStandardInput(request.mode)
        os.environ.clear()
        os.environ.update(request.environ)
        with contextlib.suppress(OSError):
            os.chdir(request.cwd)
        item.ihook.pytest_runtest_protocol(item=item, nextitem=None)
        reason = self._setup_failure or "the test's call did not run"
        child.cannot_run(
            request.spec, f"The {request.mode} child process could not set the test up:\n{reason}"
        )

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: Any, request: pytest.FixtureRequest
    ) -> Generator[None, object, object]:
        """Answer with the parent's value for the fixtures it sent; make the others here.

        A wrapped xunit or unittest setup is not run again: what it set in the parent is set
        on this process's module, class or instance instead.

        The fixture's function is stood in for by one returning the sent value (even
        ``None``, which a plain hook result could not give), so pytest caches and tears
        it down as usual, and no plugin runs the original a second time.
        """
        if fixturedef.argname not in self._values:
            return (yield)
        value = self._values[fixturedef.argname]
        if isinstance(value, SetupEffects):  # xunit or unittest setup, done in the parent
            value.apply(request)
            value = None
        original = fixturedef.func

        def sent_value(**_: object) -> object:
            return value

        fixturedef.func = sent_value
        try:
            return (yield)
        finally:
            fixturedef.func = original

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        """Inside pytest's warning capture, before the test's fixtures (see child.py)."""
        child.note_pytests_warning_recorder()
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        assert self._request is not None
        spec = self._request.spec
        notes = TrackerNotes()
        if self._live_output is not None:
            # The call's live log lines, written by this session's terminal reporter, go
            # where pytest shows them, as a forked child's do; nothing else of this
            # session's output comes before the child ends.
            os.dup2(self._live_output, self._session_stdout)
        # The process group is set already.
        plugin = child.become_child(
            self._config, spec, notes, own_group=False, report_signal=self._report_signal
        )

        def in_child(runtest: Callable[[], object]) -> Callable[[], None]:
            return lambda: plugin.run_call(item, runtest)

        with patched_call(item, spec, notes, settle_heap=True, outer=in_child):
            return (yield)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Keep why the test's set-up failed: the child then tells the parent."""
        report = yield
        if call.when == "setup" and not report.passed:
            self._setup_failure = report.longreprtext or str(report.outcome)
        return report

    # pytest-timeout: the parent enforces the test's timeout on this whole process.

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_timeout_set_timer(self, item: pytest.Item, settings: Any) -> bool:
        return True

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_timeout_cancel_timer(self, item: pytest.Item) -> bool:
        return True
