"""End to end: what is particular to the spawn and forkserver modes.

Their children do not share pytest's memory: the test's module is imported afresh, the
project's fixture values are sent with cloudpickle, and fixtures bound to a process are
made again. Everything the modes share with fork mode is proven by the suites that run
in every mode (``mode_flag`` and ``isolated_flag`` in conftest.py).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

import pytest

from conftest import (
    EVERY_ISOLATION_FLAG,
    ISOLATION_FLAGS,
    QUIET_PLUGINS,
    Runner,
    gone,
    outcomes_in,
    report_sections,
    run_once,
)
from private_runs import left_in_tmp, run_with_private_tmp

REMOTE_FLAGS = [EVERY_ISOLATION_FLAG["forkserver"], EVERY_ISOLATION_FLAG["spawn"]]


@pytest.fixture(params=REMOTE_FLAGS, ids=["forkserver", "spawn"])
def remote_flag(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once per mode whose children are not forks of pytest."""
    return str(request.param)


_UNPICKLABLE = """
import socket
import threading
import pytest

@pytest.fixture
def connection():
    with socket.socket() as sock:
        yield sock

@pytest.fixture
def guarded():
    lock = threading.Lock()
    return lambda: lock.locked()

def test_socket(connection):
    assert connection.fileno() >= 0

def test_closure_over_a_lock(guarded):
    assert guarded() is False

def test_after():
    pass
"""


def test_the_marker_chooses_the_mode_of_one_test(pytester: pytest.Pytester, run: Runner) -> None:
    """memray_isolate("spawn") and ("forkserver") isolate one test each, whatever the run's mode."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.memray_isolate("spawn")
        def test_spawned():
            data = bytearray(1024 * 1024)

        @pytest.mark.memray_isolate("forkserver")
        def test_served():
            data = bytearray(1024 * 1024)

        @pytest.mark.memray_isolate
        def test_default():
            pass

        def test_in_process():
            pass
        """
    )
    run("--memray", "--memray-json=out.json").assert_outcomes(passed=4)
    tests = json.loads((pytester.path / "out.json").read_text())["tests"]
    modes = {test["nodeid"].rpartition("::")[2]: test["mode"] for test in tests}
    default = "spawn" if sys.platform == "darwin" else "fork"
    assert modes == {
        "test_spawned": "spawn",
        "test_served": "forkserver",
        "test_default": default,
        "test_in_process": "in-process",
    }


def test_a_forkserver_that_dies_fails_its_test_and_a_new_one_takes_over(
    pytester: pytest.Pytester, run: Runner
) -> None:
    """A test that kills the server: that test fails saying so, even when its child could
    still report; the next gets a new server."""
    pytester.makepyfile(
        """
        import os
        import signal
        import time

        def test_kills_its_server():
            server = os.getppid()
            os.kill(server, signal.SIGKILL)
            while os.getppid() == server:  # the server is gone once this child is an orphan
                time.sleep(0.01)

        def test_after():
            pass
        """
    )
    result = run(EVERY_ISOLATION_FLAG["forkserver"], "-rf")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "The forkserver running this test's child ended unexpectedly (it was killed by signal 9);"
            " a new one starts for the next test."
        ]
    )


def test_a_conftest_can_tell_the_sessions_the_plugin_starts(
    pytester: pytest.Pytester, run: Runner, remote_flag: str
) -> None:
    """A conftest's pytest_configure runs in pytest's session and in each session the plugin
    starts (each spawned child, or the forkserver once); PYTEST_MEMRAY_ISOLATE_CHILD names
    their mode there, and the test itself sees pytest's environment without it."""
    mode = remote_flag.partition("=")[2]
    pytester.makeconftest(
        """
        import os

        def pytest_configure(config):
            with open(os.path.join(os.path.dirname(__file__), "log"), "a") as stream:
                stream.write(os.environ.get("PYTEST_MEMRAY_ISOLATE_CHILD", "pytest") + "\\n")
        """
    )
    pytester.makepyfile(
        """
        import os

        def test_a():
            assert "PYTEST_MEMRAY_ISOLATE_CHILD" not in os.environ

        def test_b():
            assert "PYTEST_MEMRAY_ISOLATE_CHILD" not in os.environ
        """
    )
    run(remote_flag).assert_outcomes(passed=2)
    sessions = (pytester.path / "log").read_text().split()
    assert sorted(sessions) == sorted(["pytest", *[mode] * (2 if mode == "spawn" else 1)])


_READS_STDIN = """
import sys

def test_reads():
    print("read:", repr(sys.stdin.read()))

def test_asks():
    input("name? ")
"""


@pytest.mark.parametrize("capture", [(), ("-s",)], ids=["captured", "-s"])
def test_a_remote_child_reading_standard_input_fails_naming_fork_mode(
    pytester: pytest.Pytester, remote_flag: str, capture: tuple[str, ...]
) -> None:
    """A forkserver or spawn child has no standard input of pytest's: reading it fails at
    once and says to use fork mode, with output captured or not (it used to read nothing,
    and ``input()`` ended in an EOFError)."""
    pytester.makepyfile(test_stdin=_READS_STDIN)
    result = pytester.run(
        sys.executable,
        "-mpytest",
        "-p",
        "no:cacheprovider",
        *QUIET_PLUGINS,
        remote_flag,
        *capture,
        stdin=b"hello\n",
    )
    result.assert_outcomes(failed=2)
    mode = remote_flag.split("=")[1]
    result.stdout.fnmatch_lines(
        [f"E *OSError: a test isolated in a {mode} child process has no standard input to read;*fork*"] * 2,
        consecutive=False,
    )
    assert "read: '" not in result.stdout.str()  # what the test would print had it read


def test_a_forked_child_reads_pytests_standard_input_with_s(pytester: pytest.Pytester) -> None:
    """The control: with -s a forked child reads what pytest's standard input holds, as
    the test would without the plugin."""
    pytester.makepyfile(test_stdin=_READS_STDIN.split("def test_asks")[0])
    result = pytester.run(
        sys.executable,
        "-mpytest",
        "-p",
        "no:cacheprovider",
        *QUIET_PLUGINS,
        "--memray-isolate=fork",
        "-s",
        stdin=b"hello\n",
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*read: 'hello\\n'*"])


_LOGS = """
import logging

def test_logs():
    logging.getLogger("app").warning("first record")
    print("printed by the test")
    logging.getLogger("app").warning("second record")

def test_quiet():
    pass
"""


@pytest.mark.parametrize("flag", sorted(EVERY_ISOLATION_FLAG.values()))
def test_live_log_lines_show_as_pytest_shows_them(pytester: pytest.Pytester, run: Runner, flag: str) -> None:
    """With log_cli, a test's log records print as its call emits them, under pytest's
    "live log call" heading, between the test's name and its outcome: a forkserver's or
    spawned child writes them to pytest's output, as a forked child (the control) does.
    What the test prints stays captured."""
    pytester.makepyfile(test_logs=_LOGS)
    result = run(flag, "-o", "log_cli=true")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "test_logs.py::test_logs ",
            "*- live log call -*",
            "WARNING  app:test_logs.py:4 first record",
            "WARNING  app:test_logs.py:6 second record",
            "PASSED*",
            "test_logs.py::test_quiet PASSED*",
        ],
        consecutive=True,
    )
    assert result.stdout.str().count("live log call") == 1
    assert "printed by the test" not in result.stdout.str()


def test_without_live_logging_a_child_writes_no_log_lines(pytester: pytest.Pytester, run: Runner) -> None:
    """Without log_cli nothing of the child's logging reaches pytest's output."""
    pytester.makepyfile(test_logs=_LOGS)
    result = run(EVERY_ISOLATION_FLAG["spawn"])
    result.assert_outcomes(passed=2)
    assert "record" not in result.stdout.str()


@pytest.mark.parametrize("flag", REMOTE_FLAGS, ids=["forkserver", "spawn"])
def test_output_is_captured_under_capture_sys(pytester: pytest.Pytester, run: Runner, flag: str) -> None:
    """With --capture=sys pytest captures sys.stdout, not the descriptors: a forkserver's
    or spawned child captures its test's output itself, which the failure then shows,
    rather than printing it as the test runs."""
    pytester.makepyfile(
        test_prints='def test_prints():\n    print("printed by the test")\n    assert False\n'
    )
    result = run(flag, "--capture=sys")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*- Captured stdout call -*", "printed by the test"], consecutive=True)
    assert result.stdout.str().count("printed by the test") == 2  # the failing line and the section


_LOG_FILE_SUITE = """
import logging
import pytest

@pytest.fixture
def logged():
    logging.getLogger("app").warning("set up")
    yield
    logging.getLogger("app").warning("torn down")

def test_one(logged):
    logging.getLogger("app").warning("called one")

def test_two(logged):
    logging.getLogger("app").warning("called two")
"""


@pytest.mark.parametrize("flag", sorted(EVERY_ISOLATION_FLAG.values()))
def test_the_log_file_holds_every_record_in_order(pytester: pytest.Pytester, run: Runner, flag: str) -> None:
    """--log-file gets the records of the fixtures (here) and of the calls (in the child),
    in order, as without isolation: a forkserver's or spawned child's session appends to
    it rather than truncating it, and neither handle overwrites the other's records. The
    file is still emptied once, as the run starts (pytest's default mode, "w")."""
    pytester.makepyfile(test_logs=_LOG_FILE_SUITE)
    (pytester.path / "run.log").write_text("a line from an earlier run\n")
    result = run(flag, "--log-file=run.log", "--log-file-format=%(message)s")
    result.assert_outcomes(passed=2)
    records = (pytester.path / "run.log").read_text().splitlines()
    assert records == ["set up", "called one", "torn down", "set up", "called two", "torn down"]


# -- checks that share one run per mode ---------------------------------------------------
#
# Each module is the suite of the test of the same name; one run per mode (-rA, a TMPDIR
# of its own) holds them all, and each test checks its own module's outcomes and its tests'
# sections. The remote modes' runs also have a thread running in pytest's process, -W
# error::DeprecationWarning and an installed plugin's fixture (the picky plugin), for the
# tests about those; none of them touches the other modules. The spawn run's conftest
# prints while each session starts, for the tests about a spawned child's start-up output.

_SHARED_SUITES = {
    "test_unpicklable_fixture_values_fail_their_test_naming_the_fixture": _UNPICKLABLE,
    "test_closures_and_shared_objects_travel_by_value": """
        import pytest

        @pytest.fixture
        def scale():
            factor = 3
            return lambda value: value * factor

        @pytest.fixture(scope="module")
        def registry():
            return {"names": []}

        @pytest.fixture
        def names(registry):
            return registry["names"]

        def test_lambda(scale):
            assert scale(2) == 6

        def test_shared(registry, names):
            names.append("x")
            assert registry["names"] == ["x"]
        """,
    "test_fixtures_made_in_the_child_and_state_the_parent_set_up": """
        import os
        import pytest

        @pytest.fixture
        def prepared(tmp_path, monkeypatch):
            (tmp_path / "data.txt").write_text("from the parent")
            monkeypatch.setenv("PREPARED_BY", "fixture")
            monkeypatch.chdir(tmp_path)
            return tmp_path

        def test_child_sees_the_setup(prepared, tmp_path, capsys, monkeypatch, request):
            assert tmp_path == prepared
            assert (tmp_path / "data.txt").read_text() == "from the parent"
            assert os.environ["PREPARED_BY"] == "fixture"
            assert os.getcwd() == str(tmp_path)
            print("to capsys")
            assert capsys.readouterr().out == "to capsys\\n"
            monkeypatch.setattr(os, "sep", "!")
            assert os.sep == "!"
            assert request.node.name == "test_child_sees_the_setup"
        """,
    "test_a_test_the_child_cannot_collect_fails_saying_so": """
        import os
        import pytest

        @pytest.mark.parametrize("value", [1], ids=[f"pid{os.getpid()}"])
        def test_named_after_its_process(value):
            pass

        def test_after():
            pass
        """,
    "test_values_that_cannot_be_loaded_in_the_child_fail_their_test": """
        import pytest

        def refuse():
            raise RuntimeError("not in this process")

        class OnlyHere:
            def __reduce__(self):
                return (refuse, ())

        @pytest.fixture
        def stuck():
            return OnlyHere()

        def test_uses_it(stuck):
            pass
        """,
    "test_what_a_setup_sets_that_cannot_travel_fails_the_test_naming_it": """
        import threading

        def setup_module(module):
            global LOCK
            LOCK = threading.Lock()

        def test_locks():
            assert not LOCK.locked()

        def test_plain():
            pass
        """,
}


_XUNIT = """
import os
import unittest

LOG = os.path.join(os.path.dirname(__file__), "xunit-log")
RESOURCE = None

def log(what):
    with open(LOG, "a") as stream:
        stream.write(f"{what} {os.getpid()} {os.getppid()}\\n")

def setup_module(module):
    global RESOURCE
    log("setup_module")
    RESOURCE = "made by setup_module"

def teardown_module(module):
    log("teardown_module")

def setup_function(function):
    log("setup_function")

def teardown_function(function):
    log("teardown_function")

def test_a():
    log("test_a")
    assert RESOURCE == "made by setup_module"

class TestClass:
    @classmethod
    def setup_class(cls):
        log("setup_class")
        cls.shared = ["made by setup_class"]

    @classmethod
    def teardown_class(cls):
        log("teardown_class")

    def setup_method(self, method):
        log("setup_method")
        self.own = "made by setup_method"

    def teardown_method(self, method):
        log("teardown_method")

    def test_b(self):
        log("test_b")
        assert (RESOURCE, self.shared, self.own) == (
            "made by setup_module", ["made by setup_class"], "made by setup_method"
        )

class TestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        log("setUpClass")
        cls.connection = "made by setUpClass"

    @classmethod
    def tearDownClass(cls):
        log("tearDownClass")

    def setUp(self):
        log("setUp")

    def test_c(self):
        log("test_c")
        self.assertEqual(self.connection, "made by setUpClass")
"""

#: Each setup and teardown once, as pytest runs them without the plugin.
_XUNIT_ORDER = [
    "setup_module",
    "setup_function",
    "test_a",
    "teardown_function",
    "setup_class",
    "setup_method",
    "test_b",
    "teardown_method",
    "teardown_class",
    "setUpClass",
    "setUp",
    "test_c",
    "tearDownClass",
    "teardown_module",
]

_GLOBALS = """
import pytest

SEEN = []

@pytest.fixture(scope="module")
def remember():
    SEEN.append("set up in pytest's process")

def test_globals(remember):
    print("globals:", SEEN)
"""

#: An installed plugin (outside the runs' rootdir: not the project's) whose fixture
#: cannot be made in a child session.
_PICKY_PLUGIN = (
    "import sys\n"
    "import pytest\n\n"
    "@pytest.fixture\n"
    "def picky():\n"
    "    if '--capture=no' in sys.argv:  # the plugin's child sessions run with it\n"
    "        raise RuntimeError('picky cannot be made in a child')\n"
)

#: A thread in pytest's process from its configuration on, in every session.
_THREAD_CONFTEST = """
import threading
import time

def pytest_configure():
    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
"""

#: The suites of each mode's run: what is particular to the remote modes in both; module
#: globals and xunit setups in fork and forkserver (forkserver standing for both remote
#: modes, as their children run the test alike); a spawned child's start-up in spawn.
_REMOTE_SUITES = {
    **_SHARED_SUITES,
    "test_a_fixture_made_in_the_child_that_fails_there_fails_the_test": """
        def test_uses_picky(picky):
            pass
        """,
    "test_no_warning_about_forking_a_threaded_pytest": """
        def test_beside_a_thread():
            pass
        """,
}
_FORK_AND_FORKSERVER_SUITES = {
    "test_the_module_is_imported_afresh_in_the_child": _GLOBALS,
    "test_xunit_and_unittest_setup_run_once_in_pytests_process": _XUNIT,
}
_SUITES = {
    "fork": {
        "test_fork_runs_the_tests_whose_fixtures_cannot_travel": _UNPICKLABLE,
        **_FORK_AND_FORKSERVER_SUITES,
    },
    "forkserver": {**_REMOTE_SUITES, **_FORK_AND_FORKSERVER_SUITES, "conftest": _THREAD_CONFTEST},
    "spawn": {
        **_REMOTE_SUITES,
        "conftest": _THREAD_CONFTEST + 'print("printed while the session starts")\n',
        "test_a_spawned_child_that_crashes_in_the_test_shows_no_start_up_output": """
            import os

            def test_crashes():
                print("printed by the test")
                os._exit(3)
            """,
    },
}


@dataclass(frozen=True)
class ModeRun:
    """One run of a mode's suites (_SUITES)."""

    result: pytest.RunResult
    path: Path
    mode: str

    def outcomes(self, module: str) -> Dict[str, int]:
        return outcomes_in(self.result, f"{module}.py")

    def section(self, name: str) -> pytest.LineMatcher:
        return pytest.LineMatcher(report_sections(self.result.outlines)[name])


def _mode_run(factory: pytest.TempPathFactory, mode: str) -> ModeRun:
    """The run of ``_SUITES[mode]``, started once per session (``run_once``)."""

    def start(path: Path) -> pytest.RunResult:
        if mode == "fork":
            return run_with_private_tmp(path, _SUITES[mode], EVERY_ISOLATION_FLAG[mode], "-rA")
        plugins = factory.mktemp("installed")
        (plugins / "picky_plugin.py").write_text(_PICKY_PLUGIN)
        return run_with_private_tmp(
            path,
            _SUITES[mode],
            EVERY_ISOLATION_FLAG[mode],
            "-rA",
            "-p",
            "picky_plugin",
            "-W",
            "error::DeprecationWarning",
            environment={"PYTHONPATH": str(plugins)},
        )

    result, path = run_once(factory, f"remote-{mode}", start)
    return ModeRun(result, path, mode)


@pytest.fixture(scope="module", params=REMOTE_FLAGS, ids=["forkserver", "spawn"])
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ModeRun:
    """The forkserver and spawn runs: every check of a remote mode."""
    return _mode_run(tmp_path_factory, str(request.param).partition("=")[2])


@pytest.fixture(scope="module", params=sorted(ISOLATION_FLAGS))
def isolated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ModeRun:
    """The fork and forkserver runs, for checks that compare a fork with a child that is not one."""
    return _mode_run(tmp_path_factory, str(request.param))


@pytest.fixture(scope="module")
def forked(tmp_path_factory: pytest.TempPathFactory) -> ModeRun:
    """The fork run: the controls of the remote modes' checks."""
    return _mode_run(tmp_path_factory, "fork")


@pytest.fixture(scope="module")
def spawned(tmp_path_factory: pytest.TempPathFactory) -> ModeRun:
    """The spawn run, for what is particular to a spawned child's start."""
    return _mode_run(tmp_path_factory, "spawn")


def test_fork_runs_the_tests_whose_fixtures_cannot_travel(forked: ModeRun) -> None:
    """The same tests pass under fork, which shares the parent's objects."""
    assert forked.outcomes("test_fork_runs_the_tests_whose_fixtures_cannot_travel") == {"passed": 3}


def test_the_module_is_imported_afresh_in_the_child(isolated: ModeRun) -> None:
    """A fork sees what the parent did to module globals; spawn and forkserver children do not."""
    assert isolated.outcomes("test_the_module_is_imported_afresh_in_the_child") == {"passed": 1}
    fresh = isolated.mode != "fork"
    expected = "globals: []" if fresh else 'globals: ["set up in pytest\'s process"]'
    assert expected in report_sections(isolated.result.outlines)["test_globals"]


def test_xunit_and_unittest_setup_run_once_in_pytests_process(isolated: ModeRun) -> None:
    """setup_module, setup_class, setup_function, setup_method and setUpClass run once, in
    pytest's process, and are torn down there; what they set reaches the test's child.
    The run leaves nothing in its TMPDIR (every test of the run counts)."""
    assert isolated.outcomes("test_xunit_and_unittest_setup_run_once_in_pytests_process") == {"passed": 3}
    lines = [line.split() for line in (isolated.path / "xunit-log").read_text().splitlines()]
    assert [what for what, _, _ in lines] == _XUNIT_ORDER
    # Every process the run started, and the forkserver (the tests' parent); not this one,
    # nor the warm process pytest was forked from (setup_module's parent), which may be
    # another xdist worker's: the worker that started the shared run.
    harness = {os.getpid(), int(lines[0][2])}
    assert gone([int(pid) for _, *pids in lines for pid in pids if int(pid) not in harness])
    assert left_in_tmp(isolated.path) == []


def test_a_fixture_made_in_the_child_that_fails_there_fails_the_test(shared: ModeRun) -> None:
    """Installed plugins' fixtures are made again in the child; a failure there is reported."""
    assert shared.outcomes("test_a_fixture_made_in_the_child_that_fails_there_fails_the_test") == {
        "failed": 1
    }
    shared.section("test_uses_picky").fnmatch_lines(
        [
            f"The {shared.mode} child process could not set the test up:",
            "*RuntimeError: picky cannot be made in a child",
        ]
    )


def test_no_warning_about_forking_a_threaded_pytest(shared: ModeRun) -> None:
    """The children do not come from pytest's process, so its threads never meet a fork
    (the run has a thread from its configuration on, and DeprecationWarning an error)."""
    assert shared.outcomes("test_no_warning_about_forking_a_threaded_pytest") == {"passed": 1}
    shared.result.stdout.no_fnmatch_line("*fork*may lead to deadlocks*")


def test_a_spawned_child_that_crashes_in_the_test_shows_no_start_up_output(spawned: ModeRun) -> None:
    """A child that reached the test and crashed there: the failure has the test's output, not the
    child session's own header or what it printed while starting."""
    module = "test_a_spawned_child_that_crashes_in_the_test_shows_no_start_up_output"
    assert spawned.outcomes(module) == {"failed": 1}
    section = report_sections(spawned.result.outlines)["test_crashes"]
    pytest.LineMatcher(section).fnmatch_lines(
        [
            "The isolated child process running this test exited with status 3 before reporting a result.",
            "*- Captured stdout call -*",
            "printed by the test",
        ]
    )
    pytest.LineMatcher(section).no_fnmatch_line("Its output before it reached the test:")
    pytest.LineMatcher(section).no_fnmatch_line("*printed while the session starts*")
    assert spawned.result.stdout.str().count("test session starts") == 1


def test_a_spawned_child_that_dies_before_the_test_shows_its_start_up_output(
    pytester: pytest.Pytester, run: Runner
) -> None:
    """A child that died while starting (here: importing the test module) shows what it printed.

    A run of its own: what the child printed includes its session's header, which the
    shared spawn run checks that no other child shows.
    """
    pytester.makepyfile(
        """
        import os, sys

        if os.environ.get("PYTEST_MEMRAY_ISOLATE_CHILD"):
            print("printed while the child starts")
            sys.stdout.flush()
            os._exit(4)

        def test_never_reached():
            pass
        """
    )
    result = run(EVERY_ISOLATION_FLAG["spawn"])
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "The isolated child process running this test exited with status 4 before reporting a result.",
            "*",
            "Its output before it reached the test:",
            "*printed while the child starts",
        ]
    )


def test_unpicklable_fixture_values_fail_their_test_naming_the_fixture(shared: ModeRun) -> None:
    """An open socket, a closure over a lock: the test fails saying which fixture and why."""
    mode = shared.mode
    assert shared.outcomes("test_unpicklable_fixture_values_fail_their_test_naming_the_fixture") == {
        "passed": 1,
        "failed": 2,
    }
    suggestion = (
        f"Only values that pickle (with cloudpickle) can cross to a {mode} child. Run this test with"
        ' fork isolation instead: @pytest.mark.memray_isolate("fork"), or --memray-isolate=fork.'
    )
    shared.section("test_socket").fnmatch_lines(
        [
            f"*::test_socket: fixture 'connection' cannot be sent to the {mode} child process"
            " (TypeError: cannot pickle 'socket' object).",
            suggestion,
        ]
    )
    shared.section("test_closure_over_a_lock").fnmatch_lines(
        [
            f"*::test_closure_over_a_lock: fixture 'guarded' cannot be sent to the {mode} child process"
            " (TypeError: cannot pickle '_thread.lock' object).",
            suggestion,
        ]
    )
    shared.result.stdout.no_fnmatch_line("*During handling of the above exception*")


def test_closures_and_shared_objects_travel_by_value(shared: ModeRun) -> None:
    """cloudpickle sends a lambda and its captured values; objects two fixtures share stay shared."""
    assert shared.outcomes("test_closures_and_shared_objects_travel_by_value") == {"passed": 2}


def test_fixtures_made_in_the_child_and_state_the_parent_set_up(shared: ModeRun) -> None:
    """tmp_path is the parent's directory; environment and working directory follow the parent;
    capsys, monkeypatch and request are the child's own and work as usual."""
    assert shared.outcomes("test_fixtures_made_in_the_child_and_state_the_parent_set_up") == {"passed": 1}


def test_a_test_the_child_cannot_collect_fails_saying_so(shared: ModeRun) -> None:
    """A test whose id differs from one process to the next cannot be found again by the child."""
    assert shared.outcomes("test_a_test_the_child_cannot_collect_fails_saying_so") == {
        "passed": 1,
        "failed": 1,
    }
    shared.result.stdout.fnmatch_lines(
        [
            f"The {shared.mode} child process could not collect"
            " test_a_test_the_child_cannot_collect*::*[[]pid*[]]."
        ]
    )


def test_values_that_cannot_be_loaded_in_the_child_fail_their_test(shared: ModeRun) -> None:
    """A value that pickles but refuses to unpickle: the child's traceback is the failure."""
    assert shared.outcomes("test_values_that_cannot_be_loaded_in_the_child_fail_their_test") == {"failed": 1}
    shared.section("test_uses_it").fnmatch_lines(
        [
            f"The {shared.mode} child process could not load the fixture values sent to it:",
            "*RuntimeError: not in this process",
        ]
    )


def test_what_a_setup_sets_that_cannot_travel_fails_the_test_naming_it(shared: ModeRun) -> None:
    """A value setup_module set that does not pickle fails the module's tests, saying which
    name and which setup, and how to run them; the run goes on."""
    mode = shared.mode
    assert shared.outcomes("test_what_a_setup_sets_that_cannot_travel_fails_the_test_naming_it") == {
        "failed": 2
    }
    shared.section("test_locks").fnmatch_lines(
        [
            f"*::test_locks: 'LOCK', set by setup_module, cannot be sent to the {mode} child process"
            " (TypeError: cannot pickle '_thread.lock' object).",
            f"Only values that pickle (with cloudpickle) can cross to a {mode} child.*",
        ]
    )
    shared.result.stdout.no_fnmatch_line("*INTERNALERROR*")
