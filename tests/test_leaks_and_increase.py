"""End to end: limit_leaks, limit_leaked_objects, combined markers and --fail-on-increase."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import pytest

from conftest import (
    MODE_FLAGS,
    Runner,
    gone,
    outcomes_in,
    recorded_pids,
    report_sections,
    run_once,
    run_suites,
    sources_by_mode,
)

_LEAKY = """
import pytest

LEAKED = []

def leak(size):
    LEAKED.append(bytearray(size))

@pytest.mark.limit_leaks("1 MB")
def test_leaks():
    leak(2 * 1024 * 1024)

@pytest.mark.limit_leaks("1 MB")
def test_cleans_up():
    data = bytearray(2 * 1024 * 1024)
    del data

def ignore_leak_helper(stack):
    return not any(frame.function == "leak" for frame in stack.frames)

@pytest.mark.limit_leaks("1 MB", filter_fn=ignore_leak_helper)
def test_leak_filtered_out():
    leak(2 * 1024 * 1024)
"""


# -- checks that share one run per mode ----------------------------------------------
#
# Each module is the suite of the test of the same name; one run per mode (-rA, every
# test in the report) holds them all, and each test checks its own module's part.

_OLD_PYTHON = sys.version_info < (3, 13, 3)

_SHARED_SUITES = {
    "test_limit_leaks_fails_only_the_leaking_test": _LEAKY,
    "test_leaks_filter_receives_stack_objects": """
        import pytest
        from pytest_memray_isolate import Stack, StackFrame

        LEAKED = []
        SEEN = []

        def check(stack):
            assert isinstance(stack, Stack)
            assert all(isinstance(frame, StackFrame) for frame in stack.frames)
            assert any(frame.function == "test_leaks_past_the_filter" for frame in stack.frames)
            return True

        @pytest.mark.limit_leaks("1 MB", filter_fn=check)
        def test_leaks_past_the_filter():
            LEAKED.append(bytearray(2 * 1024 * 1024))
        """,
    "test_two_kinds_of_limit_are_an_error_naming_both": """
        import pytest

        pytestmark = pytest.mark.limit_memory("10 MB")

        @pytest.mark.limit_leaks("1 MB")
        def test_both():
            pass

        def test_module_limit_only():
            pass
        """,
}
if _OLD_PYTHON:
    _SHARED_SUITES["test_limit_leaked_objects_is_skipped_on_older_pythons"] = """
        import pytest

        @pytest.mark.limit_leaked_objects()
        def test_objects():
            pass

        def test_other():
            pass
        """


@pytest.fixture(scope="module", params=sorted(MODE_FLAGS))
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> pytest.RunResult:
    """_SHARED_SUITES run once per tracking mode, in a fresh interpreter."""
    flags = [MODE_FLAGS[request.param], "-rA", "--most-allocations=0"]
    result, _ = run_once(
        tmp_path_factory, f"leaks-{request.param}", lambda path: run_suites(path, _SHARED_SUITES, *flags)
    )
    return result


def test_limit_leaks_fails_only_the_leaking_test(shared: pytest.RunResult) -> None:
    """Memory still alive after the test, per location, over the limit: pytest-memray's message and section."""
    module = "test_limit_leaks_fails_only_the_leaking_test.py"
    assert outcomes_in(shared, module) == {"passed": 2, "failed": 1}
    pytest.LineMatcher(report_sections(shared.outlines)["test_leaks"]).fnmatch_lines(
        [
            "Test was allowed to leak 1.0MiB per location but at least one location leaked more",
            "*- memray-leaked-memory -*",
            "List of leaked allocations:",
            "    - 2.0MiB allocated here:",
        ]
    )
    shared.stdout.fnmatch_lines([f"\t\t- leak:*{module}:6 -> 2.0MiB"])
    shared.stdout.fnmatch_lines([f"MEMORY PROBLEMS {module}::test_leaks*"])


def test_leaks_filter_receives_stack_objects(shared: pytest.RunResult) -> None:
    """filter_fn is called with a Stack of StackFrames, the public types, in either mode."""
    assert outcomes_in(shared, "test_leaks_filter_receives_stack_objects.py") == {"failed": 1}
    pytest.LineMatcher(report_sections(shared.outlines)["test_leaks_past_the_filter"]).fnmatch_lines(
        ["Test was allowed to leak 1.0MiB per location but at least one location leaked more"]
    )


@pytest.mark.skipif(not _OLD_PYTHON, reason="object tracking is available here")
def test_limit_leaked_objects_is_skipped_on_older_pythons(shared: pytest.RunResult) -> None:
    """Before Python 3.13.3 a marked test is skipped with the reason; the session goes on."""
    module = "test_limit_leaked_objects_is_skipped_on_older_pythons.py"
    # pytest names where the skip was raised (the plugin), not the test: the run's one skip.
    assert outcomes_in(shared, module) == {"passed": 1}
    assert len([line for line in shared.outlines if line.startswith("SKIPPED ")]) == 1
    shared.stdout.fnmatch_lines(
        ["SKIPPED [[]1[]] *: limit_leaked_objects needs Python 3.13.3 or newer (this is Python *)"]
    )


def test_two_kinds_of_limit_are_an_error_naming_both(shared: pytest.RunResult) -> None:
    """A test with limit_memory and limit_leaks errors, saying which markers and where each came from."""
    assert outcomes_in(shared, "test_two_kinds_of_limit_are_an_error_naming_both.py") == {
        "passed": 1,
        "errors": 1,
    }
    shared.stdout.fnmatch_lines(
        [
            "Only one Memray marker can be applied to each test."
            " *::test_both: @pytest.mark.limit_memory('10 MB') (on module test_two_kinds_of_limit_are_an_error_naming_both.py)"
            " and @pytest.mark.limit_leaks('1 MB') (on the test) cannot be combined;"
            " a test takes one kind of memray limit"
        ]
    )


@pytest.mark.skipif(sys.version_info < (3, 13, 3), reason="needs memray's object tracking (Python 3.13.3+)")
def test_limit_leaked_objects_reports_survivors(
    pytester: pytest.Pytester, run: Runner, mode_flag: str
) -> None:
    """Objects created by the test and still alive after it fail the test, unless filtered out."""
    pytester.makepyfile(
        """
        import pytest

        class Kept:
            pass

        KEPT = []

        @pytest.mark.limit_leaked_objects()
        def test_keeps_objects():
            KEPT.extend(Kept() for _ in range(3))

        @pytest.mark.limit_leaked_objects(filter_fn=lambda obj: not isinstance(obj, Kept))
        def test_keeps_filtered_objects():
            KEPT.extend(Kept() for _ in range(3))
        """
    )
    result = run(mode_flag)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["Test leaked * objects", "*- memray-tracked-objects -*", "List of leaked objects:"]
    )


_GROWING = """
import os
import pytest

@pytest.mark.limit_memory("100 MB")
def test_grows():
    data = bytearray(int(os.environ["MIB"]) * 1024 * 1024)
    assert data is not None
"""


def _run_with_cache(run: Runner, monkeypatch: pytest.MonkeyPatch, mib: int, *args: str) -> pytest.RunResult:
    """A run that keeps pytest's cache (the comparison's memory) and xdist (-n)."""
    monkeypatch.setenv("MIB", str(mib))
    return run(*args, plugins=["xdist"], keep_cache=True)


@pytest.mark.parametrize(("where", "mode_flag"), sources_by_mode("ini", "pytest-memray's ini spelling"))
def test_fail_on_increase_compares_with_the_last_passing_run(
    pytester: pytest.Pytester, run: Runner, monkeypatch: pytest.MonkeyPatch, mode_flag: str, where: str
) -> None:
    """A limited test that grows past its last passing run fails; only passing runs are recorded."""
    pytester.makepyfile(_GROWING)
    flags = [mode_flag]
    if where == "command line":
        flags.append("--fail-on-increase")
    else:
        key = "fail_on_increase" if where == "ini" else "fail-on-increase"
        pytester.makeini(f"[pytest]\n{key} = true\n")
    _run_with_cache(run, monkeypatch, 2, *flags).assert_outcomes(passed=1)
    grown = _run_with_cache(run, monkeypatch, 3, *flags)
    grown.assert_outcomes(failed=1)
    grown.stdout.fnmatch_lines(["Test previously used 2.0MiB but now uses 3.0MiB"])
    again = _run_with_cache(run, monkeypatch, 3, *flags)
    again.assert_outcomes(failed=1)
    again.stdout.fnmatch_lines(["Test previously used 2.0MiB but now uses 3.0MiB"])
    _run_with_cache(run, monkeypatch, 1, *flags).assert_outcomes(passed=1)
    smaller_then_bigger = _run_with_cache(run, monkeypatch, 2, *flags)
    smaller_then_bigger.stdout.fnmatch_lines(["Test previously used 1.0MiB but now uses 2.0MiB"])


@pytest.mark.parametrize(
    ("tolerance", "outcome"), [("60%", "passed"), ("40%", "failed"), ("2 MB", "passed"), ("512 KB", "failed")]
)
def test_fail_on_increase_tolerance(
    pytester: pytest.Pytester, run: Runner, monkeypatch: pytest.MonkeyPatch, tolerance: str, outcome: str
) -> None:
    """A percentage or a size of growth is allowed; more than that fails with the tolerance named."""
    pytester.makepyfile(_GROWING)
    _run_with_cache(run, monkeypatch, 2, "--memray-isolate").assert_outcomes(passed=1)
    result = _run_with_cache(run, monkeypatch, 3, "--memray-isolate", f"--fail-on-increase={tolerance}")
    result.assert_outcomes(**{outcome: 1})
    if outcome == "failed":
        result.stdout.fnmatch_lines(
            [f"Test previously used 2.0MiB but now uses 3.0MiB (tolerance {tolerance})"]
        )


def test_fail_on_increase_does_not_swallow_the_path_after_it(
    pytester: pytest.Pytester, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest --fail-on-increase tests/ reads tests/ as the path to run."""
    folder = pytester.mkpydir("suite_dir")
    (folder / "test_inner.py").write_text(_GROWING)
    _run_with_cache(run, monkeypatch, 2, "--fail-on-increase", "suite_dir").assert_outcomes(passed=1)
    grown = _run_with_cache(run, monkeypatch, 3, "--fail-on-increase", "suite_dir")
    grown.assert_outcomes(failed=1)


def test_fail_on_increase_works_under_xdist(
    pytester: pytest.Pytester, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers share pytest's cache, so the comparison holds with -n 2."""
    pytester.makepyfile(
        _GROWING
        + """

@pytest.mark.limit_memory("100 MB")
@pytest.mark.parametrize("n", range(3))
def test_steady(n):
    data = bytearray(1024 * 1024)
    assert data is not None
"""
    )
    # pytest 8.2.0 and 8.2.1 (the lowest this project allows) lose a worker's first cache
    # entry when two workers create .pytest_cache at once (pytest-dev/pytest#12381); the
    # cache directory exists here before the workers start, as it does after a first run.
    pytester.mkdir(".pytest_cache")
    flags = ["-n", "2", "--memray-isolate", "--fail-on-increase"]
    _run_with_cache(run, monkeypatch, 2, *flags).assert_outcomes(passed=4)
    grown = _run_with_cache(run, monkeypatch, 3, *flags)
    grown.assert_outcomes(passed=3, failed=1)
    grown.stdout.fnmatch_lines(["*Test previously used 2.0MiB but now uses 3.0MiB"])


def test_public_names() -> None:
    """The names users import from the package are there, and nothing else is advertised."""
    import pytest_memray_isolate

    assert sorted(pytest_memray_isolate.__all__) == [
        "LeakedObjectsFilterFunction",
        "LeaksFilterFunction",
        "Location",
        "MemoryRegion",
        "Stack",
        "StackFrame",
        "__version__",
    ]
    frame = pytest_memray_isolate.StackFrame("f", "file.py", 3)
    assert pytest_memray_isolate.Stack((frame,)).frames[0].lineno == 3
    assert pytest_memray_isolate.Location("f", "file.py", 3, 1024).size == 1024
    assert isinstance(pytest_memray_isolate.MemoryRegion, type)


@pytest.mark.parametrize("repeats", [None, 2])
@pytest.mark.parametrize("flag", [None, *sorted(MODE_FLAGS.values())])
def test_a_leaks_filter_that_raises_fails_its_test_and_the_run_goes_on(
    pytester: pytest.Pytester, run: Runner, private_tmp: Path, flag: Optional[str], repeats: Optional[int]
) -> None:
    """A limit_leaks filter_fn that raises fails that test, naming the filter and its exception,
    instead of aborting the session; later tests run; nothing is left in the temporary directory."""
    pytester.makepyfile(
        f"""
        import os
        import pytest

        LEAKED = []

        def picky(stack):
            raise ValueError("cannot judge this stack")

        @pytest.mark.limit_leaks("1 MB", filter_fn=picky, repeats={repeats})
        def test_leaks():
            with open("pids", "a") as stream:  # the test's process and its parent
                stream.write(f"{{os.getpid()}} {{os.getppid()}}\\n")
            LEAKED.append(bytearray(2 * 1024 * 1024))

        def test_after():
            pass
        """
    )
    result = run(*([] if flag is None else [flag]), "-rf")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_leaks _*",
            "limit_leaks' filter_fn picky raised ValueError: cannot judge this stack",
            "*- memray-leaked-memory -*",
            "Traceback (most recent call last):",
            "*in picky",
            "ValueError: cannot judge this stack",
        ]
    )
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    # Every process the run started, and the forkserver; not this one (in-process runs).
    assert gone([pid for pid in recorded_pids(pytester) if pid != os.getpid()])
    assert list(private_tmp.iterdir()) == []
