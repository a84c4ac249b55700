"""A tracked test's TestRecord (_reporting/record.py): the --memray-json entry, the figures
on the call report, and the document built from records."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Dict, Literal

import pytest

from conftest import Runner
from pytest_memray_isolate._isolation.messages import ExitFacts
from pytest_memray_isolate._judging.capture import Location, MemoryResult, ProcessFigures
from pytest_memray_isolate._judging.judge import CountedLeak
from pytest_memray_isolate._reporting.json_report import MINOR_VERSION, SCHEMA, VERSION, build_document
from pytest_memray_isolate._reporting.record import TestRecord, attach_record, take_record
from pytest_memray_isolate._settings import default_settings

#: A test's entry as docs/reports.rst documents it, every field set.
_ENTRY: Dict[str, Any] = {
    "nodeid": "t.py::test_it",
    "outcome": "failed",
    "mode": "fork",
    "duration": 0.25,
    "peak_memory": 4096,
    "total_allocations": 3,
    "rss_growth": 65536,
    "limit": {
        "kind": "limit_leaks",
        "bytes": 1024,
        "text": "1 KB",
        "source": "marker",
        "warmups": 1,
        "repeats": 2,
    },
    "top_locations": [{"function": "test_it", "filename": "/src/t.py", "lineno": 7, "size": 4000}],
    "capture_file": "/kept/p-t.py-test_it.bin",
    "flamegraph": "/graphs/flamegraph-t.py-test_it.html",
    "child": {"exit_code": None, "signal": "SIGSEGV", "killed_for": None, "max_rss": 1 << 20},
    "leaks": [
        {"size": 2048, "function": "grow", "filename": "/src/t.py", "lineno": 3, "growth": [1024, 2048]}
    ],
    "processes": [
        {
            "pid": 42,
            "role": "test",
            "peak_memory": 4096,
            "total_allocations": 3,
            "counted": True,
            "note": None,
            "capture_file": None,
        },
        {
            "pid": 43,
            "role": "forked",
            "peak_memory": None,
            "total_allocations": None,
            "counted": False,
            "note": "still running when the test's call ended",
            "capture_file": None,
        },
    ],
}

_RECORD = TestRecord(
    nodeid="t.py::test_it",
    outcome="failed",
    mode="fork",
    limit=_ENTRY["limit"],
    duration=0.25,
    peak_memory=4096,
    total_allocations=3,
    rss_growth=65536,
    top_locations=(Location("test_it", "/src/t.py", 7, 4000),),
    capture_file="/kept/p-t.py-test_it.bin",
    flamegraph="/graphs/flamegraph-t.py-test_it.html",
    child=ExitFacts(None, "SIGSEGV", None, 1 << 20),
    leaks=(CountedLeak(2048, "grow", "/src/t.py", 3, (1024, 2048)),),
    processes=(
        ProcessFigures(42, "test", 4096, 3),
        ProcessFigures(43, "forked", None, None, False, "still running when the test's call ended"),
    ),
)


def test_a_record_is_its_json_entry_and_back() -> None:
    """to_dict gives the documented entry, key for key and in its order; from_dict of the
    entry, even after a trip through JSON text, gives the record again."""
    assert _RECORD.to_dict() == _ENTRY
    assert list(_RECORD.to_dict()) == list(_ENTRY)
    assert TestRecord.from_dict(_ENTRY) == _RECORD
    assert TestRecord.from_dict(json.loads(json.dumps(_ENTRY))) == _RECORD


def test_an_entry_written_before_minor_version_1_reads_without_a_duration() -> None:
    """Minor versions only add keys: an entry without ``duration`` (minor version 0) still
    reads, with the duration unknown."""
    older = {key: value for key, value in _ENTRY.items() if key not in ("duration", "rss_growth")}
    assert TestRecord.from_dict(older) == replace(_RECORD, duration=None, rss_growth=None)


def test_an_entry_written_before_minor_version_2_reads_without_a_resident_growth() -> None:
    """An entry of minor version 1 (no ``rss_growth``) reads, with the growth unknown; the
    current document says minor version 2."""
    older = {key: value for key, value in _ENTRY.items() if key != "rss_growth"}
    assert TestRecord.from_dict(older) == replace(_RECORD, rss_growth=None)
    assert MINOR_VERSION == 2


def test_a_record_of_a_test_without_figures_keeps_its_unread_capture() -> None:
    """A crashed child's test has no figures; its kept capture file is still named, and the
    lists it has no figures for are empty or null as the schema says."""
    record = TestRecord.of_test(
        "t.py::test_it",
        "failed",
        mode="fork",
        limit=None,
        duration=None,
        rss_growth=None,
        result=None,
        child=ExitFacts(None, "SIGKILL", "timeout", 0),
        leaks=None,
        unread_capture="/kept/p-t.py-test_it.bin",
    )
    entry = record.to_dict()
    assert (entry["peak_memory"], entry["total_allocations"], entry["top_locations"]) == (None, None, [])
    assert entry["capture_file"] == "/kept/p-t.py-test_it.bin"
    assert entry["processes"] is None
    assert entry["rss_growth"] is None
    assert entry["child"]["killed_for"] == "timeout"


def test_a_record_of_a_test_with_figures_takes_them_from_its_result() -> None:
    """Peak, count, top locations, kept file and flame graph come from the figures; a test
    not followed into forks has ``processes`` null."""
    result = MemoryResult(
        "t.py::test_it",
        4096,
        3,
        "▁█",
        (Location("test_it", "/src/t.py", 7, 4000),),
        kept_file="/kept/a.bin",
        flamegraph="/graphs/a.html",
    )
    record = TestRecord.of_test(
        "t.py::test_it",
        "passed",
        mode="in-process",
        limit=None,
        duration=0.5,
        rss_growth=3 << 20,
        result=result,
        child=None,
        leaks=(),
        unread_capture=None,
    )
    assert record.to_dict() == {
        "nodeid": "t.py::test_it",
        "outcome": "passed",
        "mode": "in-process",
        "duration": 0.5,
        "peak_memory": 4096,
        "total_allocations": 3,
        "rss_growth": 3 << 20,
        "limit": None,
        "top_locations": [{"function": "test_it", "filename": "/src/t.py", "lineno": 7, "size": 4000}],
        "capture_file": "/kept/a.bin",
        "flamegraph": "/graphs/a.html",
        "child": None,
        "leaks": [],
        "processes": None,
    }


def _call_report(outcome: Literal["passed", "failed", "skipped"]) -> pytest.TestReport:
    return pytest.TestReport("t.py::test_it", ("t.py", 6, "test_it"), {}, outcome, None, "call")


def test_a_record_is_taken_off_its_report_once_with_the_logged_outcome() -> None:
    """What travels on the call report is plain data (as pytest's serialization needs); it is
    taken off once, with the outcome the logged report has, and the figures intact."""
    result = MemoryResult("t.py::test_it", 4096, 3, "▁█", (), kept_others=("/kept/b.bin",))
    report = _call_report("passed")
    attach_record(report, replace(_RECORD, outcome="passed"), result)
    carried = json.loads(json.dumps(vars(report)["memray_result"]))
    assert carried["record"] == {**_ENTRY, "outcome": "passed"}
    assert MemoryResult.from_dict(carried["result"]) == result
    report.outcome = "failed"  # as a later plugin's makereport may do
    taken = take_record(report)
    assert taken == (_RECORD, result)
    assert take_record(report) is None
    assert "memray_result" not in vars(report)


def test_a_report_without_a_record_has_nothing_to_take() -> None:
    """Reports of untracked tests carry no record."""
    assert take_record(_call_report("passed")) is None


def test_the_document_lists_the_records_and_sums_them_up() -> None:
    """build_document: each test's entry is its record's, in order; the summary counts the
    outcomes and names the highest peak among the tests that have one."""
    crashed = TestRecord("t.py::test_crash", "failed", "fork", None)
    small = TestRecord("t.py::test_small", "passed", "fork", None, peak_memory=10, total_allocations=1)
    document = build_document(
        [_RECORD, crashed, small], replace(default_settings(), isolate="fork"), exitstatus=1
    )
    assert (document["schema"], document["version"], document["minor_version"]) == (
        SCHEMA,
        VERSION,
        MINOR_VERSION,
    )
    assert document["exit_status"] == 1
    assert document["tests"] == [_ENTRY, crashed.to_dict(), small.to_dict()]
    assert document["summary"] == {
        "tracked": 3,
        "outcomes": {"failed": 2, "passed": 1},
        "highest_peak": {"nodeid": "t.py::test_it", "peak_memory": 4096},
    }
    assert document["settings"]["isolate"] == "fork"
    empty = build_document([], default_settings(), exitstatus=0)
    assert empty["summary"] == {"tracked": 0, "outcomes": {}, "highest_peak": None}


def test_every_entry_of_a_real_report_is_a_record(pytester: pytest.Pytester, run: Runner) -> None:
    """Entries written by a run (figures, a counted leak, a crashed child, kept files,
    processes followed into forks) read back as records that give the same entries."""
    pytester.makepyfile(
        """
        import os
        import pytest

        KEPT = []

        def test_holds():
            data = bytearray(1024 * 1024)
            assert data

        @pytest.mark.limit_leaks("10 KB")
        def test_leaks():
            KEPT.append(bytearray(50_000))

        def test_crashes():
            os.abort()
        """
    )
    run("--memray-isolate=fork", "--memray-follow-fork", "--memray-bin-path=bins", "--memray-json=out.json")
    tests = json.loads((pytester.path / "out.json").read_text())["tests"]
    assert [test["nodeid"].split("::")[1] for test in tests] == ["test_holds", "test_leaks", "test_crashes"]
    assert tests[1]["leaks"]
    assert tests[2]["child"] is not None
    assert tests[0]["processes"]
    assert all(isinstance(test["duration"], float) and test["duration"] > 0 for test in tests)
    # The child that reported measured its growth (Linux); the crashed one could not send it.
    assert isinstance(tests[0]["rss_growth"], int)
    assert tests[2]["rss_growth"] is None
    for entry in tests:
        assert TestRecord.from_dict(entry).to_dict() == entry
