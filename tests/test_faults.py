"""End to end: a misbehaving isolated child fails its own test, and nothing is left behind.

Each test checks the reported cause, that the next test still runs and passes, that no
process the run started is left, and that the plugin's temporary directory is empty.

Most tests here share runs: each writes a module of its own, and one run of pytest holds
the modules whose options agree (see ``shared``, at the end). That a crash, a hang or a
runaway child fails its one test and the session goes on is the plugin's promise, so each
test checks its own module's outcomes and its own tests' sections of the shared output.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from conftest import (
    EVERY_ISOLATION_FLAG,
    EVERY_MODE_FLAG,
    ISOLATION_FLAGS,
    MODE_FLAGS,
    QUIET_PLUGINS,
    Runner,
    gone,
    outcomes_in,
    recorded_pids,
    report_sections,
    run_once,
    sources_by_mode,
)
from private_runs import left_in_tmp, run_with_private_tmp

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


#: Ways for a child to die: the test's name, the statement, the cause reported, and the
#: first line of the faulthandler stack printed (None: the process gets no chance to).
_CRASHES = [
    ("abort", "os.abort()", "was killed by signal SIGABRT (6)", "Fatal Python error: Aborted"),
    (
        "segfault",
        "ctypes.string_at(0)",
        "was killed by signal SIGSEGV (11)",
        "Fatal Python error: Segmentation fault",
    ),
    ("sigkill", "os.kill(os.getpid(), signal.SIGKILL)", "was killed by signal SIGKILL (9)", None),
    ("exit", "os._exit(3)", "exited with status 3", None),
]

_CRASH = "test_a_crash_is_reported_with_its_cause_output_and_stack"
_CRASH_SUITE = (
    _RECORD_PIDS
    + "\nimport ctypes, signal\n"
    + "".join(
        f"""
def test_crashes_{name}():
    start_grandchild()
    kept = bytearray(b"x") * (64 * 1024 * 1024)
    print("printed before the crash")
    sys.stderr.write("written to stderr before the crash\\n")
    {statement}
"""
        for name, statement, _, _ in _CRASHES
    )
    + _AFTER
)


@pytest.mark.parametrize("shared", sorted(EVERY_ISOLATION_FLAG), indirect=True)
def test_a_crash_is_reported_with_its_cause_output_and_stack(shared: FaultsRun) -> None:
    """Signal or exit status, the output printed before dying, the faulthandler stack, the memory.

    Each way to die is one test of the same module (``test_crashes_abort`` and so on): each
    fails alone, with its own cause in its own section, and the session goes on to the
    test after them, which passes.
    """
    assert shared.outcomes(_CRASH) == {"passed": 1, "failed": len(_CRASHES)}
    growth = (
        "Resident memory grew by about *MiB before the crash*"
        if shared.mode == "fork"
        else "The child's peak resident size was *MiB*"  # a fresh interpreter: no baseline
    )
    for name, _, cause, stack in _CRASHES:
        section = shared.section(f"test_crashes_{name}")
        lines = [f"The isolated child process running this test {cause} before reporting a result.", growth]
        if stack is not None:
            lines += ["", f"{stack}*", "*", "Current thread *", f"  File *, line * in test_crashes_{name}"]
        section.fnmatch_lines(lines)
        section.fnmatch_lines(
            [
                "*- Captured stdout call -*",
                "printed before the crash",
                "*- Captured stderr call -*",
                "written to stderr*",
            ]
        )
    assert gone(shared.pids(_CRASH))
    assert shared.leftovers == []


_CRASH_ALL = "test_a_crash_with_the_all_format_reports_memrays_peak"
_CRASH_ALL_SUITE = """
import os

def test_crashes():
    kept = bytearray(b"x") * (48 * 1024 * 1024)
    os._exit(1)
"""


@pytest.mark.parametrize(
    "shared",
    [pytest.param(f"ceiling-400-{mode}", id=mode) for mode in sorted(EVERY_ISOLATION_FLAG)],
    indirect=True,
)
def test_a_crash_with_the_all_format_reports_memrays_peak(shared: FaultsRun) -> None:
    """With --memray-capture-format=all the capture survives the crash and gives memray's peak.

    Its run is the runaway test's (a ceiling of 400 MB, far above this test's 48 MiB).
    """
    assert shared.outcomes(_CRASH_ALL) == {"failed": 1}
    shared.section("test_crashes").fnmatch_lines(
        [
            "The isolated child process running this test exited with status 1 before reporting a result.",
            "Memory allocated at the peak before the crash: 48.0MiB (memray).",
        ]
    )


_HANG = "test_a_hanging_child_is_killed_at_its_deadline"


def _hang_suite(marker: str) -> str:
    """The hanging test's module; ``marker`` decorates the test that hangs."""
    return (
        _RECORD_PIDS
        + f"""
import time, pytest

{marker}
def test_hangs():
    start_grandchild()
    time.sleep(600)
"""
        + _AFTER
    )


@pytest.mark.parametrize(
    "shared",
    [
        *(
            pytest.param(f"timeout-{mode}", id=f"command line-{mode}")
            for mode in sorted(EVERY_ISOLATION_FLAG)
        ),
        pytest.param("timeout-ini-fork", id="ini-fork"),
        pytest.param("fork", id="marker-fork"),
    ],
    indirect=True,
)
def test_a_hanging_child_is_killed_at_its_deadline(shared: FaultsRun) -> None:
    """--memray-timeout, memray_timeout or memray_isolate(timeout=...): killed, with its stack.

    Where the deadline is given is read in pytest's process, before any mode takes part:
    the command line in every mode (the runs with --memray-timeout=0.5), the ini file (a run
    of its own) and the marker (on the test alone, in the fork run without a deadline) in
    fork mode. Each run waits out the deadline once.
    """
    assert shared.result.duration < 60
    assert shared.outcomes(_HANG) == {"passed": 1, "failed": 1}
    shared.section("test_hangs").fnmatch_lines(
        [
            "Timeout after 0.5 s: the isolated child process running this test was killed.",
            "",
            "*hread * (most recent call first):",
            "  File *, line * in test_hangs",
        ]
    )
    assert gone(shared.pids(_HANG))
    assert shared.leftovers == []


@pytest.mark.parametrize("method", ["signal", "thread"])
def test_pytest_timeout_is_honoured_in_the_child_not_the_parent(
    pytester: pytest.Pytester, run: Runner, method: str, isolated_flag: str
) -> None:
    """pytest-timeout's marker and options set the child's deadline; its timer never fires in pytest."""
    pytester.makepyfile(
        """
        import time
        import pytest

        @pytest.mark.timeout(0.5)
        def test_marked():
            time.sleep(600)

        def test_global():
            time.sleep(600)

        def test_quick():
            pass
        """
    )
    result = run(
        "-p",
        "timeout",
        isolated_flag,
        "--timeout=1",
        f"--timeout-method={method}",
        "-rf",
        plugins=["timeout"],
    )
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        ["Timeout after 0.5 s: the isolated child process running this test was killed."]
    )
    result.stdout.fnmatch_lines(
        ["Timeout after 1 s: the isolated child process running this test was killed."]
    )
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    result.stdout.no_fnmatch_line("*+ Timeout +*")


_RUNAWAY = "test_runaway_memory_is_stopped_at_the_ceiling"
_RUNAWAY_SUITE = (
    _RECORD_PIDS
    + """
def test_runaway():
    start_grandchild()
    hoard = []
    for _ in range(200):  # 10 GiB if nothing stopped it
        hoard.append(bytearray(b"x") * (50 * 1024 * 1024))
"""
    + _AFTER
)


@pytest.mark.parametrize(
    "shared",
    [pytest.param(f"ceiling-400-{mode}", id=mode) for mode in sorted(EVERY_ISOLATION_FLAG)],
    indirect=True,
)
def test_runaway_memory_is_stopped_at_the_ceiling(shared: FaultsRun) -> None:
    """--memray-max-rss kills a child before it can exhaust the machine; the test fails saying so.

    Its run also holds the crash test that needs --memray-capture-format=all: the ceiling
    watches the child's resident size, whatever the capture's format.
    """
    assert shared.outcomes(_RUNAWAY) == {"passed": 1, "failed": 1}
    shared.section("test_runaway").fnmatch_lines(
        [
            "The isolated child process running this test grew by *MiB of resident memory"
            " (from *MiB at its start to *MiB), over the limit of 400.0MiB (--memray-max-rss),"
            " and was killed."
        ]
    )
    assert gone(shared.pids(_RUNAWAY))
    assert shared.leftovers == []


_GROWS = "test_max_rss_counts_only_what_the_child_grows"
#: The conftest of the run with a ceiling of 150 MB: a session fixture bigger than it.
_BIG_FIXTURE = """
import pytest

@pytest.fixture(scope="session")
def big():
    return bytearray(b"x") * (200 * 1024 * 1024)
"""
_GROWS_SUITE = (
    _RECORD_PIDS
    + """
def test_allocates_nothing(big):
    assert len(big) == 200 * 1024 * 1024

def test_grows(big):
    start_grandchild()
    hoard = []
    for _ in range(100):  # 5 GiB if nothing stopped it
        hoard.append(bytearray(b"x") * (50 * 1024 * 1024))
"""
    + _AFTER
)


@pytest.mark.parametrize(
    "shared",
    [pytest.param(f"ceiling-150-{mode}", id=mode) for mode in sorted(EVERY_ISOLATION_FLAG)],
    indirect=True,
)
def test_max_rss_counts_only_what_the_child_grows(shared: FaultsRun) -> None:
    """--memray-max-rss limits the child's growth beyond its start: a test that allocates nothing
    passes though the child holds a session fixture bigger than the ceiling; one that grows is killed."""
    assert shared.outcomes(_GROWS) == {"passed": 2, "failed": 1}
    shared.section("test_grows").fnmatch_lines(
        [
            "The isolated child process running this test grew by *MiB of resident memory"
            " (from *MiB at its start to *MiB), over the limit of 150.0MiB (--memray-max-rss),"
            " and was killed.",
        ]
    )
    shared.result.stdout.no_fnmatch_line("*INTERNALERROR*")
    assert gone(shared.pids(_GROWS))
    assert shared.leftovers == []


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


def _signal_a_running_test(
    pytester: pytest.Pytester, isolated_flag: str, signum: signal.Signals
) -> Tuple[int, str, List[int]]:
    """Start pytest on a test that runs long, send ``signum`` to pytest once the test has
    started a process: pytest's exit code, its output and the pids the test recorded."""
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
            process.send_signal(signum)
            returncode = process.wait(timeout=60)
        finally:
            process.kill()
            process.wait()
    return returncode, output_path.read_text(), pids


def test_ctrl_c_in_pytest_stops_the_session_and_its_children(
    pytester: pytest.Pytester, private_tmp: Path, every_isolated_flag: str
) -> None:
    """SIGINT to pytest while a child runs: the child and its processes die, pytest reports as usual."""
    returncode, output, pids = _signal_a_running_test(pytester, every_isolated_flag, signal.SIGINT)
    assert returncode == pytest.ExitCode.INTERRUPTED
    assert "KeyboardInterrupt" in output
    assert "no tests ran" in output or "in " in output.splitlines()[-1]
    assert gone(pids)
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_or_sighup_to_pytest_ends_it_and_its_children(
    pytester: pytest.Pytester, private_tmp: Path, every_isolated_flag: str, signum: signal.Signals
) -> None:
    """SIGTERM or SIGHUP to pytest while a child runs: pytest dies of the signal, as it does
    without the plugin, and takes every child (the forkserver too) and the temp dir with it."""
    returncode, output, pids = _signal_a_running_test(pytester, every_isolated_flag, signum)
    assert returncode == -signum
    assert "INTERNALERROR" not in output
    assert gone(pids)
    assert list(private_tmp.iterdir()) == []


def test_a_test_that_removes_the_plugins_temp_dir_fails_alone(
    pytester: pytest.Pytester, run: Runner, private_tmp: Path, isolated_flag: str
) -> None:
    """A test that deletes the plugin's private temp dir fails, and so do the tests whose
    child can no longer be prepared, each saying why; no child goes on with pytest's
    session (one summary, printed once, by pytest's own process)."""
    pytester.makepyfile(
        """
        import glob, os, shutil, tempfile

        def test_removes_the_temp_dir():
            for path in glob.glob(os.path.join(tempfile.gettempdir(), "pytest-memray-isolate-*")):
                shutil.rmtree(path)

        def test_next():
            pass

        def test_last():
            pass
        """
    )
    result = run(isolated_flag, "-rf")
    result.assert_outcomes(failed=3)
    if isolated_flag.endswith("=fork"):  # the others fail in pytest's process, writing the request
        result.stdout.fnmatch_lines(
            [
                "*_ test_removes_the_temp_dir _*",
                "The isolated child process running this test exited with status 1 before reporting a result.",
                "The plugin's temporary directory */pytest-memray-isolate-* no longer exists (a test removed it):"
                " the child could not send its report.",
            ]
        )
    result.stdout.fnmatch_lines(["*FileNotFoundError*pytest-memray-isolate-*"])
    assert result.stdout.str().count("short test summary info") == 1
    assert result.stdout.str().count(" 3 failed") == 1


def test_ids_that_differ_only_in_replaced_characters_keep_one_file_each(
    pytester: pytest.Pytester, run: Runner, private_tmp: Path, mode_flag: str
) -> None:
    """Parameter ids a file name cannot hold ("a b", "a:b", "a?b") still give each test its own
    kept capture and flame graph, named after the test, and the JSON report points at each."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("text", ["a b", "a:b", "a?b"])
        def test_named(text):
            data = bytearray(1024 * 1024)
            assert data is not None
        """
    )
    folder = pytester.path / "captures"
    result = run(
        mode_flag,
        f"--memray-bin-path={folder}",
        "--memray-bin-prefix=p",
        "--memray-flamegraph=graphs",
        "--memray-flamegraph-all",
        "--memray-json=out.json",
    )
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([f"Created 3 binary dumps at {folder} with prefix p"])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    kept = sorted(path.name for path in folder.iterdir())
    graphs = sorted(path.name for path in (pytester.path / "graphs").iterdir())
    assert len(kept) == len(graphs) == 3
    assert all(name.startswith("p-test_ids_that_differ_only") and "test_named[a-b]" in name for name in kept)
    tests = json.loads((pytester.path / "out.json").read_text())["tests"]
    assert sorted(Path(test["capture_file"]).name for test in tests) == kept
    assert sorted(Path(test["flamegraph"]).name for test in tests) == graphs
    assert list(private_tmp.iterdir()) == []


_TIMEOUT_MARKERS = "test_a_timeout_marker_follows_the_rule_of_memray_timeout"
_TIMEOUT_MARKERS_SUITE = """
import time
import pytest

@pytest.mark.memray_isolate(timeout=float("nan"))
def test_nan():
    pass

@pytest.mark.memray_isolate(timeout=float("inf"))
def test_inf():
    pass

@pytest.mark.memray_isolate(timeout=0)
def test_no_limit():
    time.sleep(1.0)
"""


@pytest.mark.parametrize(
    "shared", [pytest.param(f"timeout-{mode}", id=mode) for mode in sorted(MODE_FLAGS)], indirect=True
)
def test_a_timeout_marker_follows_the_rule_of_memray_timeout(shared: FaultsRun) -> None:
    """memray_isolate(timeout=...) takes what --memray-timeout takes: nan and inf are refused
    naming the test, 0 means no limit (here: it lifts --memray-timeout for one test)."""
    assert shared.outcomes(_TIMEOUT_MARKERS) == {"passed": 1, "errors": 2}
    hint = "timeout must be a number of seconds, 0 (no limit) or more, or None"
    shared.section("ERROR at setup of test_nan").fnmatch_lines(
        [f"*::test_nan: invalid marker @pytest.mark.memray_isolate(timeout=nan): {hint}; got nan"]
    )
    shared.section("ERROR at setup of test_inf").fnmatch_lines(
        [f"*::test_inf: invalid marker @pytest.mark.memray_isolate(timeout=inf): {hint}; got inf"]
    )
    shared.result.stdout.no_fnmatch_line("*INTERNALERROR*")
    assert shared.leftovers == []


@pytest.mark.parametrize(("where", "mode_flag"), sources_by_mode())
def test_a_json_report_that_cannot_be_written_stops_the_run_at_start(
    pytester: pytest.Pytester, run: Runner, private_tmp: Path, mode_flag: str, where: str
) -> None:
    """--memray-json (or memray_json) in a directory that cannot be made is a usage error
    naming the path and where it was set, before any test runs."""
    (pytester.path / "afile.txt").write_text("not a directory\n")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    if where == "ini":
        pytester.makeini("[pytest]\nmemray_json = afile.txt/out.json\n")
        result = run(mode_flag)
        source = "memray_json = 'afile.txt/out.json' (from the ini file *)"
    else:
        result = run(mode_flag, "--memray-json=afile.txt/out.json")
        source = "--memray-json = 'afile.txt/out.json' (from the command line)"
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {source}: */afile.txt is not a directory"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    result.stdout.no_fnmatch_line("*test_nothing*")
    assert list(private_tmp.iterdir()) == []


def test_a_json_report_that_fails_to_be_written_at_the_end_keeps_the_summary(
    pytester: pytest.Pytester, run: Runner, private_tmp: Path, mode_flag: str
) -> None:
    """When the report cannot be written at the end (its directory became a file during the
    run), the MEMRAY REPORT and pytest's summary still appear, the error is named, and the
    run fails rather than leave an earlier report looking like this run's."""
    pytester.makepyfile(
        """
        import shutil

        def test_replaces_the_reports_directory():
            shutil.rmtree("reports")
            with open("reports", "w") as stream:
                stream.write("no longer a directory\\n")
        """
    )
    pytester.mkdir("reports")
    result = run(mode_flag, "--memray-json=reports/out.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*MEMRAY REPORT*",
            "*",
            "Could not write the memray JSON report to */reports/out.json: *",
            "*= 1 passed in *",
        ]
    )
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    assert [path.name for path in pytester.path.iterdir() if path.name.startswith(".")] == []
    assert list(private_tmp.iterdir()) == []


_NO_TEMPORARY_DIRECTORY = """
import tempfile

tempfile.tempdir = {missing!r}  # where the tests' temporary files would go: nowhere usable
"""


def test_without_tracking_no_temporary_directory_is_needed(pytester: pytest.Pytester, run: Runner) -> None:
    """A run that tracks nothing passes without a usable temporary directory, as it does
    without the plugin (-s: pytest's own output capture needs one)."""
    pytester.makeconftest(_NO_TEMPORARY_DIRECTORY.format(missing=str(pytester.path / "missing")))
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = run("-s")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.no_fnmatch_line("*INTERNALERROR*")


def test_tracking_without_a_temporary_directory_is_a_usage_error(
    pytester: pytest.Pytester, run: Runner, mode_flag: str
) -> None:
    """Tracking with no usable temporary directory stops at start-up saying what to set."""
    missing = pytester.path / "missing"
    pytester.makeconftest(_NO_TEMPORARY_DIRECTORY.format(missing=str(missing)))
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = run("-s", mode_flag)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: {mode_flag.partition('=')[0]} needs a temporary directory for the tests' captures: *{missing}*;"
            " set TMPDIR to a writable directory"
        ]
    )
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert not missing.exists()


def test_a_marked_test_without_a_temporary_directory_fails_alone(
    pytester: pytest.Pytester, run: Runner
) -> None:
    """Without --memray, only the tests a marker tracks need the temporary directory: each
    fails saying what to set, and the others run."""
    pytester.makeconftest(_NO_TEMPORARY_DIRECTORY.format(missing=str(pytester.path / "missing")))
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.limit_memory("1 MB")
        def test_limited():
            pass

        @pytest.mark.memray_isolate
        def test_isolated():
            pass

        def test_untracked():
            pass
        """
    )
    result = run("-s")
    result.assert_outcomes(passed=1, failed=2)
    for name in ("test_limited", "test_isolated"):
        result.stdout.fnmatch_lines(
            [
                f"*::{name}: tracking its memory needs a temporary directory for the tests' captures:"
                " *; set TMPDIR to a writable directory"
            ]
        )
    result.stdout.no_fnmatch_line("*During handling of the above exception*")
    result.stdout.no_fnmatch_line("*INTERNALERROR*")


_ZERO = "test_a_zero_max_rss_means_no_ceiling"
_ZERO_SUITE = """
def test_allocates():
    data = bytearray(b"x") * (32 * 1024 * 1024)
    assert data
"""
#: The shared runs that hold the zero-ceiling test, and how each spells --memray-max-rss=0.
_ZERO_CEILINGS = {"fork": "0 B", "forkserver": "0 B", "timeout-fork": "0"}


@pytest.mark.parametrize(
    "shared",
    [pytest.param(key, id=f"{ceiling}-{key.rpartition('-')[2]}") for key, ceiling in _ZERO_CEILINGS.items()],
    indirect=True,
)
def test_a_zero_max_rss_means_no_ceiling(shared: FaultsRun) -> None:
    """--memray-max-rss=0 switches the ceiling off, as --memray-timeout=0 does the deadline,
    instead of killing every child (both spellings parse alike: "0" in fork mode only).

    Its runs give the option to every test they hold; none of them has a ceiling of its own.
    """
    assert shared.outcomes(_ZERO) == {"passed": 1}
    assert json.loads((shared.path / "out.json").read_text())["settings"]["max_rss"] is None


# -- the shared runs ---------------------------------------------------------------------
#
# Each module is the suite of the test of the same name, each recording into a directory
# of its own; a run (-rA, every test in the report, a TMPDIR of its own) holds the modules
# whose options agree, and each test checks its own module's outcomes, sections and
# processes. Per isolation mode there are four: one without a deadline or a ceiling (the
# tests below, the crashes, the marker's deadline, the zero ceiling), one with
# --memray-timeout=0.5 (and one with it in the ini file), and one for each ceiling.


#: The modules of the tests below, which every run without a deadline or a ceiling holds.
_PROCESS_SUITES: Dict[str, str] = {
    "test_processes_a_passing_test_leaves_running_are_killed": _RECORD_PIDS
    + """
def test_starts_and_leaves():
    start_grandchild()
"""
    + _AFTER,
    "test_a_test_that_forks_closes_stdout_or_changes_directory": """
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
""",
    "test_a_crash_is_seen_while_a_process_the_test_started_still_runs": _RECORD_PIDS
    + """
import time

def test_forks_then_dies():
    pid = os.fork()
    if pid == 0:
        time.sleep(600)
        os._exit(0)
    record(os.getpid(), pid)
    os._exit(3)
"""
    + _AFTER,
    "test_at_exit_clean_up_a_test_registers_runs_in_its_child": """
import atexit, multiprocessing, multiprocessing.util, os, tempfile

KEPT = []

def write_mark(name):
    with open(os.path.join({root!r}, name), "w"):
        pass

def test_registers_clean_up():
    atexit.register(write_mark, "atexit-ran")
    KEPT.append(tempfile.TemporaryDirectory())
    write_mark("kept-" + os.path.basename(KEPT[0].name))
    with multiprocessing.get_context("forkserver").Pool(1) as pool:
        assert pool.map(abs, [-1]) == [1]
"""
    + _AFTER,
    "test_a_process_a_test_daemonizes_is_ended_with_its_child": _RECORD_PIDS
    + """
import time

def test_daemonizes():
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            record(os.getpid())
            time.sleep(600)
        os._exit(0)
    os.waitpid(pid, 0)
    give_up = time.monotonic() + 30
    while not os.path.exists(os.path.join({root!r}, "pids")) and time.monotonic() < give_up:
        time.sleep(0.01)
"""
    + _AFTER,
}


@dataclass(frozen=True)
class _RunSpec:
    """What one shared run holds: its tracking mode's name, its options, its modules (and
    a conftest), and the lines of an ini file if it has one."""

    mode: str
    flags: Tuple[str, ...]
    suites: Dict[str, str]
    ini: str = ""


def _run_specs() -> Dict[str, _RunSpec]:
    """Every shared run, by the key the tests parametrize ``shared`` with."""
    runs: Dict[str, _RunSpec] = {}
    for mode, flag in sorted(EVERY_ISOLATION_FLAG.items()):
        suites = {**_PROCESS_SUITES, _CRASH: _CRASH_SUITE}
        flags = [flag, "--most-allocations=0"]
        if mode in _ZERO_CEILINGS:
            suites[_ZERO] = _ZERO_SUITE
            flags += [f"--memray-max-rss={_ZERO_CEILINGS[mode]}", "--memray-json=out.json"]
        if mode == "fork":
            suites[_HANG] = _hang_suite(f"@pytest.mark.memray_isolate({mode!r}, timeout=0.5)")
        runs[mode] = _RunSpec(mode, tuple(flags), suites)
        runs[f"ceiling-400-{mode}"] = _RunSpec(
            mode,
            (flag, "--memray-max-rss=400 MB", "--memray-capture-format=all"),
            {_RUNAWAY: _RUNAWAY_SUITE, _CRASH_ALL: _CRASH_ALL_SUITE},
        )
        runs[f"ceiling-150-{mode}"] = _RunSpec(
            mode, (flag, "--memray-max-rss=150 MB"), {"conftest": _BIG_FIXTURE, _GROWS: _GROWS_SUITE}
        )
    for mode, flag in sorted(EVERY_MODE_FLAG.items()):
        key = f"timeout-{mode}"
        suites = {}
        flags = [flag, "--memray-timeout=0.5"]
        if mode in EVERY_ISOLATION_FLAG:
            suites[_HANG] = _hang_suite("")
        if mode in MODE_FLAGS:
            suites[_TIMEOUT_MARKERS] = _TIMEOUT_MARKERS_SUITE
        if key in _ZERO_CEILINGS:
            suites[_ZERO] = _ZERO_SUITE
            flags += [f"--memray-max-rss={_ZERO_CEILINGS[key]}", "--memray-json=out.json"]
        runs[key] = _RunSpec(mode, tuple(flags), suites)
    runs["timeout-ini-fork"] = _RunSpec(
        "fork", (ISOLATION_FLAGS["fork"],), {_HANG: _hang_suite("")}, ini="memray_timeout = 0.5"
    )
    return runs


_RUNS = _run_specs()


@dataclass(frozen=True)
class FaultsRun:
    """One shared run: its result, its mode, where it ran, and the names left in its TMPDIR."""

    result: pytest.RunResult
    mode: str
    path: Path
    leftovers: List[str]

    def outcomes(self, module: str) -> Dict[str, int]:
        """How many of ``module``'s tests had each outcome."""
        return outcomes_in(self.result, f"{module}.py")

    def section(self, name: str) -> pytest.LineMatcher:
        """The report section headed ``name`` (a test's name, or ``ERROR at setup of ...``)."""
        return pytest.LineMatcher(report_sections(self.result.outlines)[name])

    def pids(self, module: str) -> List[int]:
        """The process ids ``module``'s tests recorded."""
        path = self.path / module / "pids"
        return [int(word) for word in path.read_text().split()] if path.exists() else []


def _start(directory: Path, spec: _RunSpec) -> pytest.RunResult:
    """Run ``spec``'s modules in ``directory`` with a TMPDIR of their own, and keep what the
    run left in it: the TMPDIR is removed before any test checks it."""
    suites = {}
    for name, source in spec.suites.items():
        if "{root!r}" in source:
            (directory / name).mkdir()
            source = source.replace("{root!r}", repr(str(directory / name)))
        suites[name] = source
    if spec.ini:
        (directory / "tox.ini").write_text(f"[pytest]\n{spec.ini}\n")
    return run_with_private_tmp(directory, suites, *spec.flags, "-rA")


@pytest.fixture(scope="module")
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> FaultsRun:
    """The shared run named by the test's parameter (a key of ``_RUNS``), once per session.

    Shared by the crash, hang, runaway, ceiling, timeout-marker and zero-ceiling tests and
    the tests below: each fails or passes alone, which is what the plugin promises of a
    crash, a hang or a runaway child, and a run holds only tests whose options agree (one
    deadline, one ceiling, one capture format), so no test sees an option given for
    another. The whole run's exit status is no test's point here.
    """
    key = str(request.param)
    spec = _RUNS[key]
    result, path = run_once(tmp_path_factory, f"faults-{key}", lambda directory: _start(directory, spec))
    return FaultsRun(result, spec.mode, path, left_in_tmp(path))


@pytest.mark.parametrize("shared", sorted(EVERY_ISOLATION_FLAG), indirect=True)
def test_processes_a_passing_test_leaves_running_are_killed(shared: FaultsRun) -> None:
    """A test that starts a process and returns does not leave it running after the child ends."""
    module = "test_processes_a_passing_test_leaves_running_are_killed"
    assert shared.outcomes(module) == {"passed": 2}
    pids = shared.pids(module)
    assert len(pids) == 3  # the test's process, the one it started, and their parent
    assert gone(pids)


@pytest.mark.parametrize("shared", sorted(EVERY_ISOLATION_FLAG), indirect=True)
def test_a_test_that_forks_closes_stdout_or_changes_directory(shared: FaultsRun) -> None:
    """The parent still gets exactly one report from a child that forks, closes fd 1 or moves."""
    module = "test_a_test_that_forks_closes_stdout_or_changes_directory"
    assert shared.outcomes(module) == {"passed": 5}
    shared.result.stdout.fnmatch_lines(
        [f"Allocation results for {module}.py::test_changes_directory at the high watermark"]
    )


@pytest.mark.parametrize("shared", sorted(EVERY_ISOLATION_FLAG), indirect=True)
def test_a_crash_is_seen_while_a_process_the_test_started_still_runs(shared: FaultsRun) -> None:
    """A child that dies while a process it forked lives on, holding every descriptor it
    inherited, still fails its test with the cause; the process it left is killed."""
    module = "test_a_crash_is_seen_while_a_process_the_test_started_still_runs"
    assert shared.outcomes(module) == {"passed": 1, "failed": 1}
    shared.section("test_forks_then_dies").fnmatch_lines(
        ["*The isolated child process running this test exited with status 3*"]
    )
    assert gone(shared.pids(module))


@pytest.mark.skipif(sys.platform != "linux", reason="only Linux lets the child adopt what a test detaches")
@pytest.mark.parametrize("shared", sorted(EVERY_ISOLATION_FLAG), indirect=True)
def test_a_process_a_test_daemonizes_is_ended_with_its_child(shared: FaultsRun) -> None:
    """A test that detaches a process (fork, setsid, fork again) does not leave it running:
    the daemon is out of the child's process group, yet ends with the test's child."""
    module = "test_a_process_a_test_daemonizes_is_ended_with_its_child"
    assert shared.outcomes(module) == {"passed": 2}
    pids = shared.pids(module)
    assert len(pids) == 1
    assert gone(pids)
    assert shared.leftovers == []


@pytest.mark.parametrize("shared", sorted(EVERY_ISOLATION_FLAG), indirect=True)
def test_at_exit_clean_up_a_test_registers_runs_in_its_child(shared: FaultsRun) -> None:
    """What a test registers for its process's exit runs when its child ends: atexit
    handlers, TemporaryDirectory finalizers, a multiprocessing forkserver pool's pymp-* dir."""
    module = "test_at_exit_clean_up_a_test_registers_runs_in_its_child"
    assert shared.outcomes(module) == {"passed": 2}
    assert (shared.path / module / "atexit-ran").exists()
    assert len(list((shared.path / module).glob("kept-tmp*"))) == 1
    assert shared.leftovers == []
