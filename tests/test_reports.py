"""End to end: the JSON report, JUnit properties and the summary's closing lines."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict

import pytest

from conftest import MODE_FLAGS, Runner, outcomes_in, run_once, run_suites

_SUITE = """
import os
import pytest

@pytest.mark.limit_memory("1 MB")
def test_over_its_limit():
    data = bytearray(3 * 1024 * 1024)
    assert data is not None

def test_big():
    data = bytearray(5 * 1024 * 1024)
    assert data is not None

def test_fails():
    size = len(bytearray(1024 * 1024))
    assert size == 0
"""


def _load(path: Path) -> Dict[str, Any]:
    data: Dict[str, Any] = json.loads(path.read_text())
    return data


def _by_name(document: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {test["nodeid"].split("::")[-1]: test for test in document["tests"]}


#: The module _SUITE is written to in the shared run (named after the summary's test, which
#: shows it).
_SHARED_MODULE = "test_summary_ends_with_the_highest_peak_and_the_mode"


@dataclass(frozen=True)
class SharedRun:
    """One shared run in one mode, and where it ran."""

    result: pytest.RunResult
    path: Path
    mode_flag: str


@pytest.fixture(scope="module", params=sorted(MODE_FLAGS))
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    """_SUITE run once per tracking mode writing both reports; the JSON report, the JUnit
    report and the summary's closing lines are checked on that one run."""
    flag = MODE_FLAGS[request.param]
    flags = ["--memray-json=reports/memory.json", "--junitxml=junit.xml"]
    result, path = run_once(
        tmp_path_factory,
        f"reports-{request.param}",
        lambda path: run_suites(path, {_SHARED_MODULE: _SUITE}, flag, *flags),
    )
    return SharedRun(result, path, flag)


def test_json_report_has_every_tracked_test(shared: SharedRun) -> None:
    """--memray-json: schema and version, each test's figures, limit and outcome, the run's peak."""
    mode_flag = shared.mode_flag
    shared.result.assert_outcomes(passed=1, failed=2)
    document = _load(shared.path / "reports" / "memory.json")
    assert document["schema"] == "pytest-memray-isolate/report"
    assert document["version"] == 1
    assert document["exit_status"] == 1
    tests = _by_name(document)
    assert sorted(tests) == ["test_big", "test_fails", "test_over_its_limit"]
    mode = mode_flag.partition("=")[2] or "in-process"
    assert {test["mode"] for test in tests.values()} == {mode}
    over = tests["test_over_its_limit"]
    assert over["outcome"] == "failed"
    assert over["peak_memory"] >= 3 * 1024 * 1024
    assert isinstance(over["peak_memory"], int)
    assert over["limit"] == {"kind": "limit_memory", "bytes": 1024 * 1024, "text": "1 MB", "source": "marker"}
    assert over["top_locations"][0]["function"] == "test_over_its_limit"
    assert over["top_locations"][0]["size"] >= 3 * 1024 * 1024
    assert tests["test_fails"]["outcome"] == "failed"
    assert tests["test_fails"]["peak_memory"] >= 1024 * 1024
    assert tests["test_big"]["limit"] is None
    assert document["summary"]["tracked"] == 3
    assert document["summary"]["outcomes"] == {"passed": 1, "failed": 2}
    assert document["summary"]["highest_peak"]["nodeid"].endswith("::test_big")
    assert document["settings"]["isolate"] == (None if mode == "in-process" else mode)
    assert [path.name for path in (shared.path / "reports").iterdir()] == ["memory.json"]


_DEFAULT_LIMIT_MODULE = "test_json_report_names_a_default_limit_kept_files_and_crashes"
_LEAKS_MODULE = "test_json_report_lists_the_leaks_that_counted"

_LEAKS = """
import pytest

LEAKED = []

def leak():
    LEAKED.append(bytearray(2 * 1024 * 1024))

@pytest.mark.limit_leaks("1 MB")
def test_leaks():
    leak()

@pytest.mark.limit_leaks("1 MB")
def test_clean():
    data = bytearray(2 * 1024 * 1024)
    del data

def test_unchecked():
    pass
"""

_UNDER_A_DEFAULT_LIMIT_AND_CRASHING = """
import os

def test_under_default_limit():
    data = bytearray(1024 * 1024)
    assert data is not None

def test_crashes():
    held = bytearray(8 * 1024 * 1024)
    os._exit(3)
"""


def _json_run(factory: pytest.TempPathFactory, mode_flag: str) -> SharedRun:
    """The leaks suite with --memray-json, once per mode; in fork mode the run also holds
    the default-limit and crash suite, with --memray-limit-memory=64 MB and
    --memray-bin-path: the leaks suite's tests stay far under 64 MB and check only their
    leaks, and each test reads its own tests' entries of the report."""
    mode = next(mode for mode, flag in MODE_FLAGS.items() if flag == mode_flag)
    suites = {_LEAKS_MODULE: _LEAKS}
    args = [mode_flag, "--memray-json=out.json", "-rA"]
    if mode == "fork":
        suites[_DEFAULT_LIMIT_MODULE] = _UNDER_A_DEFAULT_LIMIT_AND_CRASHING
        args += ["--memray-limit-memory=64 MB", "--memray-bin-path=captures"]
    result, path = run_once(factory, f"reports-json-{mode}", lambda path: run_suites(path, suites, *args))
    return SharedRun(result, path, mode_flag)


def test_json_report_names_a_default_limit_kept_files_and_crashes(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The limit's source, the kept capture file, and how a crashed child ended, with
    memray's figures up to the crash (fork mode)."""
    shared = _json_run(tmp_path_factory, MODE_FLAGS["fork"])
    assert outcomes_in(shared.result, f"{_DEFAULT_LIMIT_MODULE}.py") == {"passed": 1, "failed": 1}
    tests = _by_name(_load(shared.path / "out.json"))
    under = tests["test_under_default_limit"]
    assert under["limit"] == {
        "kind": "limit_memory",
        "bytes": 64 * 1024**2,
        "text": "64.0MiB",
        "source": "--memray-limit-memory",
    }
    assert Path(under["capture_file"]).exists()
    crashed = tests["test_crashes"]
    assert crashed["peak_memory"] >= 8 * 1024 * 1024
    assert crashed["top_locations"][0]["function"] == "test_crashes"
    assert Path(crashed["capture_file"]).exists()
    assert crashed["child"]["exit_code"] == 3
    assert crashed["child"]["signal"] is None
    assert crashed["child"]["max_rss"] > 0


def test_json_report_from_the_ini_under_xdist(pytester: pytest.Pytester, run: Runner) -> None:
    """memray_json in the ini file; with -n 2 the controller writes every worker's tests."""
    pytester.makepyfile(_SUITE)
    pytester.makeini("[pytest]\nmemray_json = out.json\n")
    result = run("--memray-isolate", "-n", "2", plugins=["xdist"])
    result.assert_outcomes(passed=1, failed=2)
    assert sorted(_by_name(_load(pytester.path / "out.json"))) == [
        "test_big",
        "test_fails",
        "test_over_its_limit",
    ]


@pytest.mark.parametrize("flag", ["--memray-json", "--memray-html"])
def test_report_path_that_is_a_directory_is_a_usage_error(
    pytester: pytest.Pytester, run_inprocess: Runner, flag: str
) -> None:
    """The JSON report's and the HTML page's path must be a file name, checked before any
    test runs (so in pytest's process: nothing is tracked)."""
    pytester.mkdir("reports")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = run_inprocess("--memray", f"{flag}=reports")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: {flag} = 'reports' (from the command line): */reports is a directory; expected a file name"]
    )


def test_junit_report_carries_memory_properties(shared: SharedRun) -> None:
    """Each tracked test has its peak and allocation count as properties; a limit failure's message is the limit's."""
    cases = {case.get("name"): case for case in ElementTree.parse(shared.path / "junit.xml").iter("testcase")}
    for name in ("test_over_its_limit", "test_big", "test_fails"):
        properties = {prop.get("name"): prop.get("value", "") for prop in cases[name].iter("property")}
        assert int(properties["memray_peak_memory"]) >= 1024 * 1024
        assert int(properties["memray_total_allocations"]) >= 1
    failure = cases["test_over_its_limit"].find("failure")
    assert failure is not None
    assert failure.get("message") == "Test was limited to 1.0MiB but allocated 3.0MiB"


def test_summary_ends_with_the_highest_peak_and_the_mode(shared: SharedRun) -> None:
    """After pytest-memray's blocks: the run's highest peak, and under isolation the mode."""
    result, mode_flag = shared.result, shared.mode_flag
    result.stdout.fnmatch_lines(
        ["Highest peak: 5.0MiB in test_summary_ends_with_the_highest_peak_and_the_mode.py::test_big"]
    )
    isolation = (
        f"Isolation: {mode_flag.partition('=')[2]} (each tracked test ran in a child process of its own)"
    )
    if "isolate" in mode_flag:
        result.stdout.fnmatch_lines([isolation])
    else:
        result.stdout.no_fnmatch_line(isolation)


def test_json_report_lists_the_leaks_that_counted(
    tmp_path_factory: pytest.TempPathFactory, mode_flag: str
) -> None:
    """For limit_leaks tests, the leaks over the limit, with size and place; null elsewhere."""
    shared = _json_run(tmp_path_factory, mode_flag)
    assert outcomes_in(shared.result, f"{_LEAKS_MODULE}.py") == {"passed": 2, "failed": 1}
    tests = _by_name(_load(shared.path / "out.json"))
    leaks = tests["test_leaks"]["leaks"]
    assert len(leaks) == 1
    assert leaks[0]["size"] >= 2 * 1024 * 1024
    assert leaks[0]["filename"].endswith("test_json_report_lists_the_leaks_that_counted.py")
    assert tests["test_clean"]["leaks"] == []
    assert tests["test_unchecked"]["leaks"] is None
