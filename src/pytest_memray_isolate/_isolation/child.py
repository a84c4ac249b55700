"""The isolated child's side: run the call under a Tracker, send the reply home, exit.

Every child runs a test's call the same way, however it was started: a forked child
returns up pytest's own call stack, a forkserver's or spawned child runs pytest's
protocol for its one test (child_session.py). Either way pytest's capture, logging and
xfail handling build the call report exactly as they would without isolation. The
:class:`ChildPlugin`, registered when the process becomes the test's child (and, in a
forked child, in place of the parent's plugins), hands the call report to the parent
through the spec's reply file and ends the process with ``os._exit``: a child never
runs teardown, other tests, or the session's end.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import pickle
import signal
import sys
import traceback
import warnings
from dataclasses import replace
from typing import Callable, Generator, List, NoReturn, Optional, Sequence, TextIO, Tuple, final

import pytest

from .. import _names
from . import leftovers
from .messages import (
    CallSpec,
    Logged,
    Reply,
    Reported,
    ReportLost,
    SerializedReport,
    Stopped,
    TrackerNotes,
    Unrunnable,
    WarningRecord,
    append_logged,
)
from .supervise import resident_size

__all__ = [
    "ESCAPED_EXIT_STATUS",
    "ChildPlugin",
    "become_child",
    "cannot_run",
    "flush_quietly",
    "note_pytests_warning_recorder",
    "tell_unrunnable",
]

#: Exit status of a child that reached pytest code past its call report (should not happen).
ESCAPED_EXIT_STATUS = 70


def become_child(
    config: pytest.Config,
    spec: CallSpec,
    notes: TrackerNotes,
    *,
    own_group: bool,
    report_signal: Optional[int] = None,
    replaces: Sequence[object] = (),
) -> ChildPlugin:
    """Make this freshly forked process the test's child: its plugin replaces the plugins
    ``replaces`` (in a forked child, the parent's: their work is not the child's).

    It gets a process group of its own (so the parent can kill whatever it starts), its
    warnings are recorded for the parent, and faulthandler writes its stacks to the
    spec's file on a fatal signal or when the parent asks with SIGUSR1 (timeout). With
    ``report_signal`` it writes a byte there once its report is complete.

    Whatever fails here ends the child, telling the parent why: a child that returned
    into pytest's code before its call would go on to run the rest of the session.
    """
    try:
        plugin = ChildPlugin(config, spec, notes, own_group=own_group, report_signal=report_signal)
        for replaced in replaces:
            config.pluginmanager.unregister(replaced)
        config.pluginmanager.register(plugin, _names.CHILD)
    except BaseException:
        cannot_run(
            spec,
            "The isolated child process could not be prepared for this test's call:\n"
            + traceback.format_exc(),
        )
    return plugin


#: What pytest's own warning recorder for the test hands each warning to, noted as the
#: test's protocol starts (see :func:`note_pytests_warning_recorder`); ``None`` if unknown.
_pytests_recorder: Optional[object] = None


def note_pytests_warning_recorder() -> None:
    """Note the warning handler pytest's per-test recorder installed, before any fixture of
    the test is set up: the protocol wrappers of the parent and of a child session call
    this inside pytest's own (a forked child inherits the note)."""
    global _pytests_recorder
    _pytests_recorder = getattr(warnings, "_showwarnmsg_impl", None)


def _recorded_for_the_parent() -> List[warnings.WarningMessage]:
    """The list the warnings raised during the call are recorded in, to be raised again in
    the parent, where pytest's warning capture sees them.

    Only when pytest's own recorder would have received them: when a recorder a fixture
    set up is active instead (``recwarn``, a fixture's ``pytest.warns`` or
    ``warnings.catch_warnings``), it keeps them, as without isolation, and pytest never
    sees them. The process ends inside the recorder entered here.
    """
    active = getattr(warnings, "_showwarnmsg_impl", None)
    if _pytests_recorder is None or active is not _pytests_recorder:
        return []
    return warnings.catch_warnings(record=True).__enter__()


@final
class ChildPlugin:
    """The test's child: its call report, and the subtests' reports made before it, go home."""

    def __init__(
        self,
        config: pytest.Config,
        spec: CallSpec,
        notes: TrackerNotes,
        *,
        own_group: bool,
        report_signal: Optional[int],
    ) -> None:
        if own_group:
            with contextlib.suppress(OSError):
                os.setpgid(0, 0)
        if spec.max_rss is not None:
            _write_start_size(spec)
        self._faults = open(spec.faults_file, "w")  # noqa: SIM115 - open until the process ends
        faulthandler.enable(file=self._faults, all_threads=True)
        faulthandler.register(signal.SIGUSR1, file=self._faults, all_threads=True)
        self._warnings = _recorded_for_the_parent()
        leftovers.at_child_start()
        self._config = config
        self._spec = spec
        self._notes = notes
        self._pid = os.getpid()
        #: Where to say the report is complete (a :func:`supervise.report_pipe`), if the parent listens.
        self._report_signal = report_signal
        #: Set once the test's call has returned or raised: reports made before are subtests'.
        self._call_done = False
        #: Reports logged during the call (subtests), to be logged again in the parent.
        self._during_call: List[SerializedReport] = []
        #: Finalizers the test registered during its call, run after its call report.
        self._finalizers: List[Callable[[], object]] = []

    def run_call(self, item: pytest.Item, runtest: Callable[[], object]) -> None:
        """Run the test's (tracked) call; stop requests go to the parent, not to pytest here.

        The finalizers the test registers meanwhile (``request.addfinalizer``) are kept to
        run here after the call report (see ``_send_report``): pytest's teardown, in the
        parent, never sees them.
        """
        item.addfinalizer = self._finalizers.append  # type: ignore[method-assign,assignment]
        try:
            runtest()
        except KeyboardInterrupt:
            self._finish(Stopped("interrupt"))
        except pytest.exit.Exception as stop:
            self._finish(Stopped("exit", stop.msg, stop.returncode))
        finally:
            del item.addfinalizer
            self._call_done = True

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """The call report is made: send it home (a subtest's, made during the call, waits)."""
        report = yield
        if call.when == "call" and self._call_done:
            self._send_report(report)
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """A report logged during the call (a subtest's) goes home with the call report."""
        if self._call_done:
            escaped()
        self._keep_for_parent(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report: pytest.TestReport) -> Optional[Tuple[str, str, str]]:
        """A report logged during the call (a subtest's) shows no progress here: the parent
        logs it again, and a forked child's terminal is the parent's, so it would show twice."""
        if not self._call_done and report.when == "call":
            return "", "", ""
        return None

    def _keep_for_parent(self, report: pytest.TestReport) -> None:
        """Keep a subtest's report to be logged in the parent, and write it to the logged
        file at once: if the child dies later in the call, the parent still logs it."""
        config = self._config
        data = config.hook.pytest_report_to_serializable(config=config, report=report)
        self._during_call.append(data)
        with contextlib.suppress(Exception):  # only a crash would need it
            append_logged(self._spec, _picklable(Logged(data)))

    def _send_report(self, report: pytest.TestReport) -> NoReturn:
        """Send the call report and the recorded warnings to the parent, then end the child."""
        # Plugins settle a report's final outcome when its status is asked for (pytest's
        # subtests fail a test with failed subtests, counted here in the child): ask now.
        config = self._config
        config.hook.pytest_report_teststatus(report=report, config=config)
        data = config.hook.pytest_report_to_serializable(config=config, report=report)
        teardown_errors = _run_finalizers(self._finalizers)
        self._finish(
            Reported(
                report=data,
                during_call=tuple(self._during_call),
                warnings=tuple(_warning_record(message) for message in self._warnings),
                objects_verdict=self._notes.objects_verdict,
                resident=self._notes.resident,
                regions=tuple(self._notes.regions),
                teardown_errors=teardown_errors,
            )
        )

    def _finish(self, reply: Reply) -> NoReturn:
        if os.getpid() != self._pid:  # a process the test forked, back in pytest's code
            os._exit(0)
        with contextlib.suppress(BaseException):  # the report goes home whatever a handler does
            leftovers.at_child_end()
        _save_coverage()
        status = 0
        try:
            payload = _picklable(reply)
            with open(self._spec.reply_file, "wb") as stream:
                stream.write(payload)
        except BaseException:
            status = 1
            error = traceback.format_exc()
            try:
                with open(self._spec.reply_file, "wb") as stream:
                    stream.write(pickle.dumps(ReportLost(error)))
            except BaseException:
                _tell_on_stderr(
                    "The isolated child process running this test could not send its report:\n" + error
                )
        flush_quietly()
        if status == 0 and isinstance(reply, Reported):
            _say_reported(self._report_signal)
        os._exit(status)


def _write_start_size(spec: CallSpec) -> None:
    """Tell the parent this process's resident size at the test's start, for the memory
    ceiling: what it inherited or loaded before (fixture values) is not the test's.

    One write ending with a newline: the parent reads the size only once the line is whole.
    """
    with open(spec.start_size_file, "w") as stream:
        stream.write(f"{resident_size(os.getpid())}\n")


def tell_unrunnable(spec: CallSpec, text: str) -> None:
    """Tell the parent why the test's call could not run (its reply file)."""
    with open(spec.reply_file, "wb") as stream:
        stream.write(pickle.dumps(Unrunnable(text)))


def cannot_run(spec: CallSpec, text: str) -> NoReturn:
    """End a child that could not get to the test's call, telling the parent why."""
    status = 0
    try:
        tell_unrunnable(spec, text)
    except BaseException:
        status = _tell_on_stderr(text)
    flush_quietly()
    os._exit(status)


def _tell_on_stderr(text: str) -> int:
    """Write what the parent should know to stderr (the test's captured output) when the
    reply file cannot be written (its directory removed, the disk full); the exit
    status that says so."""
    flush_quietly()
    with contextlib.suppress(OSError):
        os.write(2, text.encode(errors="replace") + b"\n")
    return 1


def _warning_record(message: warnings.WarningMessage) -> WarningRecord:
    category = message.category
    return (
        str(message.message),
        category.__module__,
        category.__qualname__,
        message.filename,
        message.lineno,
    )


def _run_finalizers(finalizers: List[Callable[[], object]]) -> Tuple[str, ...]:
    """Run the finalizers the test registered during its call, last first, as pytest's
    teardown would; the tracebacks of those that raised."""
    errors = []
    for finalizer in reversed(finalizers):
        try:
            finalizer()
        except BaseException:
            errors.append(traceback.format_exc())
    return tuple(errors)


def _picklable(message: object) -> bytes:
    try:
        return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        # record_property accepts any object; what cannot cross the process boundary
        # travels as its repr.
        if not isinstance(message, (Reported, Logged)):
            raise
        report = dict(message.report)
        report["user_properties"] = [(name, repr(value)) for name, value in report.get("user_properties", [])]
        return pickle.dumps(replace(message, report=report), protocol=pickle.HIGHEST_PROTOCOL)


def _save_coverage() -> None:
    """Save coverage.py's data (pytest-cov), which ``os._exit`` would otherwise lose.

    coverage.py notices the fork and writes the child's data to a file of its own, which
    pytest-cov combines with the others at the end of the run.
    """
    coverage = sys.modules.get("coverage")
    current = getattr(getattr(coverage, "Coverage", None), "current", None)
    measuring = current() if callable(current) else None
    if measuring is not None:
        with contextlib.suppress(Exception):
            measuring.stop()
            measuring.save()


def flush_quietly() -> None:
    """Flush every standard stream before ``os._exit``; a child on its way out must not fail."""
    streams: List[Optional[TextIO]] = [sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__]
    for output in streams:
        if output is not None:
            with contextlib.suppress(BaseException):
                output.flush()


def _say_reported(report_signal: Optional[int]) -> None:
    """Tell the parent the report is complete: it need not wait for this process to exit."""
    if report_signal is not None:
        with contextlib.suppress(OSError):
            os.write(report_signal, b"!")


def escaped() -> NoReturn:
    """End a child that got past its call report; the parent reports the test as broken."""
    os._exit(ESCAPED_EXIT_STATUS)
