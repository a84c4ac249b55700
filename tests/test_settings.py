"""End to end: options and ini keys, their precedence, and the errors for bad values."""

from __future__ import annotations

import json
import os
import sys

import pytest

from conftest import Runner, SharedRun, outcomes_in, run_once, run_suites
from pytest_memray_isolate._options import ISOLATION_MODES, default_isolation_mode

_TWO_TESTS = """
import os

def test_pid_a():
    print("PID", os.getpid())
    data = bytearray(1024 * 1024)
    assert data is not None

def test_pid_b():
    data = bytearray(2 * 1024 * 1024)
    assert data is not None
"""


def _ran_in_children(result: pytest.RunResult) -> bool:
    """Whether the tests printed a process id other than pytest's own (captured output, -rP)."""
    pids = {int(line.split()[1]) for line in result.stdout.lines if line.startswith("PID ")}
    assert pids, "the test's output was not shown"
    return pids != {result_pid(result)}


def result_pid(result: pytest.RunResult) -> int:
    return int(next(line.split()[1] for line in result.stdout.lines if line.startswith("PYTEST-PID ")))


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """Two tests that print their pid, and a conftest that prints pytest's pid."""
    pytester.makepyfile(_TWO_TESTS)
    pytester.makeconftest(
        """
        import os

        def pytest_report_header():
            return f"PYTEST-PID {os.getpid()}"
        """
    )
    return pytester


def test_memray_ini_key_turns_tracking_on(suite: pytest.Pytester, run_inprocess: Runner) -> None:
    """memray = true in the ini file tracks every test, in process, without the flag."""
    suite.makeini("[pytest]\nmemray = true\n")
    result = run_inprocess("-rP")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*= MEMRAY REPORT =*", "Allocation results for *::test_pid_b at *"])
    assert not _ran_in_children(result)


@pytest.mark.parametrize("mode", ISOLATION_MODES)
def test_memray_isolate_ini_key_isolates_every_test(suite: pytest.Pytester, run: Runner, mode: str) -> None:
    """memray_isolate = MODE in the ini file does what --memray-isolate=MODE does."""
    suite.makeini(f"[pytest]\nmemray_isolate = {mode}\n")
    result = run("-rP")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*= MEMRAY REPORT =*",
            "Allocation results for *::test_pid_b at *",
            f"Isolation: {mode} (each tracked test ran in a child process of its own)",
        ]
    )
    assert _ran_in_children(result)


@pytest.mark.parametrize(("platform", "mode"), [("linux", "fork"), ("darwin", "spawn")])
def test_the_default_mode_is_spawn_on_macos_and_fork_elsewhere(
    monkeypatch: pytest.MonkeyPatch, platform: str, mode: str
) -> None:
    """Forking a process that has used macOS's system frameworks is unsafe; spawn is its default."""
    monkeypatch.setattr(sys, "platform", platform)
    assert default_isolation_mode() == mode


def test_command_line_beats_ini(suite: pytest.Pytester, run_inprocess: Runner) -> None:
    """--memray-isolate=off overrides memray_isolate = fork; --memray still tracks in process."""
    suite.makeini("[pytest]\nmemray_isolate = fork\nmost_allocations = 1\n")
    result = run_inprocess("-rP", "--memray-isolate=off", "--memray", "--most-allocations=2")
    assert result.ret == 0
    assert not _ran_in_children(result)
    assert result.stdout.str().count("Allocation results for") == 2


@pytest.mark.parametrize("off", ["off", "none", "no", "false", "0"])
def test_memray_isolate_off_in_ini_means_no_isolation(
    suite: pytest.Pytester, run_inprocess: Runner, off: str
) -> None:
    """The ini key accepts off (and its synonyms) to state the default explicitly."""
    suite.makeini(f"[pytest]\nmemray_isolate = {off}\n")
    result = run_inprocess("-rP")
    assert result.ret == 0
    result.stdout.no_fnmatch_line("*MEMRAY REPORT*")
    assert not _ran_in_children(result)


def test_most_allocations_and_hide_summary_ini_keys(suite: pytest.Pytester, run_inprocess: Runner) -> None:
    """most_allocations and hide_memray_summary take effect from the ini file alone."""
    suite.makeini("[pytest]\nmemray = true\nmost_allocations = 1\n")
    one = run_inprocess()
    assert one.stdout.str().count("Allocation results for") == 1
    suite.makeini("[pytest]\nmemray = true\nhide_memray_summary = yes\n")
    hidden = run_inprocess()
    assert hidden.ret == 0
    hidden.stdout.no_fnmatch_line("*MEMRAY REPORT*")


def test_memray_isolate_does_not_swallow_the_path_after_it(suite: pytest.Pytester, run: Runner) -> None:
    """pytest --memray-isolate tests/ runs tests/ in fork mode: the path is not read as a mode."""
    folder = suite.mkpydir("suite_dir")
    (folder / "test_inner.py").write_text("def test_inner():\n    print('PID', __import__('os').getpid())\n")
    for path in ("suite_dir", f"suite_dir{os.sep}", "suite_dir/test_inner.py::test_inner"):
        result = run("-rP", "--memray-isolate", path)
        assert result.ret == 0, result.stdout.str()
        result.assert_outcomes(passed=1)
        assert _ran_in_children(result)


def test_a_mode_that_is_also_a_path_after_memray_isolate_is_refused(
    pytester: pytest.Pytester, run: Runner, run_inprocess: Runner
) -> None:
    """pytest --memray-isolate spawn, with a directory named spawn, is a usage error saying how
    to write the mode and how to write the path; either written so runs."""
    folder = pytester.mkpydir("spawn")
    (folder / "test_inner.py").write_text("def test_inner():\n    pass\n")
    pytester.makepyfile("def test_outer():\n    pass\n")
    refused = run_inprocess("--memray-isolate", "spawn")  # refused before any test runs
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(
        [
            "ERROR: --memray-isolate spawn: 'spawn' is both a value of --memray-isolate and a path here;"
            " write --memray-isolate=spawn for the value, or ./spawn for the path"
        ]
    )
    as_mode = run("--memray-isolate=spawn", "-v")
    as_mode.assert_outcomes(passed=2)
    as_mode.stdout.fnmatch_lines(["Isolation: spawn *"])
    as_path = run("--memray-isolate", "./spawn", "-v")
    as_path.assert_outcomes(passed=1)
    as_path.stdout.fnmatch_lines(
        ["spawn/test_inner.py::test_inner PASSED*", f"Isolation: {default_isolation_mode()} *"]
    )


def test_a_path_after_memray_isolate_keeps_its_place(pytester: pytest.Pytester, run: Runner) -> None:
    """pytest --memray-isolate a.py b.py collects a.py first, as the command line orders them."""
    pytester.makepyfile(test_a="def test_a():\n    pass\n", test_b="def test_b():\n    pass\n")
    result = run("-v", "--memray-isolate", "test_a.py", "test_b.py")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["test_a.py::test_a PASSED*", "test_b.py::test_b PASSED*"])


_ONE_MARKED = """
import os
import pytest

PARENT = os.getpid()

@pytest.mark.memray_isolate
def test_isolated():
    assert os.getpid() != PARENT

def test_not_isolated():
    assert os.getpid() == PARENT
"""

_CLASS_MARKED = """
import os
import pytest

PARENT = os.getpid()

class TestIsolated:
    pytestmark = pytest.mark.memray_isolate("fork")

    def test_one(self):
        assert os.getpid() != PARENT

    def test_two(self):
        assert os.getpid() != PARENT
"""

_ONE_MARKED_MODULE = "test_memray_isolate_marker_isolates_one_test_without_any_flag"
_CLASS_MARKED_MODULE = "test_memray_isolate_marker_through_pytestmark"


def _markers_alone(factory: pytest.TempPathFactory) -> SharedRun:
    """Both marker suites in one run without any flag: each marker isolates only the
    tests it marks, so neither suite changes the other's."""
    suites = {_ONE_MARKED_MODULE: _ONE_MARKED, _CLASS_MARKED_MODULE: _CLASS_MARKED}
    return run_once(factory, "settings-markers-alone", lambda path: run_suites(path, suites, "-rA"))


def test_memray_isolate_marker_isolates_one_test_without_any_flag(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """@pytest.mark.memray_isolate runs that test in a child even without --memray; the run,
    with no flag and only markers, prints no MEMRAY REPORT."""
    result = _markers_alone(tmp_path_factory).result
    assert outcomes_in(result, f"{_ONE_MARKED_MODULE}.py") == {"passed": 2}
    result.stdout.no_fnmatch_line("*MEMRAY REPORT*")


def test_a_mode_is_read_alike_by_the_option_and_the_marker(pytester: pytest.Pytester, run: Runner) -> None:
    """Case and spaces do not matter in a mode, whether given to --memray-isolate or to the marker."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.memray_isolate(" SPAWN ")
        def test_marked():
            pass

        def test_unmarked():
            pass
        """
    )
    result = run("--memray-isolate=FORK", "--memray-json=out.json")
    result.assert_outcomes(passed=2)
    tests = json.loads((pytester.path / "out.json").read_text())["tests"]
    assert {test["nodeid"].rpartition("::")[2]: test["mode"] for test in tests} == {
        "test_marked": "spawn",
        "test_unmarked": "fork",
    }


def test_memray_isolate_marker_through_pytestmark(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A class's pytestmark isolates each of its tests."""
    result = _markers_alone(tmp_path_factory).result
    assert outcomes_in(result, f"{_CLASS_MARKED_MODULE}.py") == {"passed": 2}


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (
            ["--most-allocations=-1"],
            "",
            "ERROR: --most-allocations = '-1' (from the command line): expected a whole number, 0 or more",
        ),
        (
            ["--most-allocations=many"],
            "",
            "ERROR: --most-allocations = 'many' (from the command line): expected a whole number, 0 or more",
        ),
        (
            [],
            "most_allocations = abc",
            "ERROR: most_allocations = 'abc' (from the ini file *tox.ini):"
            " expected a whole number, 0 or more",
        ),
        (
            ["--memray-isolate=frok"],
            "",
            "ERROR: --memray-isolate = 'frok' (from the command line): expected one of fork, forkserver, spawn or off",
        ),
        (
            [],
            "memray_isolate = thread",
            "ERROR: memray_isolate = 'thread' (from the ini file *tox.ini): expected one of fork, forkserver, spawn or off",
        ),
        (
            [],
            "memray = maybe",
            "ERROR: memray (from the ini file *tox.ini): invalid truth value 'maybe'; expected true or false",
        ),
        (
            [],
            "hide_memray_summary = 2",
            "ERROR: hide_memray_summary (from the ini file *tox.ini): invalid truth value '2'; expected true or false",
        ),
        (
            ["--stacks=0"],
            "",
            "ERROR: --stacks = '0' (from the command line): expected a whole number, 1 or more",
        ),
        (
            ["--stacks=-3"],
            "",
            "ERROR: --stacks = '-3' (from the command line): expected a whole number, 1 or more",
        ),
        (
            [],
            "stacks = many",
            "ERROR: stacks = 'many' (from the ini file *tox.ini): expected a whole number, 1 or more",
        ),
        (
            ["--memray-bin-path=afile.txt"],
            "",
            "ERROR: --memray-bin-path = 'afile.txt' (from the command line): */afile.txt is not a directory",
        ),
        (
            ["--memray-bin-path=afile.txt/inner"],
            "",
            "ERROR: --memray-bin-path = 'afile.txt/inner' (from the command line): cannot create the directory"
            " */afile.txt/inner: *",
        ),
        (
            [],
            "memray_bin_path = afile.txt",
            "ERROR: memray_bin_path = 'afile.txt' (from the ini file *tox.ini): */afile.txt is not a directory",
        ),
        (
            ["--memray-bin-prefix=a/b"],
            "",
            "ERROR: --memray-bin-prefix = 'a/b' (from the command line):"
            " expected a non-empty file name prefix without path separators",
        ),
        (
            ["--memray-capture-format=zip"],
            "",
            "ERROR: --memray-capture-format = 'zip' (from the command line): expected one of aggregated, all",
        ),
        (
            ["--memray-limit-memory=lots"],
            "",
            "ERROR: --memray-limit-memory = 'lots' (from the command line): expected a number and a unit*",
        ),
        (
            [],
            "memray_limit_memory = 5 XB",
            "ERROR: memray_limit_memory = '5 XB' (from the ini file *tox.ini): expected a number and a unit*",
        ),
        (
            ["--fail-on-increase=lots"],
            "",
            "ERROR: --fail-on-increase = 'lots' (from the command line): expected a percentage such as 10% or*",
        ),
        (
            [],
            "fail-on-increase = -5%",
            "ERROR: fail-on-increase = '-5%' (from the ini file *tox.ini): expected a percentage such as 10% or*",
        ),
        (
            [],
            "verbosity_memray = loud",
            "ERROR: verbosity_memray = 'loud' (from the ini file *tox.ini): expected a whole number*or auto",
        ),
        (
            ["--memray-repeat-leaks=3"],
            "",
            "ERROR: --memray-repeat-leaks = '3' (from the command line): expected WARMUPS,REPEATS such as 1,3"
            " (warm-ups 0 or more, repetitions 1 or more), or off",
        ),
        (
            ["--memray-repeat-leaks=1,0"],
            "",
            "ERROR: --memray-repeat-leaks = '1,0' (from the command line): expected WARMUPS,REPEATS such as 1,3*",
        ),
        (
            ["--memray-repeat-leaks=-1,3"],
            "",
            "ERROR: --memray-repeat-leaks = '-1,3' (from the command line): expected WARMUPS,REPEATS such as 1,3*",
        ),
        (
            [],
            "memray_repeat_leaks = 1,3,5",
            "ERROR: memray_repeat_leaks = '1,3,5' (from the ini file *tox.ini): expected WARMUPS,REPEATS*",
        ),
        (
            [],
            "memray_follow_fork = sometimes",
            "ERROR: memray_follow_fork (from the ini file *tox.ini): invalid truth value 'sometimes';"
            " expected true or false",
        ),
        (
            ["-o", "memray_timeout=soon"],
            "",
            "ERROR: memray_timeout = 'soon' (from -o on the command line):"
            " expected a number of seconds, 0 (no limit) or more",
        ),
        (
            ["--override-ini=fail-on-increase=lots"],
            "fail-on-increase = 5%",
            "ERROR: fail-on-increase = 'lots' (from -o on the command line): expected a percentage*",
        ),
        (
            ["--memray-timeout=nan"],
            "",
            "ERROR: --memray-timeout = 'nan' (from the command line): expected a number of seconds, 0 (no limit) or more",
        ),
        (
            [],
            "memray_timeout = inf",
            "ERROR: memray_timeout = 'inf' (from the ini file *tox.ini):"
            " expected a number of seconds, 0 (no limit) or more",
        ),
        (
            [],
            "native = maybe",
            "ERROR: native (from the ini file *tox.ini): invalid truth value 'maybe'; expected true or false",
        ),
    ],
)
def test_bad_values_stop_the_run_naming_option_source_and_value(
    pytester: pytest.Pytester, run_inprocess: Runner, args: list[str], ini: str, message: str
) -> None:
    """A usage error (exit 4) that says which option, where it was set, and what was expected."""
    pytester.makefile(".ini", tox=f"[pytest]\n{ini}\n")
    (pytester.path / "afile.txt").write_text("not a directory\n")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = run_inprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str()


def test_help_lists_every_option(run_inprocess: Runner) -> None:
    """pytest --help shows the memray options with their help text."""
    result = run_inprocess("--help")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "memray:",
            "  --memray * Activate memray tracking: measure the memory of every",
            "  --memray-isolate=[[]MODE[]]",
            "*Run each tracked test's call phase in its own child*",
            "  --most-allocations=N *",
            "  --hide-memray-summary",
        ],
        consecutive=False,
    )
    result.stdout.fnmatch_lines(
        ["  memray_isolate (string):*", "  most_allocations (string*"], consecutive=False
    )
