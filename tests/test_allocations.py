"""End to end: limit_allocations counts the allocations a test's call makes."""

from __future__ import annotations

import json

import pytest

from conftest import MODE_FLAGS, SharedRun, outcomes_in, report_sections, run_once, run_suites

_TOO_MANY = """
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


_SMALL_OBJECTS = """
import pytest

@pytest.mark.limit_allocations(1000)
def test_small_objects():
    words = [str(n) * 3 for n in range(20_000)]
    assert words
"""

_TOO_MANY_MODULE = "test_too_many_allocations_fail_with_the_places_making_them"
_TRACING_MODULE = "test_python_allocator_tracing_counts_each_object"


def _runs(factory: pytest.TempPathFactory, mode_flag: str, traced: bool) -> SharedRun:
    """One run per mode of both tests' suites, with a JSON report; and one per mode of the
    small-object suite with --trace-python-allocators, which would change every count of
    the other suite. Each test reads its own module's outcomes and sections."""
    mode = next(mode for mode, flag in MODE_FLAGS.items() if flag == mode_flag)
    if traced:
        suites = {_TRACING_MODULE: _SMALL_OBJECTS}
        args = [mode_flag, "--trace-python-allocators", "-rA"]
    else:
        suites = {_TOO_MANY_MODULE: _TOO_MANY, _TRACING_MODULE: _SMALL_OBJECTS}
        args = [mode_flag, "--memray-json=out.json", "-rA"]
    key = f"allocations-{'traced' if traced else 'plain'}-{mode}"
    return run_once(factory, key, lambda path: run_suites(path, suites, *args))


def test_too_many_allocations_fail_with_the_places_making_them(
    tmp_path_factory: pytest.TempPathFactory, mode_flag: str
) -> None:
    """Over the count: the message gives both numbers, the section the busiest places."""
    shared = _runs(tmp_path_factory, mode_flag, traced=False)
    result = shared.result
    assert outcomes_in(result, f"{_TOO_MANY_MODULE}.py") == {"passed": 1, "failed": 3}
    sections = report_sections(result.outlines)
    pytest.LineMatcher(sections["test_too_many"]).fnmatch_lines(
        [
            "Test was limited to 100 allocations but made 5??",
            "*- memray-allocations -*",
            "Places making most allocations:",
            "    - 5?? allocations at make_buffers:*test_too_many_allocations_fail_with_the_places_making_them.py:6",
        ]
    )
    result.stdout.fnmatch_lines([f"MEMORY PROBLEMS {_TOO_MANY_MODULE}.py::test_with_a_memory_limit_too*"])
    pytest.LineMatcher(sections["test_memory_fails_first"]).fnmatch_lines(
        ["Test was limited to 100.0KiB but allocated *"]
    )
    tests = {
        test["nodeid"].split("::")[1]: test
        for test in json.loads((shared.path / "out.json").read_text())["tests"]
    }
    assert tests["test_too_many"]["limit"] == {"kind": "limit_allocations", "count": 100, "source": "marker"}


def test_python_allocator_tracing_counts_each_object(
    tmp_path_factory: pytest.TempPathFactory, mode_flag: str
) -> None:
    """Without --trace-python-allocators small objects come in arenas; with it each one counts."""
    plain = _runs(tmp_path_factory, mode_flag, traced=False).result
    assert outcomes_in(plain, f"{_TRACING_MODULE}.py") == {"passed": 1}
    traced = _runs(tmp_path_factory, mode_flag, traced=True).result
    assert outcomes_in(traced, f"{_TRACING_MODULE}.py") == {"failed": 1}
    pytest.LineMatcher(report_sections(traced.outlines)["test_small_objects"]).fnmatch_lines(
        ["Test was limited to 1000 allocations but made *"]
    )
