"""End to end: --memray-follow-fork counts the memory of the processes a test forks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import pytest
from memray import FileFormat, FileReader, Tracker

from conftest import Runner
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


def _tests(path: Any) -> Dict[str, Dict[str, Any]]:
    document: Dict[str, Any] = json.loads(path.read_text())
    return {test["nodeid"].split("::")[-1]: test for test in document["tests"]}


def test_memory_of_forked_processes_counts_only_when_followed(
    pytester: pytest.Pytester, run: Runner, mode_flag: str
) -> None:
    """8 MiB allocated in a forked child passes a 4 MB limit unless forks are followed; then the
    limit applies to the sum and the report shows each process's peak."""
    pytester.makepyfile(_FORKING)
    run(mode_flag).assert_outcomes(passed=2)
    result = run(mode_flag, "--memray-follow-fork", "--memray-json=out.json")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_os_fork _*",
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
    result.stdout.fnmatch_lines(
        [
            "Allocation results for *::test_multiprocessing_fork_context at the high watermark",
            "",
            "\t 📦 Total memory allocated: 8.*MiB",
            "*",
            "\t 🔀 Peak of each process (the total above is their sum):",
            "\t\t- test process *: *B",
            "\t\t- forked process *: 8.0MiB",
        ]
    )
    tests = _tests(pytester.path / "out.json")
    for test in tests.values():
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


def test_tests_that_do_not_fork_are_unchanged(pytester: pytest.Pytester, run: Runner, mode_flag: str) -> None:
    """Following forks, a test that forks nothing has one process and its own figures."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.limit_memory("1 MB")
        def test_alone():
            data = bytearray(2 * 1024 * 1024)
            assert data
        """
    )
    result = run(mode_flag, "--memray-follow-fork", "--memray-json=out.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["Test was limited to 1.0MiB but allocated 2.0MiB"])
    (process,) = _tests(pytester.path / "out.json")["test_alone"]["processes"]
    assert process["role"] == "test"
    assert process["counted"]


def test_kept_files_include_every_process(pytester: pytest.Pytester, run: Runner, mode_flag: str) -> None:
    """--memray-bin-path keeps the forked processes' captures beside the test's; memray reads each."""
    pytester.makepyfile(_FORKING)
    folder = pytester.path / "kept"
    result = run(mode_flag, "--memray-follow-fork", f"--memray-bin-path={folder}", "--memray-bin-prefix=p")
    result.stdout.fnmatch_lines([f"Created 4 binary dumps at {folder} with prefix p"])
    stem = "p-test_kept_files_include_every_process.py-test_os_fork.bin"
    own = folder / stem
    (forked,) = sorted(folder.glob(stem + ".*"))
    with FileReader(own) as reader:
        assert reader.metadata.peak_memory < 1024 * 1024
    with FileReader(forked) as reader:
        assert reader.metadata.pid == int(forked.suffix[1:])
        assert reader.metadata.peak_memory >= 8 * 1024 * 1024
    assert len(list(folder.iterdir())) == 4


def test_a_process_still_running_when_the_call_ends_is_not_counted(
    pytester: pytest.Pytester, run: Runner, mode_flag: str
) -> None:
    """Its capture is incomplete: the report names it and leaves it out of the sum."""
    pytester.makepyfile(
        """
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
    )
    result = run(mode_flag, "--memray-follow-fork", "--memray-json=out.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "\t 🔀 Peak of each process (the total above is their sum):",
            "\t\t- test process *: 1.0MiB",
            "\t\t- forked process *: not counted, still running when the test's call ended",
        ]
    )
    test = _tests(pytester.path / "out.json")["test_leaves_a_child_running"]
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
