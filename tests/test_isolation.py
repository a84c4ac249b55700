"""End to end: what isolation in a child adds (a crashing child: test_faults.py)."""

from __future__ import annotations

import os
import re
from collections import Counter
from typing import Dict, List

import pytest

from conftest import (
    EVERY_ISOLATION_FLAG,
    EVERY_MODE_FLAG,
    ISOLATION_FLAGS,
    QUIET_PLUGINS,
    Runner,
    SharedRun,
    outcomes_in,
    report_sections,
    run_once,
)
from private_runs import left_in_tmp, run_with_private_tmp


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


# -- checks that share one run per mode ----------------------------------------------------
#
# Each module below is the suite of the test of the same name. One run per way of tracking
# holds the modules of the tests that run in it (-rA for each module's outcomes, -v for
# each subtest's line, a TMPDIR of the run's own); each test checks its own module's
# outcomes and its own tests' sections. What ends the session (pytest.exit, Ctrl-C) and
# output printed with -s keep runs of their own, above.

#: pytest's subtests fixture is new in pytest 9.
_SUBTESTS_FIXTURE = int(pytest.__version__.split(".")[0]) >= 9

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
    if _SUBTESTS_FIXTURE
    else ""
)

_SEES_ITS_CAPTURE_DIRECTORY = """
import tempfile

def test_sees_its_capture_directory():
    names = __import__("os").listdir(tempfile.gettempdir())
    assert any(name.startswith("pytest-memray-isolate-") for name in names)
"""

_IN_ANOTHER_PROCESS = """
import os
import pytest

SEEN = os.path.join(os.path.dirname(__file__), "pids")

@pytest.fixture(scope="session")
def pytest_pid():
    return os.getpid()

def test_one(pytest_pid):
    assert os.getpid() != pytest_pid
    with open(SEEN, "a") as stream:
        stream.write(f"{os.getpid()}\\n")

def test_two(pytest_pid):
    assert os.getpid() != pytest_pid
    with open(SEEN, "a") as stream:
        stream.write(f"{os.getpid()}\\n")
"""

#: Lists, at the end of the run, each report pytest's terminal counts in the final line
#: by its kind (``subtests passed`` is counted from -v on): the counts of one module.
_COUNTED_CONFTEST = """
def pytest_terminal_summary(terminalreporter):
    for kind, reports in terminalreporter.stats.items():
        for report in reports:
            if kind and hasattr(report, "nodeid"):
                terminalreporter.write_line(f"COUNTED {report.nodeid} {kind}")
"""

_FINALIZERS = """
import os

RAN = os.path.join(os.path.dirname(__file__), "finalizers-ran")

def test_registers(request):
    request.addfinalizer(lambda: open(RAN, "a").write("first registered\\n"))
    request.addfinalizer(lambda: open(RAN, "a").write("second registered\\n"))

def test_registers_one_that_raises(request):
    def broken():
        raise RuntimeError("cleanup went wrong")
    request.addfinalizer(broken)

def test_after():
    pass
"""

_ISOLATED_SUITES = {
    "conftest": _COUNTED_CONFTEST,
    "test_finalizers_a_test_registers_run_after_its_call": _FINALIZERS,
    "test_changes_to_module_state_stay_in_the_child": _MUTATES,
    "test_sys_exit_in_a_test_fails_that_test": """
        import sys

        def test_exits():
            sys.exit(3)

        def test_after_exit():
            pass
        """,
    "test_the_capture_directory_is_removed_at_the_end": _SEES_ITS_CAPTURE_DIRECTORY,
    "test_a_forked_test_runs_in_another_process": _IN_ANOTHER_PROCESS,
    "test_subtests_are_reported_as_without_isolation": _SUBTESTS,
    **(
        {
            "test_subtests_that_passed_before_a_crash_are_reported": """
                import os

                def test_subs_then_crash(subtests):
                    for i in range(2):
                        with subtests.test(i=i):
                            assert i < 2
                    os._exit(3)

                def test_after_crash():
                    pass
                """
        }
        if _SUBTESTS_FIXTURE
        else {}
    ),
}

#: The suites of each way of tracking: in process, the controls of the isolated modes
#: (module state leaks, the subtests' reference) and the capture directory's removal;
#: spawn, only what depends on how its child's process is made.
_SUITES = {
    "in-process": {
        "conftest": _COUNTED_CONFTEST,
        "test_changes_to_module_state_leak_in_process": _MUTATES,
        "test_the_capture_directory_is_removed_at_the_end": _SEES_ITS_CAPTURE_DIRECTORY,
        "test_subtests_are_reported_as_without_isolation": _SUBTESTS,
        "test_finalizers_a_test_registers_run_after_its_call": _FINALIZERS,
    },
    "fork": _ISOLATED_SUITES,
    "forkserver": _ISOLATED_SUITES,
    "spawn": {"test_a_forked_test_runs_in_another_process": _IN_ANOTHER_PROCESS},
}


def _shared_run(factory: pytest.TempPathFactory, mode: str) -> SharedRun:
    """The run of ``_SUITES[mode]`` (started once per session, see ``run_once``)."""
    flags = [EVERY_MODE_FLAG[mode], "-rA", "-v"]
    return run_once(
        factory, f"isolation-{mode}", lambda path: run_with_private_tmp(path, _SUITES[mode], *flags)
    )


@pytest.fixture(scope="module", params=sorted(ISOLATION_FLAGS))
def isolated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    """The fork and forkserver runs: every test of this section but the in-process
    controls checks its module there. The modules do not meet: each keeps its state, files
    and names to itself, and none ends the session."""
    return _shared_run(tmp_path_factory, str(request.param))


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    """The run tracked in process (--memray): the controls of the isolated runs, whose
    modules see each other's changes only within their own module."""
    return _shared_run(tmp_path_factory, "in-process")


@pytest.fixture(scope="module", params=sorted(EVERY_ISOLATION_FLAG))
def every_isolated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    """The fork, forkserver and spawn runs, for what depends on how a child is made."""
    return _shared_run(tmp_path_factory, str(request.param))


def _section(run: SharedRun, name: str) -> pytest.LineMatcher:
    return pytest.LineMatcher(report_sections(run.result.outlines)[name])


def _finalizers_ran_as_pytest_runs_them(run: SharedRun) -> None:
    module = "test_finalizers_a_test_registers_run_after_its_call"
    assert outcomes_in(run.result, f"{module}.py") == {"passed": 3, "errors": 1}
    ran = (run.path / "finalizers-ran").read_text().splitlines()
    assert ran == ["second registered", "first registered"]
    _section(run, "ERROR at teardown of test_registers_one_that_raises").fnmatch_lines(
        ["*RuntimeError: cleanup went wrong"]
    )


def test_finalizers_a_test_registers_run_after_its_call(isolated: SharedRun) -> None:
    """request.addfinalizer in a test's body: the finalizers run after the call, last
    registered first, and one that raises fails the test's teardown with its error. An
    isolated child runs them itself, after its call report: pytest's teardown, in the
    parent, never sees them."""
    _finalizers_ran_as_pytest_runs_them(isolated)


def test_finalizers_a_test_registers_run_after_its_call_in_process(in_process: SharedRun) -> None:
    """The control: the same module tracked in pytest's process."""
    _finalizers_ran_as_pytest_runs_them(in_process)


def test_changes_to_module_state_stay_in_the_child(isolated: SharedRun) -> None:
    """A test's changes to globals and fixture objects do not leak into later tests."""
    assert outcomes_in(isolated.result, "test_changes_to_module_state_stay_in_the_child.py") == {"passed": 3}


def test_changes_to_module_state_leak_in_process(in_process: SharedRun) -> None:
    """The control, once for every isolation mode: tracked in process, the same tests see
    each other's changes, so the isolated runs do show something."""
    assert outcomes_in(in_process.result, "test_changes_to_module_state_leak_in_process.py") == {
        "passed": 1,
        "failed": 2,
    }


def test_sys_exit_in_a_test_fails_that_test(isolated: SharedRun) -> None:
    """sys.exit inside a test is a failed test, as without isolation."""
    assert outcomes_in(isolated.result, "test_sys_exit_in_a_test_fails_that_test.py") == {
        "passed": 1,
        "failed": 1,
    }
    _section(isolated, "test_exits").fnmatch_lines(["E       SystemExit: 3"])


@pytest.mark.parametrize("mode", [*sorted(ISOLATION_FLAGS), "in-process"])
def test_the_capture_directory_is_removed_at_the_end(
    tmp_path_factory: pytest.TempPathFactory, mode: str
) -> None:
    """Capture files live in a private mkdtemp directory that is gone after the run: the
    run's own TMPDIR is empty when it ends (every test of the run counts)."""
    shared = _shared_run(tmp_path_factory, mode)
    assert outcomes_in(shared.result, "test_the_capture_directory_is_removed_at_the_end.py") == {"passed": 1}
    assert left_in_tmp(shared.path) == []


def test_a_forked_test_runs_in_another_process(every_isolated: SharedRun) -> None:
    """Each isolated test gets its own process, and pytest's own process is not one of them."""
    assert outcomes_in(every_isolated.result, "test_a_forked_test_runs_in_another_process.py") == {
        "passed": 2
    }
    pids = (every_isolated.path / "pids").read_text().split()
    assert len(set(pids)) == 2
    assert str(os.getpid()) not in pids


def _summary_of(result: pytest.RunResult, module: str) -> List[str]:
    """The short test summary's lines about ``module``, sorted, without quotes (a subtest's
    parameters are quoted where they came through the child's report)."""
    start = next(index for index, line in enumerate(result.outlines) if "short test summary info" in line)
    return sorted(
        line.replace("'", "")
        for line in result.outlines[start + 1 :]
        if line.partition(" ")[2].startswith(f"{module}::")
    )


def _counted(result: pytest.RunResult, module: str) -> Dict[str, int]:
    """How many reports of ``module`` pytest counted of each kind for its final line
    (``subtests passed`` too), from _COUNTED_CONFTEST's lines."""
    kinds = Counter(
        line.split(" ", 2)[2]
        for line in result.outlines
        if line.startswith("COUNTED ") and line.split(" ", 2)[1].startswith(f"{module}::")
    )
    return dict(kinds)


def _fixture_subtest_lines(result: pytest.RunResult, module: str) -> Dict[str, int]:
    """How many -v progress lines ``module``'s subtests fixture test printed, by word
    (``SUBPASSED``). pytest prints no such line for unittest's subTest: it logs those
    while the test's output is captured."""
    words = Counter(
        match[1]
        for match in (
            re.match(rf"{re.escape(module)}::test_fixture_subtests (SUB[A-Z]+)\(", line)
            for line in result.outlines
        )
        if match is not None
    )
    return dict(words)


def test_subtests_are_reported_as_without_isolation(isolated: SharedRun, in_process: SharedRun) -> None:
    """unittest's subTest and pytest's subtests fixture: the same outcomes, subtest by subtest.

    Subtests are logged while the test runs, in the child; it sends them with the call
    report and the parent logs them. A failed subtest must never turn into a pass. Tracked
    in process, the same module is the reference: the same outcomes, the same counts in
    pytest's final line, the same lines in the short summary, and each fixture subtest's
    progress line shown once (the parent's: a forked child's own would show on the same
    terminal).
    """
    module = "test_subtests_are_reported_as_without_isolation.py"
    plain = _summary_of(in_process.result, module)
    assert outcomes_in(isolated.result, module) == outcomes_in(in_process.result, module)
    if _SUBTESTS_FIXTURE:
        assert _fixture_subtest_lines(in_process.result, module) == {"SUBPASSED": 2, "SUBFAILED": 1}
        assert _fixture_subtest_lines(isolated.result, module) == {"SUBPASSED": 2, "SUBFAILED": 1}
    assert _counted(isolated.result, module) == _counted(in_process.result, module)
    assert outcomes_in(in_process.result, module).get("failed", 0) >= 1
    assert _summary_of(isolated.result, module) == plain


@pytest.mark.skipif(not _SUBTESTS_FIXTURE, reason="the subtests fixture is new in pytest 9")
def test_subtests_that_passed_before_a_crash_are_reported(isolated: SharedRun) -> None:
    """The child keeps each subtest's report as it is logged: when it crashes later in the
    call, the subtests that ran are still reported, and the test fails with the crash."""
    module = "test_subtests_that_passed_before_a_crash_are_reported.py"
    assert outcomes_in(isolated.result, module) == {"passed": 1, "failed": 1}
    _section(isolated, "test_subs_then_crash").fnmatch_lines(
        ["*The isolated child process running this test exited with status 3*"]
    )
    # pytest's final line would say "1 failed, 1 passed, 2 subtests passed" of this module.
    counted = _counted(isolated.result, module)
    assert (counted["failed"], counted["passed"], counted["subtests passed"]) == (1, 1, 2)
