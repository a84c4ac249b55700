"""End to end: limit_leaks with warm-ups and repetitions tells real leaks from warm-up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import Runner, without_plugins

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

#: The ways to run a repeated test: isolated, and in pytest's process when asked for by name.
_REPEATED_MODES = {"fork": ["--memray-isolate"], "in-process": ["--memray", "--memray-isolate=off"]}


def _tests(path: Path) -> Dict[str, Dict[str, Any]]:
    document: Dict[str, Any] = json.loads(path.read_text())
    return {test["nodeid"].split("::")[-1]: test for test in document["tests"]}


@pytest.mark.parametrize("mode", sorted(_REPEATED_MODES))
def test_a_warm_cache_passes_and_a_growing_list_fails(
    pytester: pytest.Pytester, run: Runner, mode: str
) -> None:
    """After a warm-up, a cache keeps nothing new and passes; a list that grows on every call fails,
    with what it leaked on each repetition. A plain limit_leaks still flags the cache."""
    pytester.makepyfile(_CACHE_AND_LEAK)
    result = run(*_REPEATED_MODES[mode], "--memray-json=out.json", "-rf")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_appends_to_a_module_list _*",
            "Test was allowed to leak 1.0KiB per location on each repetition but 1 location leaked that much"
            " or more on every one of its 3 tracked repetitions (after 1 warm-up call)",
            "*- memray-leaked-memory -*",
            "Locations whose leaks grew on every repetition (leaked on repetitions 1, 2, 3):",
            "    - 4.?KiB, 4.?KiB, 4.?KiB leaked here:",
            "        keep:*test_a_warm_cache_passes_and_a_growing_list_fails.py:15",
            "        test_appends_to_a_module_list:*.py:23",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*_ test_fills_a_cache_once _*", "Test was allowed to leak 1.0KiB per location but*"]
    )
    tests = _tests(pytester.path / "out.json")
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


@pytest.mark.parametrize("flags", [[], ["--memray"]], ids=["markers only", "--memray"])
def test_repeated_tests_are_isolated_unless_asked_otherwise(
    pytester: pytest.Pytester, run: Runner, flags: List[str]
) -> None:
    """Without --memray-isolate a repeated test still runs in a child; a plain one stays in process."""
    pytester.makepyfile(
        """
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
    )
    result = run(*flags, "--memray-json=out.json")
    result.assert_outcomes(passed=2)
    tests = _tests(pytester.path / "out.json")
    assert tests["test_repeated"]["mode"] == "fork"
    assert tests["test_plain"]["mode"] == "in-process"


def test_fixtures_are_set_up_once_and_each_call_gets_the_same_values(
    pytester: pytest.Pytester, run: Runner, mode_flag: str
) -> None:
    """warmups + repeats calls of the test function, one fixture setup, the same argument every time."""
    pytester.makepyfile(
        """
        import os
        import pytest

        HERE = os.path.dirname(__file__)

        @pytest.fixture
        def value():
            with open(os.path.join(HERE, "setups.txt"), "a") as setups:
                setups.write("set up\\n")  # a file: in every mode the count is pytest's
            return [1, 2, 3]

        @pytest.mark.limit_leaks("1 MB", warmups=2, repeats=3)
        def test_called_five_times(value):
            value.append(len(value))  # the same list every call: it grows
            with open(os.path.join(HERE, "calls.txt"), "a") as calls:
                calls.write(f"{len(value)}\\n")
        """
    )
    run(mode_flag).assert_outcomes(passed=1)
    assert (pytester.path / "setups.txt").read_text().splitlines() == ["set up"]
    lines = (pytester.path / "calls.txt").read_text().splitlines()
    assert lines == ["4", "5", "6", "7", "8"]


def test_a_test_that_cannot_be_repeated_says_so(
    pytester: pytest.Pytester, run: Runner, mode_flag: str
) -> None:
    """A test that passes once and fails when called again names the call that failed and why."""
    pytester.makepyfile(
        """
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
        """
    )
    result = run(mode_flag, "-rf")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_consumes_its_fixture _*",
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
    result.stdout.fnmatch_lines(
        ["*_ test_fails_on_its_own _*", ">       assert 1 == 2", "E       assert 1 == 2"]
    )
    result.stdout.no_fnmatch_line("*test_fails_on_its_own*cannot be repeated*")


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


@pytest.mark.parametrize("where", ["command line", "ini"])
def test_the_switch_repeats_every_limit_leaks_test(
    pytester: pytest.Pytester, run: Runner, where: str
) -> None:
    """--memray-repeat-leaks (or the ini key, which =off overrides) repeats plain limit_leaks tests;
    warmups=0, repeats=1 opts out."""
    pytester.makepyfile(_SWITCHABLE)
    run("--memray", "-rf").assert_outcomes(failed=2)
    if where == "ini":
        pytester.makeini("[pytest]\nmemray_repeat_leaks = 1,2\n")
        result = run("--memray", "--memray-json=out.json")
        run("--memray", "--memray-repeat-leaks=off").assert_outcomes(failed=2)
    else:
        result = run("--memray", "--memray-repeat-leaks", "--memray-json=out.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*_ test_cache_opted_out _*", "Test was allowed to leak 1.0KiB per location but*"]
    )
    tests = _tests(pytester.path / "out.json")
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
    limit = _tests(pytester.path / "out.json")["test_own_repeats"]["limit"]
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


def test_coroutine_tests_are_repeated_too(pytester: pytest.Pytester, mode_flag: str) -> None:
    """An async test (pytest-asyncio) is awaited once per call, each tracked repetition alone."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        """
        import asyncio
        import pytest

        LEAKED = []

        @pytest.mark.asyncio
        @pytest.mark.limit_leaks("1 KB", warmups=1, repeats=2)
        async def test_awaits_and_leaks():
            await asyncio.sleep(0)
            LEAKED.append(bytearray(4096))
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *without_plugins(["asyncio"]), mode_flag)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "Test was allowed to leak 1.0KiB per location on each repetition but 1 location leaked that much"
            " or more on every one of its 2 tracked repetitions (after 1 warm-up call)",
            "*",
            "    - 4.?KiB, 4.?KiB leaked here:",
            "        test_awaits_and_leaks:*.py:10",
        ]
    )
