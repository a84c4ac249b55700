"""End to end: a misbehaving isolated child fails its own test, and nothing is left behind.

Each test checks the reported cause, that the next test still runs and passes, that no
process the run started is left, and that the plugin's temporary directory is empty.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

from conftest import QUIET_PLUGINS, Runner, gone, recorded_pids

_AFTER = """

def test_after():
    pass
"""


_RECORD_PIDS = """
import os, subprocess, sys

def record(*pids):
    with open(os.path.join({root!r}, "pids"), "a") as stream:
        stream.write(" ".join(map(str, pids)) + "\\n")

def start_grandchild():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    record(os.getpid(), sleeper.pid, os.getppid())  # the parent: pytest, or the forkserver
"""


def _suite(pytester: pytest.Pytester, body: str) -> None:
    pytester.makepyfile(_RECORD_PIDS.format(root=str(pytester.path)) + body + _AFTER)


@pytest.mark.parametrize(
    ("statement", "cause", "stack"),
    [
        ("os.abort()", "was killed by signal SIGABRT (6)", "Fatal Python error: Aborted"),
        (
            "ctypes.string_at(0)",
            "was killed by signal SIGSEGV (11)",
            "Fatal Python error: Segmentation fault",
        ),
        ("os.kill(os.getpid(), signal.SIGKILL)", "was killed by signal SIGKILL (9)", None),
        ("os._exit(3)", "exited with status 3", None),
    ],
)
def test_a_crash_is_reported_with_its_cause_output_and_stack(
    pytester: pytest.Pytester,
    run: Runner,
    private_tmp: Path,
    statement: str,
    cause: str,
    stack: str | None,
    isolated_flag: str,
) -> None:
    """Signal or exit status, the output printed before dying, the faulthandler stack, the memory."""
    _suite(
        pytester,
        f"""
import ctypes, signal

def test_crashes():
    start_grandchild()
    kept = bytearray(b"x") * (64 * 1024 * 1024)
    print("printed before the crash")
    sys.stderr.write("written to stderr before the crash\\n")
    {statement}
""",
    )
    result = run(isolated_flag, "-rf")
    result.assert_outcomes(passed=1, failed=1)
    growth = (
        "Resident memory grew by about *MiB before the crash*"
        if isolated_flag.endswith("=fork")
        else "The child's peak resident size was *MiB*"  # a fresh interpreter: no baseline
    )
    lines = [f"The isolated child process running this test {cause} before reporting a result.", growth]
    if stack is not None:
        lines += ["", f"{stack}*", "*", "Current thread *", "  File *, line * in test_crashes"]
    result.stdout.fnmatch_lines(lines)
    result.stdout.fnmatch_lines(
        [
            "*- Captured stdout call -*",
            "printed before the crash",
            "*- Captured stderr call -*",
            "written to stderr*",
        ]
    )
    assert gone(recorded_pids(pytester))
    assert list(private_tmp.iterdir()) == []


def test_a_crash_with_the_all_format_reports_memrays_peak(
    pytester: pytest.Pytester, run: Runner, isolated_flag: str
) -> None:
    """With --memray-capture-format=all the capture survives the crash and gives memray's peak."""
    pytester.makepyfile(
        """
        import os

        def test_crashes():
            kept = bytearray(b"x") * (48 * 1024 * 1024)
            os._exit(1)
        """
    )
    result = run(isolated_flag, "--memray-capture-format=all")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "The isolated child process running this test exited with status 1 before reporting a result.",
            "Memory allocated at the peak before the crash: 48.0MiB (memray).",
        ]
    )


@pytest.mark.parametrize(
    ("how", "flags", "ini"),
    [
        ("command line", ["--memray-timeout=1"], ""),
        ("ini", [], "memray_timeout = 1"),
        ("marker", [], ""),
    ],
)
def test_a_hanging_child_is_killed_at_its_deadline(
    pytester: pytest.Pytester,
    run: Runner,
    private_tmp: Path,
    how: str,
    flags: List[str],
    ini: str,
    isolated_flag: str,
) -> None:
    """--memray-timeout, memray_timeout or memray_isolate(timeout=...): killed, with its stack."""
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    mode = isolated_flag.partition("=")[2]
    marker = f"@pytest.mark.memray_isolate({mode!r}, timeout=1)" if how == "marker" else ""
    _suite(
        pytester,
        f"""
import time, pytest

{marker}
def test_hangs():
    start_grandchild()
    time.sleep(600)
""",
    )
    started = time.monotonic()
    result = run(*([] if how == "marker" else [isolated_flag]), *flags, "-rf")
    assert time.monotonic() - started < 60
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "Timeout after 1 s: the isolated child process running this test was killed.",
            "",
            "*hread * (most recent call first):",
            "  File *, line * in test_hangs",
        ]
    )
    assert gone(recorded_pids(pytester))
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize("method", ["signal", "thread"])
def test_pytest_timeout_is_honoured_in_the_child_not_the_parent(
    pytester: pytest.Pytester, run: Runner, method: str, isolated_flag: str
) -> None:
    """pytest-timeout's marker and options set the child's deadline; its timer never fires in pytest."""
    pytester.makepyfile(
        """
        import time
        import pytest

        @pytest.mark.timeout(1)
        def test_marked():
            time.sleep(600)

        def test_global():
            time.sleep(600)

        def test_quick():
            pass
        """
    )
    result = run("-p", "timeout", isolated_flag, "--timeout=2", f"--timeout-method={method}", "-rf")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        ["Timeout after 1 s: the isolated child process running this test was killed."]
    )
    result.stdout.fnmatch_lines(
        ["Timeout after 2 s: the isolated child process running this test was killed."]
    )
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    result.stdout.no_fnmatch_line("*+ Timeout +*")


def test_runaway_memory_is_stopped_at_the_ceiling(
    pytester: pytest.Pytester, run: Runner, private_tmp: Path, isolated_flag: str
) -> None:
    """--memray-max-rss kills a child before it can exhaust the machine; the test fails saying so."""
    _suite(
        pytester,
        """
def test_runaway():
    start_grandchild()
    hoard = []
    for _ in range(200):  # 10 GiB if nothing stopped it
        hoard.append(bytearray(b"x") * (50 * 1024 * 1024))
""",
    )
    result = run(isolated_flag, "--memray-max-rss=400 MB", "-rf")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "The isolated child process running this test grew by *MiB of resident memory"
            " (from *MiB at its start to *MiB), over the limit of 400.0MiB (--memray-max-rss),"
            " and was killed."
        ]
    )
    assert gone(recorded_pids(pytester))
    assert list(private_tmp.iterdir()) == []


def test_max_rss_counts_only_what_the_child_grows(
    pytester: pytest.Pytester, run: Runner, private_tmp: Path, isolated_flag: str
) -> None:
    """--memray-max-rss limits the child's growth beyond its start: a test that allocates nothing
    passes though the child holds a session fixture bigger than the ceiling; one that grows is killed."""
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session")
        def big():
            return bytearray(b"x") * (200 * 1024 * 1024)
        """
    )
    _suite(
        pytester,
        """
def test_allocates_nothing(big):
    assert len(big) == 200 * 1024 * 1024

def test_grows(big):
    start_grandchild()
    hoard = []
    for _ in range(100):  # 5 GiB if nothing stopped it
        hoard.append(bytearray(b"x") * (50 * 1024 * 1024))
""",
    )
    result = run(isolated_flag, "--memray-max-rss=150 MB", "-rf")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_grows _*",
            "The isolated child process running this test grew by *MiB of resident memory"
            " (from *MiB at its start to *MiB), over the limit of 150.0MiB (--memray-max-rss),"
            " and was killed.",
        ]
    )
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    assert gone(recorded_pids(pytester))
    assert list(private_tmp.iterdir()) == []


def test_max_rss_from_the_ini(pytester: pytest.Pytester, run: Runner, isolated_flag: str) -> None:
    """memray_max_rss in the ini file sets the same ceiling."""
    pytester.makeini("[pytest]\nmemray_max_rss = 300 MB\n")
    pytester.makepyfile(
        """
        def test_runaway():
            hoard = [bytearray(b"x") * (50 * 1024 * 1024) for _ in range(100)]
        """
    )
    result = run(isolated_flag)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*over the limit of 300.0MiB (--memray-max-rss), and was killed."])


def test_processes_a_passing_test_leaves_running_are_killed(
    pytester: pytest.Pytester, run: Runner, isolated_flag: str
) -> None:
    """A test that starts a process and returns does not leave it running after the child ends."""
    _suite(
        pytester,
        """
def test_starts_and_leaves():
    start_grandchild()
""",
    )
    run(isolated_flag).assert_outcomes(passed=2)
    pids = recorded_pids(pytester)
    assert len(pids) == 3  # the test's process, the one it started, and their parent
    assert gone(pids)


def test_a_test_that_forks_closes_stdout_or_changes_directory(
    pytester: pytest.Pytester, run: Runner, isolated_flag: str
) -> None:
    """The parent still gets exactly one report from a child that forks, closes fd 1 or moves."""
    pytester.makepyfile(
        """
        import os, time

        def test_forks():
            if os.fork() == 0:
                return  # the test's own child goes back into pytest's code too

        def test_forks_and_sleeps():
            if os.fork() == 0:
                time.sleep(600)

        def test_closes_stdout():
            os.close(1)

        def test_changes_directory():
            os.chdir("/")
            data = bytearray(2 * 1024 * 1024)
            assert data is not None

        def test_after():
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", *QUIET_PLUGINS, isolated_flag, "-p", "no:randomly", timeout=120
    )
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["Allocation results for *::test_changes_directory at the high watermark"])


def test_ctrl_c_in_pytest_stops_the_session_and_its_children(
    pytester: pytest.Pytester, private_tmp: Path, isolated_flag: str
) -> None:
    """SIGINT to pytest while a child runs: the child and its processes die, pytest reports as usual."""
    _suite(
        pytester,
        """
import time

def test_runs_long():
    start_grandchild()
    time.sleep(600)
""",
    )
    output_path = pytester.path / "out.txt"
    with output_path.open("w") as output_file:
        process = pytester.popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *QUIET_PLUGINS, isolated_flag],
            stdout=output_file,
            stderr=subprocess.STDOUT,
        )
        try:
            give_up = time.monotonic() + 60
            while not recorded_pids(pytester) and time.monotonic() < give_up:
                time.sleep(0.05)
            pids = recorded_pids(pytester)
            assert pids, "the test did not start"
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=60) == pytest.ExitCode.INTERRUPTED
        finally:
            process.kill()
            process.wait()
    output = output_path.read_text()
    assert "KeyboardInterrupt" in output
    assert "no tests ran" in output or "in " in output.splitlines()[-1]
    assert gone(pids)
    assert list(private_tmp.iterdir()) == []


def test_a_crash_is_seen_while_a_process_the_test_started_still_runs(
    pytester: pytest.Pytester, run: Runner, isolated_flag: str
) -> None:
    """A child that dies while a process it forked lives on, holding every descriptor it
    inherited, still fails its test with the cause; the process it left is killed."""
    _suite(
        pytester,
        """
import time

def test_forks_then_dies():
    pid = os.fork()
    if pid == 0:
        time.sleep(600)
        os._exit(0)
    record(os.getpid(), pid)
    os._exit(3)
""",
    )
    result = run(isolated_flag)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*The isolated child process running this test exited with status 3*"])
    assert gone(recorded_pids(pytester))
