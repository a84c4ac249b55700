"""End to end: limit_allocations counts the allocations a test's call makes."""

from __future__ import annotations

import json

import pytest

from conftest import Runner

_SUITE = """
import pytest

def make_buffers():
    buffers = []
    for _ in range(500):
        buffers.append(bytearray(1000))
    return buffers

@pytest.mark.limit_allocations(100)
def test_too_many():
    assert make_buffers()

@pytest.mark.limit_allocations(10_000)
def test_within():
    assert make_buffers()

@pytest.mark.limit_memory("64 MB")
@pytest.mark.limit_allocations(100)
def test_with_a_memory_limit_too():
    assert make_buffers()

@pytest.mark.limit_memory("100 KB")
@pytest.mark.limit_allocations(10_000)
def test_memory_fails_first():
    assert make_buffers()
"""


def test_too_many_allocations_fail_with_the_places_making_them(
    pytester: pytest.Pytester, run: Runner, mode_flag: str
) -> None:
    """Over the count: the message gives both numbers, the section the busiest places."""
    pytester.makepyfile(_SUITE)
    result = run(mode_flag, "--memray-json=out.json", "-rf")
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*_ test_too_many _*",
            "Test was limited to 100 allocations but made 5??",
            "*- memray-allocations -*",
            "Places making most allocations:",
            "    - 5?? allocations at make_buffers:*test_too_many_allocations_fail_with_the_places_making_them.py:6",
        ]
    )
    result.stdout.fnmatch_lines(["MEMORY PROBLEMS *::test_with_a_memory_limit_too*"])
    result.stdout.fnmatch_lines(
        ["*_ test_memory_fails_first _*", "Test was limited to 100.0KiB but allocated *"]
    )
    tests = {
        test["nodeid"].split("::")[1]: test
        for test in json.loads((pytester.path / "out.json").read_text())["tests"]
    }
    assert tests["test_too_many"]["limit"] == {"kind": "limit_allocations", "count": 100, "source": "marker"}


def test_python_allocator_tracing_counts_each_object(
    pytester: pytest.Pytester, run: Runner, mode_flag: str
) -> None:
    """Without --trace-python-allocators small objects come in arenas; with it each one counts."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.limit_allocations(1000)
        def test_small_objects():
            words = [str(n) * 3 for n in range(20_000)]
            assert words
        """
    )
    run(mode_flag).assert_outcomes(passed=1)
    traced = run(mode_flag, "--trace-python-allocators")
    traced.assert_outcomes(failed=1)
    traced.stdout.fnmatch_lines(["Test was limited to 1000 allocations but made *"])
