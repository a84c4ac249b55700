"""End to end: limit_leaks with warm-ups and repetitions tells real leaks from warm-up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

from conftest import MODE_FLAGS, Runner, SharedRun, outcomes_in, report_sections, run_once, run_suites

_CACHE_AND_LEAK = """
import functools
import pytest

LEAKED = []

@functools.lru_cache(maxsize=None)
def squares(n):
    return [bytearray(64) for _ in range(n)]

@functools.lru_cache(maxsize=None)
def cubes(n):
    return [bytearray(64) for _ in range(n)]

def keep(size):
    LEAKED.append(bytearray(size))

@pytest.mark.limit_leaks("1 KB", warmups=1, repeats=3)
def test_fills_a_cache():
    assert len(squares(500)) == 500

@pytest.mark.limit_leaks("1 KB", warmups=1, repeats=3)
def test_appends_to_a_module_list():
    keep(4096)

@pytest.mark.limit_leaks("1 KB")
def test_fills_a_cache_once():
    assert len(cubes(500)) == 500
"""

_ISOLATED_UNLESS_ASKED = """
import os
import pytest

PYTEST_PID = os.getpid()

@pytest.mark.limit_leaks("1 MB", repeats=2)
def test_repeated():
    assert os.getpid() != PYTEST_PID

@pytest.mark.limit_leaks("1 MB")
def test_plain():
    assert os.getpid() == PYTEST_PID
"""

_SWITCHABLE = """
import functools
import pytest

@functools.lru_cache(maxsize=None)
def table():
    return [bytearray(64) for _ in range(500)]

@pytest.mark.limit_leaks("1 KB")
def test_cache():
    assert table()

@functools.lru_cache(maxsize=None)
def other_table():
    return [bytearray(64) for _ in range(500)]

@pytest.mark.limit_leaks("1 KB", warmups=0, repeats=1)
def test_cache_opted_out():
    assert other_table()
"""


def _tests(path: Path, module: str) -> Dict[str, Dict[str, Any]]:
    """The tests of ``module`` in the JSON report at ``path``, by name."""
    document: Dict[str, Any] = json.loads(path.read_text())
    prefix = f"{module}.py::"
    return {
        test["nodeid"][len(prefix) :]: test for test in document["tests"] if test["nodeid"].startswith(prefix)
    }


# -- checks that share one run per tracking mode -----------------------------------------
#
# Each module is the suite of the test of the same name; one run per tracking mode (-rA,
# every test in the report; a JSON report) holds those of the tests that run in that mode,
# and each test checks its own module's outcomes, sections, JSON entries and files.

_FIXTURES_MODULE = "test_fixtures_are_set_up_once_and_each_call_gets_the_same_values"
_SHARED_SUITES = {
    _FIXTURES_MODULE: """
        import os
        import pytest

        HERE = os.path.dirname(__file__)

        @pytest.fixture
        def value():
            with open(os.path.join(HERE, "fixture-setups.txt"), "a") as setups:
                setups.write("set up\\n")  # a file: in every mode the count is pytest's
            return [1, 2, 3]

        @pytest.mark.limit_leaks("1 MB", warmups=2, repeats=3)
        def test_called_five_times(value):
            value.append(len(value))  # the same list every call: it grows
            with open(os.path.join(HERE, "fixture-calls.txt"), "a") as calls:
                calls.write(f"{len(value)}\\n")
        """,
    "test_a_test_that_cannot_be_repeated_says_so": """
        import pytest

        @pytest.fixture
        def numbers():
            return iter([1])

        @pytest.mark.limit_leaks("1 MB", warmups=1, repeats=3)
        def test_consumes_its_fixture(numbers):
            assert next(numbers) == 1

        @pytest.mark.limit_leaks("1 MB", warmups=0, repeats=2)
        def test_fails_on_its_own():
            assert 1 == 2
        """,
    "test_coroutine_tests_are_repeated_too": """
        import asyncio
        import pytest

        LEAKED = []

        @pytest.mark.asyncio
        @pytest.mark.limit_leaks("1 KB", warmups=1, repeats=2)
        async def test_awaits_and_leaks():
            await asyncio.sleep(0)
            LEAKED.append(bytearray(4096))
        """,
}

#: The modules only some modes' runs hold: the --memray case of the isolation test and the
#: switch test's run without the switch (in pytest's process), and the fork case of the
#: warm-cache test (isolated; its other case asks for pytest's process by name).
_SUITES_OF_MODE = {
    "in-process": {
        "test_repeated_tests_are_isolated_unless_asked_otherwise": _ISOLATED_UNLESS_ASKED,
        "test_the_switch_repeats_every_limit_leaks_test": _SWITCHABLE,
    },
    "fork": {"test_a_warm_cache_passes_and_a_growing_list_fails": _CACHE_AND_LEAK},
    "forkserver": {},
}


def _mode_run(factory: pytest.TempPathFactory, mode: str) -> SharedRun:
    """_SHARED_SUITES and the mode's own modules, run once in one tracking mode.

    Shared by the fixture, repetition-failure and coroutine tests (every mode), the
    isolation and switch tests (pytest's process) and the warm-cache test (fork). They can
    share it: every repeated test's marker says how it repeats, no option of the run
    repeats or moves a test, and pytest-asyncio (loaded for the coroutine test, with the
    ini setting it asks for) takes only tests marked asyncio.
    """

    def start(path: Path) -> pytest.RunResult:
        (path / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
        suites = {**_SHARED_SUITES, **_SUITES_OF_MODE[mode]}
        flags = [MODE_FLAGS[mode], "-rA", "--memray-json=out.json"]
        return run_suites(path, suites, *flags, keep=["asyncio"])

    return run_once(factory, f"repeated-{mode}", start)


@pytest.fixture(scope="module", params=sorted(MODE_FLAGS))
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    """_mode_run in each tracking mode: pytest's process, a fork and a forkserver child."""
    return _mode_run(tmp_path_factory, request.param)


def _own_run(
    factory: pytest.TempPathFactory, key: str, suites: Dict[str, str], *flags: str, ini: Optional[str] = None
) -> SharedRun:
    """``suites`` run once with ``flags`` (and a pytest.ini of ``ini``), in a directory of their own."""

    def start(path: Path) -> pytest.RunResult:
        if ini is not None:
            (path / "pytest.ini").write_text(ini)
        return run_suites(path, suites, *flags)

    return run_once(factory, key, start)


@pytest.mark.parametrize("mode", ["fork", "in-process"])
def test_a_warm_cache_passes_and_a_growing_list_fails(
    tmp_path_factory: pytest.TempPathFactory, mode: str
) -> None:
    """After a warm-up, a cache keeps nothing new and passes; a list that grows on every call fails,
    with what it leaked on each repetition. A plain limit_leaks still flags the cache.

    Isolated, the module is in fork mode's shared run (_mode_run); in pytest's process
    (--memray --memray-isolate=off, which moves every repeated test) it has a run of its own.
    """
    module = "test_a_warm_cache_passes_and_a_growing_list_fails"
    if mode == "fork":
        result, path = _mode_run(tmp_path_factory, "fork")
    else:
        flags = ["--memray", "--memray-isolate=off", "--memray-json=out.json", "-rA"]
        result, path = _own_run(tmp_path_factory, "repeated-isolate-off", {module: _CACHE_AND_LEAK}, *flags)
    assert outcomes_in(result, f"{module}.py") == {"passed": 1, "failed": 2}
    sections = report_sections(result.outlines)
    pytest.LineMatcher(sections["test_appends_to_a_module_list"]).fnmatch_lines(
        [
            "Test was allowed to leak 1.0KiB per location on each repetition but 1 location leaked that much"
            " or more on every one of its 3 tracked repetitions (after 1 warm-up call)",
            "*- memray-leaked-memory -*",
            "Locations whose leaks grew on every repetition (leaked on repetitions 1, 2, 3):",
            "    - 4.?KiB, 4.?KiB, 4.?KiB leaked here:",
            f"        keep:*{module}.py:15",
            "        test_appends_to_a_module_list:*.py:23",
        ]
    )
    pytest.LineMatcher(sections["test_fills_a_cache_once"]).fnmatch_lines(
        ["Test was allowed to leak 1.0KiB per location but*"]
    )
    tests = _tests(path / "out.json", module)
    assert {name: test["mode"] for name, test in tests.items()} == {
        "test_fills_a_cache": mode,
        "test_appends_to_a_module_list": mode,
        "test_fills_a_cache_once": "fork" if mode == "fork" else "in-process",
    }
    assert {name: test["outcome"] for name, test in tests.items()} == {
        "test_fills_a_cache": "passed",
        "test_appends_to_a_module_list": "failed",
        "test_fills_a_cache_once": "failed",
    }
    assert tests["test_fills_a_cache"]["leaks"] == []
    (leak,) = tests["test_appends_to_a_module_list"]["leaks"]
    assert leak["function"] == "keep"
    assert len(leak["growth"]) == 3
    assert all(4096 <= size < 4096 + 1024 for size in leak["growth"])
    limit = tests["test_appends_to_a_module_list"]["limit"]
    assert (limit["kind"], limit["warmups"], limit["repeats"]) == ("limit_leaks", 1, 3)
    plain = tests["test_fills_a_cache_once"]
    assert (plain["limit"]["warmups"], plain["limit"]["repeats"]) == (0, 1)
    assert all(len(entry["growth"]) == 1 for entry in plain["leaks"])


@pytest.mark.parametrize("with_memray", [False, True], ids=["markers only", "--memray"])
def test_repeated_tests_are_isolated_unless_asked_otherwise(
    tmp_path_factory: pytest.TempPathFactory, with_memray: bool
) -> None:
    """Without --memray-isolate a repeated test still runs in a child; a plain one stays in process.

    With --memray the module is in the in-process shared run (_mode_run); with no option
    (markers only) it has a run of its own.
    """
    module = "test_repeated_tests_are_isolated_unless_asked_otherwise"
    if with_memray:
        result, path = _mode_run(tmp_path_factory, "in-process")
    else:
        suites = {module: _ISOLATED_UNLESS_ASKED}
        result, path = _own_run(
            tmp_path_factory, "repeated-markers-only", suites, "--memray-json=out.json", "-rA"
        )
    assert outcomes_in(result, f"{module}.py") == {"passed": 2}
    tests = _tests(path / "out.json", module)
    assert tests["test_repeated"]["mode"] == "fork"
    assert tests["test_plain"]["mode"] == "in-process"


def test_fixtures_are_set_up_once_and_each_call_gets_the_same_values(shared: SharedRun) -> None:
    """warmups + repeats calls of the test function, one fixture setup, the same argument every time."""
    assert outcomes_in(shared.result, f"{_FIXTURES_MODULE}.py") == {"passed": 1}
    assert (shared.path / "fixture-setups.txt").read_text().splitlines() == ["set up"]
    lines = (shared.path / "fixture-calls.txt").read_text().splitlines()
    assert lines == ["4", "5", "6", "7", "8"]


def test_a_test_that_cannot_be_repeated_says_so(shared: SharedRun) -> None:
    """A test that passes once and fails when called again names the call that failed and why."""
    result = shared.result
    assert outcomes_in(result, "test_a_test_that_cannot_be_repeated_says_so.py") == {"failed": 2}
    sections = report_sections(result.outlines)
    pytest.LineMatcher(sections["test_consumes_its_fixture"]).fnmatch_lines(
        [
            "This test cannot be repeated: its 2nd call (tracked repetition 1 of 3) failed after its first"
            " call passed. A repeated limit_leaks calls the test function 4 times with the same fixture"
            " values; give its marker warmups=0, repeats=1 to track a single call.",
            "",
            "The 2nd call failed here:",
            '  File "*test_a_test_that_cannot_be_repeated_says_so.py", line 9, in test_consumes_its_fixture',
            "    assert next(numbers) == 1",
            "StopIteration",
        ]
    )
    own = pytest.LineMatcher(sections["test_fails_on_its_own"])
    own.fnmatch_lines([">       assert 1 == 2", "E       assert 1 == 2"])
    own.no_fnmatch_line("*cannot be repeated*")
    result.stdout.no_fnmatch_line("*test_fails_on_its_own*cannot be repeated*")


@pytest.mark.parametrize("where", ["command line", "ini"])
def test_the_switch_repeats_every_limit_leaks_test(
    tmp_path_factory: pytest.TempPathFactory, where: str
) -> None:
    """--memray-repeat-leaks (or the ini key, which =off overrides) repeats plain limit_leaks tests;
    warmups=0, repeats=1 opts out.

    Without the switch the module is in the in-process shared run (_mode_run); with the
    switch, which changes every plain limit_leaks test, each run is one of its own.
    """
    module = "test_the_switch_repeats_every_limit_leaks_test"
    suites = {module: _SWITCHABLE}
    unswitched, _ = _mode_run(tmp_path_factory, "in-process")
    assert outcomes_in(unswitched, f"{module}.py") == {"failed": 2}
    if where == "ini":
        ini = "[pytest]\nmemray_repeat_leaks = 1,2\n"
        result, path = _own_run(
            tmp_path_factory, "repeated-switch-ini", suites, "--memray", "--memray-json=out.json", ini=ini
        )
        switched_off, _ = _own_run(
            tmp_path_factory,
            "repeated-switch-ini-off",
            suites,
            "--memray",
            "--memray-repeat-leaks=off",
            ini=ini,
        )
        switched_off.assert_outcomes(failed=2)
    else:
        flags = ["--memray", "--memray-repeat-leaks", "--memray-json=out.json"]
        result, path = _own_run(tmp_path_factory, "repeated-switch-command-line", suites, *flags)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*_ test_cache_opted_out _*", "Test was allowed to leak 1.0KiB per location but*"]
    )
    tests = _tests(path / "out.json", module)
    repeats = 2 if where == "ini" else 3
    assert (tests["test_cache"]["limit"]["warmups"], tests["test_cache"]["limit"]["repeats"]) == (1, repeats)
    assert tests["test_cache"]["mode"] == "fork"
    assert tests["test_cache_opted_out"]["mode"] == "in-process"


def test_marker_keywords_win_over_the_switch(pytester: pytest.Pytester, run: Runner) -> None:
    """Each keyword the marker gives wins; the other comes from --memray-repeat-leaks."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.limit_leaks("1 MB", repeats=4)
        def test_own_repeats():
            pass
        """
    )
    run("--memray-repeat-leaks=2,5", "--memray-json=out.json").assert_outcomes(passed=1)
    limit = _tests(pytester.path / "out.json", "test_marker_keywords_win_over_the_switch")[
        "test_own_repeats"
    ]["limit"]
    assert (limit["warmups"], limit["repeats"]) == (2, 4)


def test_kept_files_hold_every_repetition(pytester: pytest.Pytester, run: Runner) -> None:
    """With --memray-bin-path each tracked repetition's capture is kept; the last has the plain name."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.limit_leaks("1 MB", warmups=1, repeats=3)
        def test_repeated():
            pass
        """
    )
    folder = pytester.path / "kept"
    for _ in range(2):  # a second run replaces the first run's files
        result = run(f"--memray-bin-path={folder}", "--memray-bin-prefix=p", "--memray")
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines([f"Created 3 binary dumps at {folder} with prefix p"])
    names = sorted(path.name for path in folder.iterdir())
    stem = "p-test_kept_files_hold_every_repetition.py-test_repeated"
    assert names == [f"{stem}-repeat1.bin", f"{stem}-repeat2.bin", f"{stem}.bin"]


def test_coroutine_tests_are_repeated_too(shared: SharedRun) -> None:
    """An async test (pytest-asyncio) is awaited once per call, each tracked repetition alone."""
    assert outcomes_in(shared.result, "test_coroutine_tests_are_repeated_too.py") == {"failed": 1}
    pytest.LineMatcher(report_sections(shared.result.outlines)["test_awaits_and_leaks"]).fnmatch_lines(
        [
            "Test was allowed to leak 1.0KiB per location on each repetition but 1 location leaked that much"
            " or more on every one of its 2 tracked repetitions (after 1 warm-up call)",
            "*",
            "    - 4.?KiB, 4.?KiB leaked here:",
            "        test_awaits_and_leaks:*.py:10",
        ]
    )
