"""End to end: the plugin alongside the pytest plugins users already run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

from conftest import (
    MODE_FLAGS,
    Runner,
    SharedRun,
    arena_table_growth,
    outcomes_in,
    run_once,
    run_suites,
    without_plugins,
)


def _figures(report: Path) -> Dict[str, Tuple[int, int]]:
    document = json.loads(report.read_text())
    return {test["nodeid"]: (test["peak_memory"], test["total_allocations"]) for test in document["tests"]}


def _order(report: Path) -> List[str]:
    return [test["nodeid"] for test in json.loads(report.read_text())["tests"]]


def test_figures_do_not_depend_on_pytest_randomlys_order(pytester: pytest.Pytester) -> None:
    """Under isolation, two random orders (pytest-randomly) give the same figures test by test."""
    pytester.makepyfile(
        """
        import functools
        import pytest

        @functools.lru_cache(maxsize=None)
        def table():
            return [bytes(1000) for _ in range(2000)]

        @pytest.fixture(params=[0, 50_000, 300_000])
        def churn(request):
            junk = [str(n) * 3 for n in range(request.param)]
            yield junk[::9]

        def test_cache():
            assert len(table()) == 2000

        def test_small_objects(churn):
            words = [str(n) * 3 for n in range(20_000)]
            assert words

        @pytest.mark.parametrize("mib", [1, 2, 4])
        def test_buffers(mib):
            data = bytearray(mib * 1024 * 1024)
            assert data is not None
        """
    )
    runs = []
    for seed in ("1", "2"):
        report = pytester.path / f"seed-{seed}.json"
        result = pytester.runpytest_subprocess(
            "-p",
            "no:cacheprovider",
            *without_plugins(["randomly"]),
            "--memray-isolate",
            "-p",
            "randomly",
            f"--randomly-seed={seed}",
            f"--memray-json={report}",
        )
        result.assert_outcomes(passed=7)
        runs.append(report)
    assert _order(runs[0]) != _order(runs[1]), "pytest-randomly did not shuffle"
    first, second = _figures(runs[0]), _figures(runs[1])
    assert sorted(first) == sorted(second)
    for nodeid in first:
        (peak_a, count_a), (peak_b, count_b) = sorted([first[nodeid], second[nodeid]])
        assert (peak_a, count_a) == (peak_b, count_b) or arena_table_growth(peak_b - peak_a), nodeid


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_coverage_of_code_run_in_children_is_kept(
    pytester: pytest.Pytester, run: Runner, workers: List[str], every_isolated_flag: str
) -> None:
    """pytest-cov sees the lines an isolated test ran: the child saves coverage.py's data first."""
    pytester.makepyfile(
        covered="""
        def sign(number):
            if number > 0:
                return "positive"
            if number < 0:
                return "negative"
            return "zero"
        """,
        test_covered="""
        from covered import sign

        def test_positive():
            assert sign(3) == "positive"

        def test_negative():
            assert sign(-3) == "negative"
        """,
    )
    result = run(
        every_isolated_flag,
        "--cov=covered",
        "--cov-report=term-missing",
        *workers,
        plugins=["pytest_cov", "xdist"],
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["covered.py * 6 * 1 * 83% * 6"])


def test_pytest_randomly_gives_a_test_the_same_numbers_in_every_mode(pytester: pytest.Pytester) -> None:
    """A test draws the same random numbers in process and in each kind of child.

    (A forked child's ``random`` module reseeds itself unless the plugin keeps its state.)
    """
    pytester.makepyfile(
        """
        import random

        def test_draws():
            print("DRAWN", random.random())
        """
    )
    drawn: Set[str] = set()
    for flag in MODE_FLAGS.values():
        result = pytester.runpytest_subprocess(
            "-p",
            "no:cacheprovider",
            *without_plugins(["randomly"]),
            "-p",
            "randomly",
            "--randomly-seed=7",
            flag,
            "-rP",
        )
        result.assert_outcomes(passed=1)
        drawn |= {line for line in result.outlines if line.startswith("DRAWN ")}
    assert len(drawn) == 1, drawn


# -- rerunfailures, doctests and coroutine tests: one run per mode ------------------------


def _coroutine_module(marker: str) -> str:
    """A module whose coroutine test is run by pytest-asyncio or anyio's plugin (``marker``)."""
    backend = '@pytest.fixture\ndef anyio_backend():\n    return "asyncio"\n\n' if marker == "anyio" else ""
    return (
        "import asyncio\nimport pytest\n\n"
        + backend
        + f"@pytest.mark.{marker}\n"
        + "async def test_awaits():\n"
        + "    await asyncio.sleep(0)\n"
        + "    data = bytearray(3 * 1024 * 1024)\n"
        + "    await asyncio.sleep(0)\n"
        + "    assert data is not None\n"
    )


_RERUN_AND_DOCTEST_SUITES = {
    "test_reruns_of_isolated_tests": """
        import os

        COUNTER = os.path.join(os.path.dirname(__file__), "attempts")

        def test_flaky():
            with open(COUNTER, "a") as stream:
                stream.write("x")
            data = bytearray(2 * 1024 * 1024)
            assert os.path.getsize(COUNTER) >= 2
        """,
    "textmod": '''
        def buffer(mib):
            """
            >>> len(buffer(2))
            2097152
            """
            return bytearray(mib * 1024 * 1024)
        ''',
    "test_asyncio_marker": _coroutine_module("asyncio"),
    "test_anyio_marker": _coroutine_module("anyio"),
}


@pytest.fixture(scope="module", params=sorted(MODE_FLAGS))
def reruns_and_doctests(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> SharedRun:
    """_RERUN_AND_DOCTEST_SUITES run once per mode with pytest-rerunfailures (--reruns=2),
    --doctest-modules, pytest-asyncio and anyio's plugin: they do not meet, as only the
    flaky test fails (so only it is rerun), only textmod has a doctest, and only the two
    coroutine modules have async tests."""
    flags = [
        MODE_FLAGS[str(request.param)],
        "-rA",
        "--reruns=2",
        "--doctest-modules",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
    ]
    return run_once(
        tmp_path_factory,
        f"plugins-{request.param}",
        lambda path: run_suites(
            path, _RERUN_AND_DOCTEST_SUITES, *flags, keep=["rerunfailures", "asyncio", "anyio"]
        ),
    )


def test_reruns_of_isolated_tests(reruns_and_doctests: SharedRun) -> None:
    """pytest-rerunfailures reruns a failed tracked test; the rerun is tracked and reported."""
    result = reruns_and_doctests.result
    module = "test_reruns_of_isolated_tests.py"
    assert outcomes_in(result, module) == {"passed": 1}
    result.stdout.fnmatch_lines([f"{module} R. *"])  # one rerun, then a pass
    heading = result.outlines.index(f"Allocation results for {module}::test_flaky at the high watermark")
    assert result.outlines[heading + 1 : heading + 3] == ["", "\t 📦 Total memory allocated: 2.0MiB"]


def test_doctests_are_tracked(reruns_and_doctests: SharedRun) -> None:
    """Doctests collected with --doctest-modules are tracked around their whole run."""
    result = reruns_and_doctests.result
    assert outcomes_in(result, "textmod.py") == {"passed": 1}
    result.stdout.fnmatch_lines(["Allocation results for textmod.py::textmod.buffer at the high watermark"])


def test_async_tests_are_tracked(reruns_and_doctests: SharedRun) -> None:
    """Coroutine tests run by pytest-asyncio or anyio's plugin are tracked like plain ones.

    One module per plugin, both in one run with both plugins loaded; each module's test
    gets its own block in the report.
    """
    result = reruns_and_doctests.result
    for marker in ("asyncio", "anyio"):
        assert outcomes_in(result, f"test_{marker}_marker.py") == {"passed": 1}
        heading = result.outlines.index(
            f"Allocation results for test_{marker}_marker.py::test_awaits at the high watermark"
        )
        assert result.outlines[heading + 1 : heading + 3] == ["", "\t 📦 Total memory allocated: 3.0MiB"]
