"""End to end: under pytest-xdist the controller prints one report over every worker's tests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import MODE_FLAGS, Runner, SharedRun, run_once, run_suites
from pytest_memray_isolate._judging.capture import Location, MemoryResult

_SUITE = """
import os
import pytest

@pytest.mark.parametrize("step", [1, 2, 3, 4, 5, 6])
def test_allocates(step):
    data = bytearray(step * 3 * 1024 * 1024)
    with open(os.path.join({root!r}, f"worker-{{os.environ['PYTEST_XDIST_WORKER']}}"), "w"):
        pass
    assert data is not None
"""


@pytest.fixture(scope="module", params=sorted(MODE_FLAGS))
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    """_SUITE run once per tracking mode with two xdist workers, keeping every capture in a
    folder that holds a stale file from an earlier run; the tests below share the run
    (each start of two workers costs seconds)."""

    def start(path: Path) -> pytest.RunResult:
        folder = path / "captures"
        folder.mkdir()
        (folder / "stale-from-an-earlier-run.bin").write_bytes(b"not a capture")
        flags = ["-n", "2", "--dist=load", "--most-allocations=0", f"--memray-bin-path={folder}"]
        suites = {"test_xdist_suite": _SUITE.format(root=str(path))}
        return run_suites(path, suites, MODE_FLAGS[request.param], *flags, keep=["xdist"])

    return run_once(tmp_path_factory, f"xdist-{request.param}", start)


def test_one_report_covers_every_worker(shared: SharedRun, request: pytest.FixtureRequest) -> None:
    """With -n 2 the MEMRAY REPORT lists the tests of both workers, biggest peak first.

    The tests' peaks are 3 MiB apart: tracked in process, a test's figure also counts what
    the worker allocated meanwhile (a pymalloc arena, up to 1 MiB), whose test varies
    with the order."""
    result = shared.result
    result.assert_outcomes(passed=6)
    assert len(list(shared.path.glob("worker-gw*"))) == 2, "both workers ran tests"
    listed = re.findall(
        r"^Allocation results for \S+\[(\d)\] at the high watermark$", result.stdout.str(), re.M
    )
    assert listed == ["6", "5", "4", "3", "2", "1"]
    in_process = request.node.callspec.params["shared"] == "in-process"
    total = "1[89].?MiB" if in_process else "18.0MiB"
    result.stdout.fnmatch_lines(
        ["*[[]6[]] at the high watermark", "", f"\t 📦 Total memory allocated: {total}"]
    )


def test_kept_files_of_all_workers_share_the_printed_prefix(shared: SharedRun) -> None:
    """The prefix printed is the one every worker's files carry; stale files are not counted."""
    result = shared.result
    result.assert_outcomes(passed=6)
    folder = shared.path / "captures"
    line = next(line for line in result.stdout.lines if line.startswith("Created "))
    match = re.fullmatch(rf"Created 6 binary dumps at {re.escape(str(folder))} with prefix (\w+)", line)
    assert match is not None, line
    fresh = [path for path in folder.glob("*.bin") if not path.name.startswith("stale")]
    assert len(fresh) == 6
    assert all(path.name.startswith(match[1] + "-") for path in fresh)


def test_memory_result_survives_serialization() -> None:
    """The figures travel inside reports as plain data (JSON, as pytest-xdist sends them)."""
    result = MemoryResult("t.py::test", 123, 4, "█ ▄", (Location("f", "t.py", 3, 100),), "/tmp/x.bin")
    assert MemoryResult.from_dict(json.loads(json.dumps(result.as_dict()))) == result


_MIXED_SUITE = """
import pytest

KEPT = []

@pytest.mark.parametrize("mib", [1, 2, 3])
def test_allocates(mib):
    data = bytearray(mib * 1024 * 1024)
    assert data

@pytest.mark.limit_memory("1 MB")
def test_over_its_limit():
    data = bytearray(1536 * 1024)  # a peak of its own: ties are ranked in the order tests end
    assert data

@pytest.mark.limit_leaks("10 KB")
def test_leaks():
    KEPT.append(bytearray(50_000))
"""

# Says, in each process of the run, whether the plugin's reporter is registered there.
_WHERE_THE_REPORTER_IS = """
def pytest_sessionstart(session):
    worker = getattr(session.config, "workerinput", None)
    name = "main" if worker is None else worker["workerid"]
    registered = session.config.pluginmanager.get_plugin("memray_isolate_reporter") is not None
    with open(f"reporter-in-{name}", "w") as stream:
        stream.write(str(registered))
"""


#: The figure of the resident line: the kernel's resident counters vary by a few pages
#: from run to run, with or without workers.
_RESIDENT_FIGURE = re.compile(r"(?<=\t 🧠 Resident memory growth: )\d+\.\d(?:B|KiB|MiB|GiB)$")


def _memray_report(lines: List[str]) -> List[str]:
    """The MEMRAY REPORT's lines, each resident figure written as "<size>"."""
    start = next(index for index, line in enumerate(lines) if "MEMRAY REPORT" in line)
    end = next(index for index, line in enumerate(lines) if "short test summary info" in line)
    return [_RESIDENT_FIGURE.sub("<size>", line) for line in lines[start:end]]


def test_the_report_is_the_same_with_or_without_workers(pytester: pytest.Pytester, run: Runner) -> None:
    """The reporter runs where the run is reported (the controller, not its workers), and
    the MEMRAY REPORT and --memray-json's tests read the same with -n 2 as without."""
    pytester.makepyfile(_MIXED_SUITE)
    pytester.makeconftest(_WHERE_THE_REPORTER_IS)
    alone = run("--memray-isolate=fork", "--most-allocations=0", "-rf", "--memray-json=alone.json")
    assert (pytester.path / "reporter-in-main").read_text() == "True"
    workers = run(
        "--memray-isolate=fork",
        "--most-allocations=0",
        "-rf",
        "-n",
        "2",
        "--memray-json=workers.json",
        plugins=("xdist",),
    )
    assert (pytester.path / "reporter-in-main").read_text() == "True"
    assert [(pytester.path / f"reporter-in-gw{n}").read_text() for n in (0, 1)] == ["False", "False"]
    for result in (alone, workers):
        result.assert_outcomes(passed=3, failed=2)
    assert _memray_report(workers.stdout.lines) == _memray_report(alone.stdout.lines)
    assert len(_memray_report(alone.stdout.lines)) > 10

    def tests(name: str) -> List[Dict[str, Any]]:
        """The document's tests, with what varies from run to run (the call's duration, the
        resident growth by a few pages) checked for a figure and left out."""
        document = json.loads((pytester.path / name).read_text())
        for test in document["tests"]:
            assert isinstance(test.pop("rss_growth"), int), test["nodeid"]
            assert isinstance(test.pop("duration"), float), test["nodeid"]
        return sorted(document["tests"], key=lambda test: test["nodeid"])

    assert tests("workers.json") == tests("alone.json")
    assert [test["outcome"] for test in tests("alone.json")] == ["passed"] * 3 + ["failed"] * 2


_SUBTESTS = """
def test_fixture_subtests(subtests):
    for i in range(3):
        with subtests.test(i=i):
            assert i != 2
"""


@pytest.mark.skipif(
    int(pytest.__version__.split(".")[0]) < 9, reason="the subtests fixture is new in pytest 9"
)
def test_a_forked_childs_subtests_reach_the_controller_once(pytester: pytest.Pytester, run: Runner) -> None:
    """A forked child's subtests reach the controller through its parent only: the child
    never writes to the worker's channel, which would show each subtest twice."""
    pytester.makepyfile(test_subs=_SUBTESTS)
    result = run("--memray-isolate=fork", "-n", "1", "-v", plugins=("xdist",))
    result.assert_outcomes(failed=2)  # the test and its failed subtest, as pytest counts them
    shown = [line for line in result.outlines if re.search(r"\bSUB[A-Z]+\(", line) and "[gw0]" in line]
    assert [line.split()[2].partition("(")[0] for line in shown] == ["SUBPASSED", "SUBPASSED", "SUBFAILED"]
