"""End to end: --memray-follow-fork counts the memory of the processes a test forks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict

import pytest
from memray import FileFormat, FileReader, Tracker

from conftest import MODE_FLAGS, Runner, outcomes_in, report_block, report_sections, run_once, run_suites
from pytest_memray_isolate._capture_files import forked_captures
from pytest_memray_isolate._judging.capture import STILL_RUNNING, UNREADABLE, read_capture

_FORKING = """
import multiprocessing
import os
import pytest

def allocate():
    data = bytearray(8 * 1024 * 1024)
    return len(data)

@pytest.mark.limit_memory("4 MB")
def test_os_fork():
    pid = os.fork()
    if pid == 0:
        allocate()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0

@pytest.mark.limit_memory("4 MB")
def test_multiprocessing_fork_context():
    process = multiprocessing.get_context("fork").Process(target=allocate)
    process.start()
    process.join()
    assert process.exitcode == 0
"""


#: The kept-file test's suite: _FORKING with test names of its own in the shared run.
_KEPT_MODULE = "test_kept_files_include_every_process"
_KEPT = _FORKING.replace("def test_", "def test_kept_")


def _tests(path: Any) -> Dict[str, Dict[str, Any]]:
    document: Dict[str, Any] = json.loads(path.read_text())
    return {test["nodeid"].split("::")[-1]: test for test in document["tests"]}


_NOT_FORKING = """
import pytest

@pytest.mark.limit_memory("1 MB")
def test_alone():
    data = bytearray(2 * 1024 * 1024)
    assert data
"""

_LEAVES_A_CHILD_RUNNING = """
import os
import signal
import pytest

@pytest.fixture
def children():
    pids = []
    yield pids
    for pid in pids:  # in process; under isolation the child's group is killed already
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)

@pytest.mark.limit_memory("4 MB")
def test_leaves_a_child_running(children):
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        data = bytearray(8 * 1024 * 1024)
        os.write(ready_write, b"x")
        signal.pause()
        os._exit(0)
    children.append(pid)
    assert os.read(ready_read, 1) == b"x"
    mine = bytearray(1024 * 1024)
    assert mine
"""


@dataclass(frozen=True)
class SharedRun:
    """One run following forks, in one mode, of the modules of four tests below."""

    result: pytest.RunResult
    path: Path
    mode_flag: str

    def tests(self) -> Dict[str, Dict[str, Any]]:
        """The JSON report's entries by test name (the names differ across the modules)."""
        return _tests(self.path / "out.json")

    def block(self, name: str) -> pytest.LineMatcher:
        """The MEMRAY REPORT block of test ``name``, up to the next block or the report's end."""
        return pytest.LineMatcher(report_block(self.result.outlines, name))


@pytest.fixture(scope="module", params=sorted(MODE_FLAGS))
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    """Following forks, with -rA, every test in the report, a JSON report and kept captures:
    one run per mode. Keeping the captures changes where they are written, not what is
    read from them; each test checks its own module's tests (the kept-file test's suite
    is _FORKING under other names, to tell its tests apart)."""
    suites = {
        "test_memory_of_forked_processes_counts_only_when_followed": _FORKING,
        "test_tests_that_do_not_fork_are_unchanged": _NOT_FORKING,
        "test_a_process_still_running_when_the_call_ends_is_not_counted": _LEAVES_A_CHILD_RUNNING,
        _KEPT_MODULE: _KEPT,
    }
    flags = ["--memray-follow-fork", "--memray-json=out.json", "-rA", "--most-allocations=0"]
    flags += ["--memray-bin-path=kept", "--memray-bin-prefix=p"]
    flag = MODE_FLAGS[request.param]
    result, path = run_once(
        tmp_path_factory, f"follow-fork-{request.param}", lambda path: run_suites(path, suites, flag, *flags)
    )
    return SharedRun(result, path, flag)


def test_memory_of_forked_processes_counts_only_when_followed(
    pytester: pytest.Pytester, run: Runner, shared: SharedRun
) -> None:
    """8 MiB allocated in a forked child passes a 4 MB limit unless forks are followed; then the
    limit applies to the sum and the report shows each process's peak."""
    pytester.makepyfile(_FORKING)
    run(shared.mode_flag).assert_outcomes(passed=2)
    result = shared.result
    assert outcomes_in(result, "test_memory_of_forked_processes_counts_only_when_followed.py") == {
        "failed": 2
    }
    pytest.LineMatcher(report_sections(result.outlines)["test_os_fork"]).fnmatch_lines(
        [
            "Test was limited to 4.0MiB but allocated 8.0MiB (the sum of 2 processes' peaks)",
            "*- memray-max-memory -*",
            "List of allocations:",
            "    - 8.0MiB allocated here:",
            "        allocate:*test_memory_of_forked_processes_counts_only_when_followed.py:6",
            "*",
            "Peak of each process:",
            "    - test process *: *B",
            "    - forked process *: 8.0MiB",
        ]
    )
    shared.block("test_multiprocessing_fork_context").fnmatch_lines(
        [
            "Allocation results for *::test_multiprocessing_fork_context at the high watermark",
            "",
            # 8 MiB and the test process's own peak, which in pytest's process may take a
            # fresh 1 MiB arena or not, depending on what earlier tests left (the sum is
            # checked exactly in the JSON report below).
            "\t 📦 Total memory allocated: *MiB",
            "*",
            "\t 🔀 Peak of each process (the total above is their sum):",
            "\t\t- test process *: *B",
            "\t\t- forked process *: 8.0MiB",
        ]
    )
    tests = shared.tests()
    for test in (tests["test_os_fork"], tests["test_multiprocessing_fork_context"]):
        own, forked = test["processes"]
        assert (own["role"], forked["role"]) == ("test", "forked")
        assert own["pid"] != forked["pid"]
        assert forked["counted"]
        assert forked["note"] is None
        assert 8 * 1024 * 1024 <= forked["peak_memory"] < 9 * 1024 * 1024
        assert test["peak_memory"] == own["peak_memory"] + forked["peak_memory"]
        assert test["total_allocations"] == own["total_allocations"] + forked["total_allocations"]


def test_ini_key_follows_forks(pytester: pytest.Pytester, run: Runner) -> None:
    """memray_follow_fork = true in the ini file does what the flag does."""
    pytester.makepyfile(_FORKING)
    pytester.makeini("[pytest]\nmemray_follow_fork = true\n")
    run("--memray-isolate").assert_outcomes(failed=2)


def test_tests_that_do_not_fork_are_unchanged(shared: SharedRun) -> None:
    """Following forks, a test that forks nothing has one process and its own figures."""
    assert outcomes_in(shared.result, "test_tests_that_do_not_fork_are_unchanged.py") == {"failed": 1}
    pytest.LineMatcher(report_sections(shared.result.outlines)["test_alone"]).fnmatch_lines(
        ["Test was limited to 1.0MiB but allocated 2.0MiB"]
    )
    (process,) = shared.tests()["test_alone"]["processes"]
    assert process["role"] == "test"
    assert process["counted"]


def test_kept_files_include_every_process(shared: SharedRun) -> None:
    """--memray-bin-path keeps the forked processes' captures beside the test's; memray reads each."""
    assert outcomes_in(shared.result, f"{_KEPT_MODULE}.py") == {"failed": 2}
    folder = shared.path / "kept"
    every = sorted(folder.iterdir())
    # The summary's count is the run's: every capture kept, forked processes' included.
    shared.result.stdout.fnmatch_lines([f"Created {len(every)} binary dumps at {folder} with prefix p"])
    stem = "p-test_kept_files_include_every_process.py-test_kept_os_fork.bin"
    own = folder / stem
    (forked,) = sorted(folder.glob(stem + ".*"))
    with FileReader(own) as reader:
        assert reader.metadata.peak_memory < 1024 * 1024
    with FileReader(forked) as reader:
        assert reader.metadata.pid == int(forked.suffix[1:])
        assert reader.metadata.peak_memory >= 8 * 1024 * 1024
    assert len([path for path in every if f"-{_KEPT_MODULE}.py-" in path.name]) == 4


def test_a_process_still_running_when_the_call_ends_is_not_counted(shared: SharedRun) -> None:
    """Its capture is incomplete: the report names it and leaves it out of the sum."""
    module = "test_a_process_still_running_when_the_call_ends_is_not_counted.py"
    assert outcomes_in(shared.result, module) == {"passed": 1}
    shared.block("test_leaves_a_child_running").fnmatch_lines(
        [
            "\t 🔀 Peak of each process (the total above is their sum):",
            "\t\t- test process *: 1.0MiB",
            "\t\t- forked process *: not counted, still running when the test's call ended",
        ]
    )
    test = shared.tests()["test_leaves_a_child_running"]
    own, forked = test["processes"]
    assert forked["counted"] is False
    assert forked["peak_memory"] is None
    assert forked["note"] == "still running when the test's call ended"
    assert test["peak_memory"] == own["peak_memory"]


def test_forked_captures_that_cannot_count_are_named_with_the_reason(tmp_path: Path) -> None:
    """A forked process still running, or whose capture is not memray's, is listed without figures."""
    capture = tmp_path / "t.bin"
    with Tracker(capture, file_format=FileFormat.ALL_ALLOCATIONS):
        data = bytearray(1024 * 1024)
        del data
    (tmp_path / "t.bin.101").write_bytes(b"not a capture")
    (tmp_path / "t.bin.102").write_bytes(b"still being written")
    (tmp_path / "t.bin.lz4.tmp").write_bytes(b"not a forked process's capture")
    forked = forked_captures(capture)
    assert [pid for pid, _ in forked] == [101, 102]
    result = read_capture(capture, "t.py::t", forked=forked, running=frozenset({102}))
    own, unreadable, running = result.processes
    assert own.role == "test"
    assert own.counted
    assert own.peak_memory is not None
    assert own.peak_memory >= 1024 * 1024
    assert (unreadable.pid, unreadable.counted, unreadable.note) == (101, False, UNREADABLE)
    assert (running.pid, running.counted, running.note) == (102, False, STILL_RUNNING)
    assert unreadable.peak_memory is None
    assert running.peak_memory is None
    assert result.peak_memory == own.peak_memory
