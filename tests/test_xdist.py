"""End to end: under pytest-xdist the controller prints one report over every worker's tests."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import MODE_FLAGS, run_once, run_suites
from pytest_memray_isolate.capture import Location, MemoryResult

_SUITE = """
import os
import pytest

@pytest.mark.parametrize("mib", [1, 2, 3, 4, 5, 6])
def test_allocates(mib):
    data = bytearray(mib * 1024 * 1024)
    with open(os.path.join({root!r}, f"worker-{{os.environ['PYTEST_XDIST_WORKER']}}"), "w"):
        pass
    assert data is not None
"""


@dataclass(frozen=True)
class SharedRun:
    """One run of _SUITE under ``-n 2`` in one mode, and where it ran."""

    result: pytest.RunResult
    path: Path


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

    return SharedRun(*run_once(tmp_path_factory, f"xdist-{request.param}", start))


def test_one_report_covers_every_worker(shared: SharedRun) -> None:
    """With -n 2 the MEMRAY REPORT lists the tests of both workers, biggest peak first."""
    result = shared.result
    result.assert_outcomes(passed=6)
    assert len(list(shared.path.glob("worker-gw*"))) == 2, "both workers ran tests"
    listed = re.findall(
        r"^Allocation results for \S+\[(\d)\] at the high watermark$", result.stdout.str(), re.M
    )
    assert listed == ["6", "5", "4", "3", "2", "1"]
    result.stdout.fnmatch_lines(
        ["*[[]6[]] at the high watermark", "", "\t 📦 Total memory allocated: 6.0MiB"]
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
