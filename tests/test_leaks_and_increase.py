"""End to end: limit_leaks, limit_leaked_objects, combined markers and --fail-on-increase."""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

from conftest import (
    MODE_FLAGS,
    Runner,
    gone,
    outcomes_in,
    report_sections,
    result_from_saved,
    run_once,
    run_suites,
    saved_result,
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

_GROWING = """
import os
import pytest

@pytest.mark.limit_memory("100 MB")
def test_grows():
    data = bytearray(int(os.environ["MIB"]) * 1024 * 1024)
    assert data is not None
"""


# -- checks that share runs -------------------------------------------------------------
#
# Each module is the suite of the test of the same name (or of one of its cases); the
# runs below hold them, and each test checks its own module's part: its outcomes in the
# -rA summary, its tests' sections, the process ids it recorded. Runs that compare with
# a last passing run (--fail-on-increase) keep pytest's cache in their directory and run
# one after the other there: a case's modules read in each run which step it is (STEP)
# and allocate that step's size.

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

#: The module of test_fail_on_increase_compares_with_the_last_passing_run, run in three
#: steps (STEP 0, 1, 2). Two tests of 2, 3, 3 MiB and 2, 1, 2 MiB: the first shows that a
#: failing run is not recorded (the third step compares with the first step's 2 MiB
#: again), the second that a passing run is (its third step compares with 1 MiB).
_INCREASE_MODULE = "test_fail_on_increase_compares_with_the_last_passing_run"
_INCREASE = """
import os
import pytest

STEP = int(os.environ["STEP"])

@pytest.mark.limit_memory("100 MB")
def test_grows_and_stays_grown():
    data = bytearray([2, 3, 3][STEP] * 1024 * 1024)
    assert data is not None

@pytest.mark.limit_memory("100 MB")
def test_shrinks_then_grows_back():
    data = bytearray([2, 1, 2][STEP] * 1024 * 1024)
    assert data is not None
"""

#: test_fail_on_increase_tolerance's cases: a tolerance and the outcome of growing from 2 to 3 MiB.
_TOLERANCES = [("60%", "passed"), ("40%", "failed"), ("2 MB", "passed"), ("512 KB", "failed")]


def _tolerance_module(tolerance: str) -> str:
    """The name of the module of test_fail_on_increase_tolerance's case for ``tolerance``."""
    return "test_fail_on_increase_tolerance_" + re.sub(r"\W", "_", tolerance)


def _tolerance_suite(tolerance: str) -> str:
    """A limited test of 2 MiB on step 0 and 3 MiB on step 1, named after its tolerance."""
    name = re.sub(r"\W", "_", tolerance)
    return f"""
import os
import pytest

@pytest.mark.limit_memory("100 MB")
def test_grows_{name}():
    data = bytearray([2, 3][int(os.environ["STEP"])] * 1024 * 1024)
    assert data is not None
"""


def _raising_filter_module(repeats: Optional[int]) -> str:
    """The module of test_a_leaks_filter_that_raises_fails_its_test_and_the_run_goes_on's case."""
    return f"test_raising_filter_repeats_{repeats}"


def _raising_filter_suite(repeats: Optional[int]) -> str:
    """A test whose limit_leaks filter raises, then one that passes; the first records its
    process and that process's parent in ``pids-MODULE``. Test names carry ``repeats``:
    two such modules share a run, and a section is named after its test alone."""
    return f"""
import os
import pytest

LEAKED = []

def picky(stack):
    raise ValueError("cannot judge this stack")

@pytest.mark.limit_leaks("1 MB", filter_fn=picky, repeats={repeats})
def test_leaks_{repeats}():
    with open("pids-{_raising_filter_module(repeats)}", "a") as stream:  # the test's process and its parent
        stream.write(f"{{os.getpid()}} {{os.getppid()}}\\n")
    LEAKED.append(bytearray(2 * 1024 * 1024))

def test_after_{repeats}():
    pass
"""


_REPEATS = [None, 2]


def _write(directory: Path, suites: Dict[str, str]) -> List[str]:
    """Write each module of ``suites`` into ``directory``; their file names."""
    for name, source in suites.items():
        (directory / f"{name}.py").write_text(textwrap.dedent(source).strip("\n") + "\n")
    return [f"{name}.py" for name in suites]


def _run_in(directory: Path, *args: str, environment: Dict[str, str]) -> pytest.RunResult:
    """pytest in ``directory`` keeping pytest's cache there, with pytest-xdist loaded, as
    ``run(..., plugins=["xdist"], keep_cache=True)`` does; ``environment`` adds variables."""
    return run_suites(directory, {}, *args, environment=environment, keep=["xdist"], keep_cache=True)


@dataclass(frozen=True)
class Runs:
    """Runs made one after the other in one directory, by the name of each; what the first
    run left in the TMPDIR of its own it had; the process ids each module recorded (in
    ``pids-MODULE``), and whether none of a module's runs any more."""

    results: Dict[str, pytest.RunResult]
    leftovers: List[str]
    pids: Dict[str, List[int]]
    gone: Dict[str, bool]


def _runs_once(
    factory: pytest.TempPathFactory,
    key: str,
    start: Callable[[Path, Dict[str, str]], Dict[str, pytest.RunResult]],
) -> Runs:
    """``start(directory, tmp_environment)`` once per session (conftest's ``run_once``), for
    runs made one after the other in one directory; every caller gets every run.

    ``start`` gives its first run ``tmp_environment`` (TMPDIR, a short directory of its own:
    multiprocessing puts Unix sockets there); what is left in it is listed once the runs
    end. Whether the processes each module recorded are gone is asked then too, here: a
    test in pytest's own process records pytest's parent, the warm process of the xdist
    worker that started the run, which ``gone`` leaves out only in that worker. The
    results, the listing and the answers are saved beside the runs, for the callers that
    find the runs made already.
    """

    def start_and_save(directory: Path) -> pytest.RunResult:
        tmp = Path(tempfile.mkdtemp(prefix="pmi-"))
        try:
            results = start(directory, {"TMPDIR": str(tmp)})
            leftovers = sorted(path.name for path in tmp.iterdir())
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        pids = {
            path.name[len("pids-") :]: [int(word) for word in path.read_text().split()]
            for path in directory.glob("pids-*")
        }
        saved = {
            "results": {name: saved_result(result) for name, result in results.items()},
            "leftovers": leftovers,
            "pids": pids,
            "gone": {module: gone(numbers) for module, numbers in pids.items()},
        }
        (directory / "runs.json").write_text(json.dumps(saved))
        return next(iter(results.values()))

    _, directory = run_once(factory, key, start_and_save)
    saved = json.loads((directory / "runs.json").read_text())
    results = {name: result_from_saved(data) for name, data in saved["results"].items()}
    return Runs(results, saved["leftovers"], saved["pids"], saved["gone"])


def _increase_steps(directory: Path, *flags: str) -> Dict[str, pytest.RunResult]:
    """The increase module's second and third steps (STEP 1 and 2), with ``flags``."""
    module = f"{_INCREASE_MODULE}.py"
    return {
        "second": _run_in(directory, *flags, "-rA", module, environment={"STEP": "1"}),
        "third": _run_in(directory, *flags, "-rA", module, environment={"STEP": "2"}),
    }


def _mode_runs(factory: pytest.TempPathFactory, mode: str) -> Runs:
    """One mode's runs: the first holds _SHARED_SUITES, the raising-filter modules, the
    increase module's first step and (fork mode) the tolerance modules' first step, with
    --fail-on-increase; then the tolerance modules' second steps, one run per tolerance
    (the isolate(default fork) cases), and the increase module's second and third steps.

    Shared by the tests of _SHARED_SUITES, the raising-filter test's cases with a tracking
    option, the increase test's command-line cases and (fork) the tolerance test. They can
    share the first run: --fail-on-increase compares only limit_memory tests, each with its
    own last passing run, and there is none yet; the later runs name their own modules.
    """
    flag = MODE_FLAGS[mode]

    def start(directory: Path, tmp_environment: Dict[str, str]) -> Dict[str, pytest.RunResult]:
        suites = {**_SHARED_SUITES, _INCREASE_MODULE: _INCREASE}
        suites.update(
            {_raising_filter_module(repeats): _raising_filter_suite(repeats) for repeats in _REPEATS}
        )
        if mode == "fork":
            suites.update(
                {_tolerance_module(tolerance): _tolerance_suite(tolerance) for tolerance, _ in _TOLERANCES}
            )
        _write(directory, suites)
        flags = [flag, "-rA", "--most-allocations=0", "--fail-on-increase"]
        results = {"first": _run_in(directory, *flags, environment={"STEP": "0", **tmp_environment})}
        if mode == "fork":
            for tolerance, _ in _TOLERANCES:
                results[f"tolerance {tolerance}"] = _run_in(
                    directory,
                    "--memray-isolate",
                    f"--fail-on-increase={tolerance}",
                    "-rA",
                    f"{_tolerance_module(tolerance)}.py",
                    environment={"STEP": "1"},
                )
        results.update(_increase_steps(directory, flag, "--fail-on-increase"))
        return results

    return _runs_once(factory, f"leaks-{mode}", start)


def _ini_runs(factory: pytest.TempPathFactory, key: str) -> Runs:
    """The increase module's three steps in fork mode, switched on by the ini key ``key``
    (this project's and pytest-memray's spellings), in a directory of their own."""

    def start(directory: Path, tmp_environment: Dict[str, str]) -> Dict[str, pytest.RunResult]:
        (directory / "pytest.ini").write_text(f"[pytest]\n{key} = true\n")
        _write(directory, {_INCREASE_MODULE: _INCREASE})
        flag = MODE_FLAGS["fork"]
        first = _run_in(directory, flag, "-rA", environment={"STEP": "0", **tmp_environment})
        return {"first": first, **_increase_steps(directory, flag)}

    return _runs_once(factory, f"leaks-ini-{key}", start)


def _markers_only_runs(factory: pytest.TempPathFactory) -> Runs:
    """No tracking option: ``--fail-on-increase suite_dir`` twice (2, then 3 MiB), the first
    run also naming the raising-filter modules, which are outside suite_dir.

    Shared by test_fail_on_increase_does_not_swallow_the_path_after_it and the markers-only
    cases of the raising-filter test: --fail-on-increase does not change a limit_leaks test.
    """

    def start(directory: Path, tmp_environment: Dict[str, str]) -> Dict[str, pytest.RunResult]:
        (directory / "suite_dir").mkdir()
        (directory / "suite_dir" / "__init__.py").write_text("")
        (directory / "suite_dir" / "test_inner.py").write_text(_GROWING)
        filters = _write(
            directory,
            {_raising_filter_module(repeats): _raising_filter_suite(repeats) for repeats in _REPEATS},
        )
        first = _run_in(
            directory,
            "--fail-on-increase",
            "suite_dir",
            *filters,
            "-rA",
            environment={"MIB": "2", **tmp_environment},
        )
        second = _run_in(directory, "--fail-on-increase", "suite_dir", environment={"MIB": "3"})
        return {"first": first, "second": second}

    return _runs_once(factory, "leaks-markers-only", start)


_MODE_OF_FLAG = {flag: mode for mode, flag in MODE_FLAGS.items()}


@pytest.fixture(scope="module", params=sorted(MODE_FLAGS))
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> pytest.RunResult:
    """The first run of each tracking mode's runs (_mode_runs), which holds _SHARED_SUITES."""
    return _mode_runs(tmp_path_factory, request.param).results["first"]


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


def _run_with_cache(run: Runner, monkeypatch: pytest.MonkeyPatch, mib: int, *args: str) -> pytest.RunResult:
    """A run that keeps pytest's cache (the comparison's memory) and xdist (-n)."""
    monkeypatch.setenv("MIB", str(mib))
    return run(*args, plugins=["xdist"], keep_cache=True)


#: The ini key of each ini source of sources_by_mode below.
_INI_KEYS = {"ini": "fail_on_increase", "pytest-memray's ini spelling": "fail-on-increase"}


@pytest.mark.parametrize(("where", "mode_flag"), sources_by_mode(*_INI_KEYS))
def test_fail_on_increase_compares_with_the_last_passing_run(
    tmp_path_factory: pytest.TempPathFactory, mode_flag: str, where: str
) -> None:
    """A limited test that grows past its last passing run fails; only passing runs are recorded.

    The command-line cases share their mode's runs (_mode_runs), each ini case has runs of its own.
    """
    if where == "command line":
        runs = _mode_runs(tmp_path_factory, _MODE_OF_FLAG[mode_flag])
    else:
        runs = _ini_runs(tmp_path_factory, _INI_KEYS[where])
    first, second, third = (runs.results[step] for step in ("first", "second", "third"))
    grows = f"{_INCREASE_MODULE}.py::test_grows_and_stays_grown"
    shrinks = f"{_INCREASE_MODULE}.py::test_shrinks_then_grows_back"
    assert outcomes_in(first, grows) == {"passed": 1}  # 2 MiB, the first record
    assert outcomes_in(first, shrinks) == {"passed": 1}  # 2 MiB, the first record
    assert outcomes_in(second, grows) == {"failed": 1}  # 3 MiB
    pytest.LineMatcher(report_sections(second.outlines)["test_grows_and_stays_grown"]).fnmatch_lines(
        ["Test previously used 2.0MiB but now uses 3.0MiB"]
    )
    assert outcomes_in(third, grows) == {"failed": 1}  # 3 MiB again: the failed run was not recorded
    pytest.LineMatcher(report_sections(third.outlines)["test_grows_and_stays_grown"]).fnmatch_lines(
        ["Test previously used 2.0MiB but now uses 3.0MiB"]
    )
    assert outcomes_in(second, shrinks) == {"passed": 1}  # 1 MiB
    assert outcomes_in(third, shrinks) == {"failed": 1}  # 2 MiB: the passing run was recorded
    pytest.LineMatcher(report_sections(third.outlines)["test_shrinks_then_grows_back"]).fnmatch_lines(
        ["Test previously used 1.0MiB but now uses 2.0MiB"]
    )


@pytest.mark.parametrize(("tolerance", "outcome"), _TOLERANCES)
def test_fail_on_increase_tolerance(
    tmp_path_factory: pytest.TempPathFactory, tolerance: str, outcome: str
) -> None:
    """A percentage or a size of growth is allowed; more than that fails with the tolerance named.

    The first step (2 MiB) is in fork mode's first run, the second (3 MiB) a run of its own
    with the tolerance (_mode_runs).
    """
    runs = _mode_runs(tmp_path_factory, "fork")
    assert outcomes_in(runs.results["first"], f"{_tolerance_module(tolerance)}.py") == {"passed": 1}
    result = runs.results[f"tolerance {tolerance}"]
    result.assert_outcomes(**{outcome: 1})
    if outcome == "failed":
        result.stdout.fnmatch_lines(
            [f"Test previously used 2.0MiB but now uses 3.0MiB (tolerance {tolerance})"]
        )


def test_fail_on_increase_does_not_swallow_the_path_after_it(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """pytest --fail-on-increase tests/ reads tests/ as the path to run (_markers_only_runs)."""
    runs = _markers_only_runs(tmp_path_factory)
    assert outcomes_in(runs.results["first"], "suite_dir/test_inner.py") == {"passed": 1}
    runs.results["second"].assert_outcomes(failed=1)


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


@pytest.mark.parametrize("repeats", _REPEATS)
@pytest.mark.parametrize("flag", [None, *sorted(MODE_FLAGS.values())])
def test_a_leaks_filter_that_raises_fails_its_test_and_the_run_goes_on(
    tmp_path_factory: pytest.TempPathFactory, flag: Optional[str], repeats: Optional[int]
) -> None:
    """A limit_leaks filter_fn that raises fails that test, naming the filter and its exception,
    instead of aborting the session; later tests run; nothing is left in the temporary directory.

    Each mode's case is a module of that mode's first run (_mode_runs; no flag:
    _markers_only_runs), which had a TMPDIR of its own: the check that nothing is left
    there holds for every test of that run.
    """
    if flag is None:
        runs = _markers_only_runs(tmp_path_factory)
    else:
        runs = _mode_runs(tmp_path_factory, _MODE_OF_FLAG[flag])
    result = runs.results["first"]
    module = _raising_filter_module(repeats)
    assert outcomes_in(result, f"{module}.py") == {"passed": 1, "failed": 1}
    pytest.LineMatcher(report_sections(result.outlines)[f"test_leaks_{repeats}"]).fnmatch_lines(
        [
            "limit_leaks' filter_fn picky raised ValueError: cannot judge this stack",
            "*- memray-leaked-memory -*",
            "Traceback (most recent call last):",
            "*in picky",
            "ValueError: cannot judge this stack",
        ]
    )
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    # Every process the run started, and the forkserver (asked right after the runs, _runs_once).
    assert runs.pids[module]
    assert runs.gone[module]
    assert runs.leftovers == []
