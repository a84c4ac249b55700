"""End to end: what isolation in a child adds (a crashing child: test_faults.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import ISOLATION_FLAGS, MODE_FLAGS, QUIET_PLUGINS, Runner, run_once, run_suites


@pytest.fixture
def private_tmp(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TMPDIR of the test's own, to check that the plugin leaves nothing in it."""
    tmp = pytester.mkdir("private-tmp")
    monkeypatch.setenv("TMPDIR", str(tmp))
    return tmp


_MUTATES = """
import pytest

COUNTER = [0]

@pytest.fixture(scope="module")
def shared():
    return {}

@pytest.mark.parametrize("n", range(3))
def test_mutates(shared, n):
    COUNTER[0] += 1
    shared[n] = True
    assert COUNTER == [1]
    assert shared == {n: True}
"""


def test_changes_to_module_state_stay_in_the_child(
    pytester: pytest.Pytester, run: Runner, isolated_flag: str
) -> None:
    """A test's changes to globals and fixture objects do not leak into later tests."""
    pytester.makepyfile(_MUTATES)
    run(isolated_flag).assert_outcomes(passed=3)


def test_changes_to_module_state_leak_in_process(pytester: pytest.Pytester, run: Runner) -> None:
    """The control, once for every isolation mode: tracked in process, the same tests see
    each other's changes, so the isolated runs do show something."""
    pytester.makepyfile(_MUTATES)
    run("--memray").assert_outcomes(passed=1, failed=2)


def test_a_thread_left_running_dies_with_the_child(
    pytester: pytest.Pytester, every_isolated_flag: str
) -> None:
    """A test that leaves a non-daemon thread behind cannot keep the session from ending."""
    pytester.makepyfile(
        """
        import threading
        import time

        def test_leaves_a_thread():
            threading.Thread(target=time.sleep, args=(3600,), name="left-behind").start()

        def test_after():
            assert "left-behind" not in [thread.name for thread in threading.enumerate()]
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", *QUIET_PLUGINS, every_isolated_flag, timeout=120
    )
    result.assert_outcomes(passed=2)


def test_output_printed_without_capture_is_not_lost(
    pytester: pytest.Pytester, run: Runner, every_isolated_flag: str
) -> None:
    """With -s the child's prints reach the terminal before the child exits."""
    pytester.makepyfile(
        """
        def test_prints():
            print("hello from the child", end="")
        """
    )
    result = run(every_isolated_flag, "-s")
    assert result.ret == 0
    assert "hello from the child" in result.stdout.str()


def test_sys_exit_in_a_test_fails_that_test(
    pytester: pytest.Pytester, run: Runner, isolated_flag: str
) -> None:
    """sys.exit inside a test is a failed test, as without isolation."""
    pytester.makepyfile(
        """
        import sys

        def test_exits():
            sys.exit(3)

        def test_after():
            pass
        """
    )
    result = run(isolated_flag)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["E       SystemExit: 3"])


def test_pytest_exit_in_a_test_ends_the_session_as_usual(
    pytester: pytest.Pytester, run: Runner, isolated_flag: str
) -> None:
    """pytest.exit stops the run with its message and return code, as without isolation."""
    pytester.makepyfile(
        """
        import pytest

        def test_stops():
            pytest.exit("enough for today", returncode=7)

        def test_never_runs():
            raise AssertionError("must not run")
        """
    )
    result = run(isolated_flag)
    assert result.ret == 7
    result.stdout.fnmatch_lines(["*! _pytest.outcomes.Exit: enough for today !*"])
    result.stdout.no_fnmatch_line("*must not run*")


def test_keyboard_interrupt_in_a_test_interrupts_the_session(
    pytester: pytest.Pytester, run: Runner, isolated_flag: str
) -> None:
    """A KeyboardInterrupt raised by a test stops the session as pytest always does."""
    pytester.makepyfile(
        """
        def test_interrupts():
            raise KeyboardInterrupt

        def test_never_runs():
            raise AssertionError("must not run")
        """
    )
    result = run(isolated_flag)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*! KeyboardInterrupt !*"])
    result.stdout.no_fnmatch_line("*must not run*")


def test_faulthandler_timeout_does_not_hang_a_failing_child(
    pytester: pytest.Pytester, isolated_flag: str
) -> None:
    """pytest's faulthandler_timeout watchdog is cancelled before forking (pytest-forked #49)."""
    pytester.makeini("[pytest]\nfaulthandler_timeout = 30\n")
    pytester.makepyfile(
        """
        def test_fails():
            assert False

        def test_passes():
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", *QUIET_PLUGINS, isolated_flag, timeout=60
    )
    result.assert_outcomes(passed=1, failed=1)


_SEES_ITS_CAPTURE_DIRECTORY = """
import tempfile

def test_sees_its_capture_directory():
    names = __import__("os").listdir(tempfile.gettempdir())
    assert any(name.startswith("pytest-memray-isolate-") for name in names)
"""


@pytest.mark.parametrize("mode_flag", [*ISOLATION_FLAGS.values(), MODE_FLAGS["in-process"]])
def test_the_capture_directory_is_removed_at_the_end(
    pytester: pytest.Pytester, run: Runner, private_tmp: Path, mode_flag: str
) -> None:
    """Capture files live in a private mkdtemp directory that is gone after the run."""
    pytester.makepyfile(_SEES_ITS_CAPTURE_DIRECTORY)
    result = run(mode_flag)
    result.assert_outcomes(passed=1)
    assert list(private_tmp.iterdir()) == []


def test_a_forked_test_runs_in_another_process(
    pytester: pytest.Pytester, run: Runner, every_isolated_flag: str
) -> None:
    """Each isolated test gets its own process, and pytest's own process is not one of them."""
    pytester.makepyfile(
        f"""
        import os
        import pytest

        SEEN = os.path.join({str(pytester.path)!r}, "pids")

        @pytest.fixture(scope="session")
        def pytest_pid():
            return os.getpid()

        def test_one(pytest_pid):
            assert os.getpid() != pytest_pid
            with open(SEEN, "a") as stream:
                stream.write(f"{{os.getpid()}}\\n")

        def test_two(pytest_pid):
            assert os.getpid() != pytest_pid
            with open(SEEN, "a") as stream:
                stream.write(f"{{os.getpid()}}\\n")
        """
    )
    run(every_isolated_flag).assert_outcomes(passed=2)
    pids = (pytester.path / "pids").read_text().split()
    assert len(set(pids)) == 2
    assert str(os.getpid()) not in pids


_SUBTESTS = """
import unittest

class TestCase(unittest.TestCase):
    def test_subs(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertNotEqual(i, 1)
""" + (
    """
def test_fixture_subtests(subtests):
    for i in range(3):
        with subtests.test(i=i):
            assert i != 2
"""
    if int(pytest.__version__.split(".")[0]) >= 9
    else ""
)


@pytest.fixture(scope="module")
def subtests_in_process(tmp_path_factory: pytest.TempPathFactory) -> pytest.RunResult:
    """_SUBTESTS tracked in process: one run, the reference for every isolation mode."""
    suites = {"test_subtests_are_reported_as_without_isolation": _SUBTESTS}
    result, _ = run_once(
        tmp_path_factory, "subtests-in-process", lambda path: run_suites(path, suites, "--memray", "-rA")
    )
    return result


def test_subtests_are_reported_as_without_isolation(
    pytester: pytest.Pytester, run: Runner, isolated_flag: str, subtests_in_process: pytest.RunResult
) -> None:
    """unittest's subTest and pytest's subtests fixture: the same outcomes, subtest by subtest.

    Subtests are logged while the test runs, in the child; it sends them with the call
    report and the parent logs them. A failed subtest must never turn into a pass.
    """
    pytester.makepyfile(_SUBTESTS)
    plain = subtests_in_process
    isolated = run(isolated_flag, "-rA")
    assert isolated.parseoutcomes() == plain.parseoutcomes()
    assert plain.parseoutcomes().get("failed", 0) >= 1

    def failures(result: pytest.RunResult) -> list[str]:
        return sorted(
            line.replace("'", "") for line in result.stdout.lines if line.startswith(("SUBFAILED", "FAILED"))
        )

    assert failures(isolated) == failures(plain)


@pytest.mark.skipif(
    int(pytest.__version__.split(".")[0]) < 9, reason="the subtests fixture is new in pytest 9"
)
def test_subtests_that_passed_before_a_crash_are_reported(
    pytester: pytest.Pytester, run: Runner, isolated_flag: str
) -> None:
    """The child keeps each subtest's report as it is logged: when it crashes later in the
    call, the subtests that ran are still reported, and the test fails with the crash."""
    pytester.makepyfile(
        """
        import os

        def test_subs(subtests):
            for i in range(2):
                with subtests.test(i=i):
                    assert i < 2
            os._exit(3)

        def test_after():
            pass
        """
    )
    result = run(isolated_flag, "-v")  # passing subtests are counted from -v on
    result.stdout.fnmatch_lines(
        [
            "*The isolated child process running this test exited with status 3*",
            "*= 1 failed, 1 passed, 2 subtests passed in *",
        ]
    )
