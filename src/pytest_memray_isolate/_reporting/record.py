"""One tracked test as the reports see it, and how it travels on the test's call report.

The process that runs a test attaches its :class:`TestRecord` and figures to the call
report; pytest-xdist serializes the report with them, so the process that reports (the
session, or the controller) takes them from the report it logs, wherever the test ran.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, Optional, Tuple

import pytest

from .._isolation.messages import ExitFacts
from .._judging.capture import Location, MemoryResult, ProcessFigures
from .._judging.judge import CountedLeak

__all__ = ["TestRecord", "attach_record", "take_record"]

#: The call report's attribute carrying the record and the figures as plain data.
_ATTRIBUTE = "memray_result"


@dataclass(frozen=True)
class TestRecord:
    """Everything --memray-json says of one tracked test: :meth:`to_dict` is its entry in
    the document's ``tests`` (schema version 1, minor version 2, see json_report.py)."""

    # Named like a test class; pytest must not try to collect it where it is imported.
    __test__ = False

    nodeid: str
    outcome: str
    #: ``"in-process"`` or the isolation mode.
    mode: str
    #: The limit that applied, as ``TrackingPlan.limit_description`` gives it.
    limit: Optional[Dict[str, Any]]
    #: Seconds the call phase took, as pytest's call report says (since minor version 1).
    duration: Optional[float] = None
    peak_memory: Optional[int] = None
    total_allocations: Optional[int] = None
    #: Bytes the process's peak resident size grew by during the call, when known (since
    #: minor version 2).
    rss_growth: Optional[int] = None
    top_locations: Tuple[Location, ...] = ()
    #: The test's capture file when the user keeps them, read or not (a crashed child's).
    capture_file: Optional[str] = None
    flamegraph: Optional[str] = None
    #: How an isolated child ended when it did not report (crash, timeout, memory).
    child: Optional[ExitFacts] = None
    #: For a limit_leaks test that passed on its own: the leaks that counted.
    leaks: Optional[Tuple[CountedLeak, ...]] = None
    #: With --memray-follow-fork: the test's process and each one it forked.
    processes: Optional[Tuple[ProcessFigures, ...]] = None

    @classmethod
    def of_test(
        cls,
        nodeid: str,
        outcome: str,
        *,
        mode: str,
        limit: Optional[Dict[str, Any]],
        duration: Optional[float],
        rss_growth: Optional[int],
        result: Optional[MemoryResult],
        child: Optional[ExitFacts],
        leaks: Optional[Tuple[CountedLeak, ...]],
        unread_capture: Optional[str],
    ) -> TestRecord:
        """A test's record from its figures (``None`` when its capture could not be read,
        whose file, ``unread_capture``, may still be one the user keeps)."""
        record = cls(
            nodeid,
            outcome,
            mode,
            limit,
            duration,
            rss_growth=rss_growth,
            capture_file=unread_capture,
            child=child,
            leaks=leaks,
        )
        if result is None:
            return record
        return replace(
            record,
            peak_memory=result.peak_memory,
            total_allocations=result.total_allocations,
            top_locations=result.top_locations,
            capture_file=result.kept_file or unread_capture,
            flamegraph=result.flamegraph,
            processes=result.processes or None,
        )

    def to_dict(self) -> Dict[str, Any]:
        """The test's entry in --memray-json, in the schema's order of keys."""
        return {
            "nodeid": self.nodeid,
            "outcome": self.outcome,
            "mode": self.mode,
            "duration": self.duration,
            "peak_memory": self.peak_memory,
            "total_allocations": self.total_allocations,
            "rss_growth": self.rss_growth,
            "limit": self.limit,
            "top_locations": [asdict(location) for location in self.top_locations],
            "capture_file": self.capture_file,
            "flamegraph": self.flamegraph,
            "child": None if self.child is None else self.child.as_dict(),
            "leaks": None if self.leaks is None else [_leak_dict(leak) for leak in self.leaks],
            "processes": None if self.processes is None else [asdict(process) for process in self.processes],
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> TestRecord:
        """The record :meth:`to_dict` gave (after a trip through pytest-xdist, say)."""
        leaks = data["leaks"]
        processes = data["processes"]
        child = data["child"]
        return cls(
            nodeid=data["nodeid"],
            outcome=data["outcome"],
            mode=data["mode"],
            limit=data["limit"],
            duration=data.get("duration"),
            peak_memory=data["peak_memory"],
            total_allocations=data["total_allocations"],
            rss_growth=data.get("rss_growth"),
            top_locations=tuple(Location(**location) for location in data["top_locations"]),
            capture_file=data["capture_file"],
            flamegraph=data["flamegraph"],
            child=None if child is None else ExitFacts(**child),
            leaks=None if leaks is None else tuple(_leak_from_dict(leak) for leak in leaks),
            processes=None
            if processes is None
            else tuple(ProcessFigures(**process) for process in processes),
        )


def _leak_dict(leak: CountedLeak) -> Dict[str, Any]:
    return {**asdict(leak), "growth": list(leak.growth)}


def _leak_from_dict(data: Dict[str, Any]) -> CountedLeak:
    return CountedLeak(**{**data, "growth": tuple(data["growth"])})


def attach_record(report: pytest.TestReport, record: TestRecord, result: Optional[MemoryResult]) -> None:
    """Put the test's record on its call report, with the figures only the MEMRAY REPORT
    needs (histogram, whether they were read in detail, other kept files), as plain data
    that survives pytest's report serialization."""
    payload = {"record": record.to_dict(), "result": None if result is None else result.as_dict()}
    setattr(report, _ATTRIBUTE, payload)


def take_record(report: pytest.TestReport) -> Optional[Tuple[TestRecord, Optional[MemoryResult]]]:
    """Take what :func:`attach_record` put on a call report off it (pytest keeps every
    report until the run ends), or ``None`` for a report without it.

    The record's node id and outcome are the logged report's: a plugin's
    ``pytest_runtest_makereport`` that ran after the plugin's may have changed them.
    """
    payload = getattr(report, _ATTRIBUTE, None)
    if not isinstance(payload, dict):
        return None
    delattr(report, _ATTRIBUTE)
    record = TestRecord.from_dict(payload["record"])
    record = replace(record, nodeid=report.nodeid, outcome=report.outcome)
    result = payload["result"]
    return record, None if result is None else MemoryResult.from_dict(result)
