"""What crosses between the parent and a test's child process, typed at both ends.

Going out, a :class:`CallSpec` (frozen): which test, where its capture and other files
go, what to track, and what the child may spend. Coming back, one :class:`Reply` written
to the spec's reply file: the call report (:class:`Reported`), a stop request
(:class:`Stopped`), why the test could not run (:class:`Unrunnable`), or why the report
could not be sent (:class:`ReportLost`). Subtests' reports are appended to the logged
file one :class:`Logged` at a time as the child goes, and each ``memray_region`` as it
starts (:class:`RegionOpened`) and ends (:class:`RegionMeasured`), so a crash later
keeps them.

The parent's own view of the call, which never crosses, is :class:`Job`: the spec, what
the tracker noted where the test ran (:class:`TrackerNotes`) and, for an isolated test,
how its child ended (:class:`ChildOutcome`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union, final

from .._capture_files import repetition_capture
from .._judging.capture import RegionFigures
from .._judging.limits import Verdict
from .._plan import LeakedObjectsCheck, TrackerOptions
from .._tracking.resident import NOT_REPORTED, Resident

__all__ = [
    "CHILD_ENV",
    "REQUEST_ENV",
    "SERVER_ENV",
    "STREAMS_ENV",
    "CallSpec",
    "ChildOutcome",
    "ExitFacts",
    "Job",
    "Logged",
    "LoggedRecord",
    "RegionMeasured",
    "RegionOpened",
    "Reply",
    "ReportLost",
    "Reported",
    "Stopped",
    "TrackerNotes",
    "Unrunnable",
    "WarningRecord",
    "append_logged",
]

#: A warning raised in the child: its text, category's module and qualified name, file, line.
WarningRecord = Tuple[str, str, str, str, int]
#: A pytest report as ``pytest_report_to_serializable`` makes it.
SerializedReport = Dict[str, Any]

#: Set in the environment of the pytest sessions the plugin starts (a spawned child, the
#: forkserver) to their mode, for conftest files: such a session runs their
#: pytest_configure too. The test itself sees pytest's environment, without it.
CHILD_ENV = "PYTEST_MEMRAY_ISOLATE_CHILD"
#: Set in a spawned child's environment: the path of its one request file.
REQUEST_ENV = "PYTEST_MEMRAY_ISOLATE_REQUEST"
#: Set in a spawned child's environment: the descriptors of the parent's stdout and stderr.
STREAMS_ENV = "PYTEST_MEMRAY_ISOLATE_STREAMS"
#: Set in the forkserver's environment: the descriptor of its socket to the parent.
SERVER_ENV = "PYTEST_MEMRAY_ISOLATE_SERVER"


@final
@dataclass(frozen=True)
class CallSpec:
    """One tracked call as the process that runs it needs it: the same in every mode."""

    nodeid: str
    capture: Path
    #: Path stem in the session's scratch directory for the call's other files.
    scratch: Path
    tracker: TrackerOptions = field(default_factory=TrackerOptions)
    objects: Optional[LeakedObjectsCheck] = None
    #: Seconds the child may run, and the resident memory it may grow by (isolated only).
    timeout: Optional[float] = None
    max_rss: Optional[int] = None
    #: Untracked calls, then calls each tracked alone (a repeated limit_leaks test).
    warmups: int = 0
    repeats: int = 1
    #: With ``tracker.ends_open``: the thread name that ends the tracked window (window.py).
    window_marker: Optional[str] = None
    #: The test uses ``memray_region``: only its regions are tracked, each by a Tracker of
    #: its own writing ``NAME-regionN.bin`` beside ``capture`` (which is never written).
    regions: bool = False

    def repetition_captures(self) -> List[Path]:
        """One capture per tracked call; the last is ``capture``, whose figures are reported."""
        return [
            repetition_capture(self.capture, number, self.repeats) for number in range(1, self.repeats + 1)
        ]

    @property
    def still_running_file(self) -> Path:
        """Where the process that ran the test lists the forked processes still running after it."""
        return self.scratch.with_suffix(".running")

    @property
    def reply_file(self) -> Path:
        """Where the child writes its :data:`Reply` for the parent."""
        return self.scratch.with_suffix(".report")

    @property
    def logged_file(self) -> Path:
        """Where the child appends each report it logs during the call, as it logs it, so
        that a crash later in the call does not lose them (subtests that passed)."""
        return self.scratch.with_suffix(".logged")

    @property
    def request_file(self) -> Path:
        """Where the parent writes what a spawned or forkserver child needs to run the test."""
        return self.scratch.with_suffix(".request")

    @property
    def startup_output_file(self) -> Path:
        """Where a spawned child's output goes until it reaches the test (its start-up noise)."""
        return self.scratch.with_suffix(".startup")

    @property
    def start_size_file(self) -> Path:
        """Where the child writes its resident size when it reaches the test (with a memory
        ceiling): the ceiling applies to what it grows beyond that."""
        return self.scratch.with_suffix(".start")

    @property
    def faults_file(self) -> Path:
        """Where the child's faulthandler writes its stacks (crash or timeout)."""
        return self.scratch.with_suffix(".faults")


# -- the child's reply ------------------------------------------------------------------


@final
@dataclass(frozen=True)
class Reported:
    """The call report, with the subtests' reports and the warnings raised during the call.

    ``objects_verdict`` is judged where the test ran, right after its Tracker stopped: the
    objects that outlived the test exist only in that process. So is ``resident``: the
    growth of the child's own peak resident size during the call. ``regions`` are the
    figures of the test's ``memray_region`` blocks, read there as each one ended (the test
    read them). ``teardown_errors`` are the tracebacks of the finalizers the test
    registered during its call (``request.addfinalizer``), which the child ran after its
    call report and which raised: the parent fails the test's teardown with them.
    """

    report: SerializedReport
    during_call: Tuple[SerializedReport, ...] = ()
    warnings: Tuple[WarningRecord, ...] = ()
    objects_verdict: Optional[Verdict] = None
    resident: Optional[Resident] = None
    regions: Tuple[RegionFigures, ...] = ()
    teardown_errors: Tuple[str, ...] = ()


@final
@dataclass(frozen=True)
class Stopped:
    """The test asked to stop the whole run: Ctrl-C (``interrupt``) or ``pytest.exit``."""

    kind: str
    text: str = ""
    returncode: Optional[int] = None


@final
@dataclass(frozen=True)
class Unrunnable:
    """The child could not get to the test's call (not collected, set-up failed, ...)."""

    text: str


@final
@dataclass(frozen=True)
class ReportLost:
    """The child reached the end of the call but its report could not be sent or read."""

    error: str


Reply = Union[Reported, Stopped, Unrunnable, ReportLost]


@final
@dataclass(frozen=True)
class Logged:
    """One report the child logged during the call (a subtest's), appended as it happened."""

    report: SerializedReport


@final
@dataclass(frozen=True)
class RegionOpened:
    """A ``memray_region`` about to start its Tracker, appended before it does: a child
    that dies inside the region is reported with the region's number and place."""

    number: int
    filename: str
    lineno: int


@final
@dataclass(frozen=True)
class RegionMeasured:
    """A ``memray_region``'s figures, appended as its block ended (the test read them)."""

    figures: RegionFigures


#: What the logged file holds, one pickled record after another.
LoggedRecord = Union[Logged, RegionOpened, RegionMeasured]


def append_logged(spec: CallSpec, payload: bytes) -> None:
    """Append one pickled :data:`LoggedRecord` to the call's logged file (read back by
    ``child_end.read_logged``)."""
    with open(spec.logged_file, "ab") as stream:
        stream.write(payload)


# -- the parent's view ------------------------------------------------------------------


@final
@dataclass(frozen=True)
class ExitFacts:
    """How a child that sent no report ended: for the JSON report's ``child`` entry."""

    exit_code: Optional[int]
    signal: Optional[str]
    killed_for: Optional[str]
    max_rss: int

    def as_dict(self) -> Dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "signal": self.signal,
            "killed_for": self.killed_for,
            "max_rss": self.max_rss,
        }


@final
@dataclass(frozen=True)
class ChildOutcome:
    """What the parent learned from a test's child once it was done with it."""

    #: The child's reply when it sent its call report, else ``None``.
    reported: Optional[Reported]
    #: Reports the child logged during the call (subtests): sent with the call report, or
    #: read from the logged file when it died before sending one.
    during_call: Tuple[SerializedReport, ...]
    #: The figures of the test's ``memray_region`` blocks: sent with the call report, or,
    #: from a child that died, those it logged as they ended and the one it died in, read
    #: from that region's capture.
    regions: Tuple[RegionFigures, ...]
    #: How the child ended when it did not report (crash, timeout, memory).
    exit_facts: Optional[ExitFacts]
    #: Whether the child reached the end of its tracked window (the parent cut its capture there).
    window_closed: bool
    #: Whether the child's output went to this process's capture rather than its own
    #: (spawn, forkserver): the call report then takes its output sections from here.
    output_captured_here: bool


@final
@dataclass
class TrackerNotes:
    """What the tracker notes where the test ran, right after its Tracker stopped."""

    objects_verdict: Optional[Verdict] = None
    #: The process's resident growth during the call (see _tracking/resident.py).
    resident: Optional[Resident] = None
    #: Each ``memray_region`` the test measured, in order, as it ended.
    regions: List[RegionFigures] = field(default_factory=list)


@final
@dataclass
class Job:
    """The parent's view of one tracked call: the spec it ran with and what came of it.

    Each part has one writer: the parent builds ``spec``; the tracker writes ``notes``
    where the test ran (in this process when it is not isolated); the isolation mode's
    wait for the child sets ``child`` once.
    """

    spec: CallSpec
    notes: TrackerNotes = field(default_factory=TrackerNotes)
    child: Optional[ChildOutcome] = None

    @property
    def nodeid(self) -> str:
        return self.spec.nodeid

    @property
    def capture(self) -> Path:
        return self.spec.capture

    @property
    def tracker(self) -> TrackerOptions:
        return self.spec.tracker

    @property
    def repeats(self) -> int:
        return self.spec.repeats

    @property
    def window_marker(self) -> Optional[str]:
        return self.spec.window_marker

    def repetition_captures(self) -> List[Path]:
        return self.spec.repetition_captures()

    @property
    def window_closed(self) -> bool:
        """Whether the child reached the end of its tracked window (never, in this process)."""
        return self.child is not None and self.child.window_closed

    @property
    def regions(self) -> Tuple[RegionFigures, ...]:
        """The figures of the test's regions, from wherever it ran (a child that crashed or
        was killed: those it measured before)."""
        if self.child is not None:
            return self.child.regions
        return tuple(self.notes.regions)

    @property
    def objects_verdict(self) -> Optional[Verdict]:
        """limit_leaked_objects' verdict, from wherever the test ran."""
        if self.child is not None:
            return None if self.child.reported is None else self.child.reported.objects_verdict
        return self.notes.objects_verdict

    @property
    def resident(self) -> Resident:
        """The resident growth during the call, from wherever the test ran."""
        if self.child is not None:
            reported = self.child.reported
            if reported is None or reported.resident is None:
                return Resident(unavailable=NOT_REPORTED)
            return reported.resident
        return self.notes.resident or Resident()
