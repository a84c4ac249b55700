"""What crosses between the parent and a test's child process: the job, the report, the environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .._capture_files import repetition_capture
from .._judging.limits import Verdict
from .._plan import LeakedObjectsCheck, TrackerOptions

__all__ = [
    "CHILD_ENV",
    "REQUEST_ENV",
    "SERVER_ENV",
    "STREAMS_ENV",
    "ChildReport",
    "Job",
]

WarningRecord = Tuple[str, str, str, str, int]

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


@dataclass
class ChildReport:
    """What an isolated child sent back: its call report and the warnings it raised."""

    report: Dict[str, Any]
    warnings: List[WarningRecord] = field(default_factory=list)


@dataclass
class Job:
    """One tracked call: where its capture goes, what to record, and what came back.

    ``objects_verdict`` is set where the test ran, right after its Tracker stopped: the
    objects that outlived the test exist only in that process.
    """

    nodeid: str
    capture: Path
    #: Path stem in the session's scratch directory for this job's other files.
    scratch: Path
    tracker: TrackerOptions = field(default_factory=TrackerOptions)
    objects: Optional[LeakedObjectsCheck] = None
    objects_verdict: Optional[Verdict] = None
    child: Optional[ChildReport] = None
    #: Seconds the child may run, and the resident memory it may grow by (isolated only).
    timeout: Optional[float] = None
    max_rss: Optional[int] = None
    #: How the child ended when it did not report (crash, timeout, memory), for reports.
    child_end: Optional[Dict[str, Any]] = None
    #: Whether the child's output went to this process's capture rather than its own
    #: (spawn, forkserver): the call report then takes its output sections from here.
    output_captured_here: bool = False
    #: Reports the child logged during the call (subtests), serialized: sent with its call
    #: report, or read from :attr:`logged` when it died before sending one.
    during_call: List[Dict[str, Any]] = field(default_factory=list)
    #: The leaks that counted against a limit_leaks marker, for reports.
    leaks: Optional[List[Dict[str, Any]]] = None
    #: Untracked calls, then calls each tracked alone (a repeated limit_leaks test).
    warmups: int = 0
    repeats: int = 1
    #: With ``tracker.ends_open``: the thread name that ends the tracked window (window.py).
    window_marker: Optional[str] = None
    #: Whether the parent found that marker and cut the capture there (the child reached it).
    window_closed: bool = False

    def repetition_captures(self) -> List[Path]:
        """One capture per tracked call; the last is ``capture``, whose figures are reported."""
        return [
            repetition_capture(self.capture, number, self.repeats) for number in range(1, self.repeats + 1)
        ]

    @property
    def running(self) -> Path:
        """Where the process that ran the test lists the forked processes still running after it."""
        return self.scratch.with_suffix(".running")

    @property
    def message(self) -> Path:
        """Where the child writes its report for the parent."""
        return self.scratch.with_suffix(".report")

    @property
    def logged(self) -> Path:
        """Where the child keeps each report it logs during the call, as it logs it, so that
        a crash later in the call does not lose them (subtests that passed)."""
        return self.scratch.with_suffix(".logged")

    @property
    def request(self) -> Path:
        """Where the parent writes what a spawned or forkserver child needs to run the test."""
        return self.scratch.with_suffix(".request")

    @property
    def startup_output(self) -> Path:
        """Where a spawned child's output goes until it reaches the test (its start-up noise)."""
        return self.scratch.with_suffix(".startup")

    @property
    def start_size(self) -> Path:
        """Where the child writes its resident size when it reaches the test (with a memory
        ceiling): the ceiling applies to what it grows beyond that."""
        return self.scratch.with_suffix(".start")

    @property
    def faults(self) -> Path:
        """Where the child's faulthandler writes its stacks (crash or timeout)."""
        return self.scratch.with_suffix(".faults")
