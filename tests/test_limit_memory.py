"""End to end: the limit_memory marker, its messages, and its validation at collection."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Dict, List

import pytest

from conftest import (
    EVERY_ISOLATION_FLAG,
    MODE_FLAGS,
    Runner,
    outcomes_in,
    report_sections,
    run_once,
    run_suites,
)

#: The ways of tracking the limits apply with: --memray, each --memray-isolate mode, neither flag.
_MODES = [*sorted(MODE_FLAGS), "markers only"]


def _mode_flags(mode: str) -> List[str]:
    """The command line of a way of tracking (none for markers only)."""
    flag = MODE_FLAGS.get(mode)
    return [flag] if flag else []


def _twelve_allocations(name: str) -> str:
    """A test ``name`` over its limit by twelve allocations from twelve lines (memray merges
    allocations made at one place)."""
    body = "\n".join(f"    chunks.append(bytearray({100_000 + n * 1024}))" for n in range(12))
    return f'import pytest\n\n@pytest.mark.limit_memory("1 KB")\ndef {name}():\n    chunks = []\n{body}\n    assert chunks\n'


# -- checks that share one run per way of tracking and verbosity ------------------------
#
# Each module is the suite of the test of the same name; one run (-rA) per way of
# tracking at the default verbosity, and one at -vv, hold them all, and each test checks
# its own module's outcomes and its own tests' sections. Test names differ across the
# modules of a run, as sections are named after their test alone.

_SHARED_SUITES = {
    "test_a_test_over_its_limit_fails_with_pytest_memrays_message": """
        import pytest

        @pytest.mark.limit_memory("1 MB")
        def test_over():
            data = bytearray(3 * 1024 * 1024)
            assert data is not None

        @pytest.mark.limit_memory("24 MB")
        def test_under():
            data = bytearray(3 * 1024 * 1024)
            assert data is not None
        """,
    "test_the_closest_marker_wins": """
        import pytest

        pytestmark = pytest.mark.limit_memory("1 MB")

        @pytest.mark.limit_memory("64 MB")
        def test_loosened():
            data = bytearray(8 * 1024 * 1024)
            assert data is not None

        def test_module_default():
            data = bytearray(8 * 1024 * 1024)
            assert data is not None
        """,
    "test_current_thread_only_ignores_other_threads": """
        import threading
        import pytest

        KEEP = []

        def allocate_in_thread():
            thread = threading.Thread(target=lambda: KEEP.append(bytearray(16 * 1024 * 1024)))
            thread.start()
            thread.join()

        @pytest.mark.limit_memory("8 MB", current_thread_only=True)
        def test_only_mine():
            allocate_in_thread()
            KEEP.clear()

        @pytest.mark.limit_memory("8 MB")
        def test_all_threads():
            allocate_in_thread()
            KEEP.clear()
        """,
    "test_limit_does_not_change_the_outcome_of_a_failing_test": """
        import pytest

        @pytest.mark.limit_memory("1 KB")
        def test_fails():
            data = bytearray(1024 * 1024)
            size = len(data)
            assert size == 1
        """,
}

_OVER_LIMIT_MODULE = "test_a_test_over_its_limit_fails_with_pytest_memrays_message"
_VERBOSITY_MODULE = "test_verbosity_controls_how_many_allocations_are_listed"
_EVERY_ALLOCATION_MODULE = "test_every_allocation_reaches_the_failure_section"
_MALFORMED_MODULE = "test_malformed_markers_error_alike_in_every_isolation_mode"


def _default_suites(mode: str) -> Dict[str, str]:
    """The modules of a way of tracking's run at the default verbosity: _SHARED_SUITES; in
    fork mode the verbosity test's default case; isolated, the malformed markers."""
    suites = dict(_SHARED_SUITES)
    if mode == "fork":
        suites[_VERBOSITY_MODULE] = _twelve_allocations("test_many_by_verbosity")
    if mode in EVERY_ISOLATION_FLAG:
        suites[_MALFORMED_MODULE] = _malformed_suite()
    return suites


def _very_verbose_suites(mode: str) -> Dict[str, str]:
    """The modules of a way of tracking's -vv run: the over-limit test's (for the verbose
    status), every allocation's, and in fork mode the verbosity test's -vv case."""
    suites = {
        _OVER_LIMIT_MODULE: _SHARED_SUITES[_OVER_LIMIT_MODULE],
        _EVERY_ALLOCATION_MODULE: _twelve_allocations("test_many"),
    }
    if mode == "fork":
        suites[_VERBOSITY_MODULE] = _twelve_allocations("test_many_by_verbosity")
    return suites


def _default_run(factory: pytest.TempPathFactory, mode: str) -> pytest.RunResult:
    """_default_suites run once with a way of tracking, at the default verbosity.

    Shared by the tests of _SHARED_SUITES, the verbosity test's default case and the
    isolation modes' malformed-marker cases: no option but the mode's, and markers
    (malformed ones too) apply to their own test only.
    """
    key = f"limit-memory-{mode.replace(' ', '-')}"
    suites = _default_suites(mode)
    return run_once(factory, key, lambda path: run_suites(path, suites, *_mode_flags(mode), "-rA")).result


def _very_verbose_run(factory: pytest.TempPathFactory, mode: str) -> pytest.RunResult:
    """_very_verbose_suites run once with a way of tracking and -vv, which lists every
    allocation of every test and gives each test's status in words.

    Shared by the over-limit test's verbose status, every allocation's test and the
    verbosity test's -vv case: -vv is the option each of them is about.
    """
    key = f"limit-memory-{mode.replace(' ', '-')}-vv"
    suites = _very_verbose_suites(mode)
    return run_once(
        factory, key, lambda path: run_suites(path, suites, *_mode_flags(mode), "-vv", "-rA")
    ).result


@dataclass(frozen=True)
class ModeRun:
    """The default-verbosity run of one way of tracking, and that way's name."""

    result: pytest.RunResult
    mode: str


@pytest.fixture(scope="module", params=_MODES)
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ModeRun:
    """_default_run with --memray, with each --memray-isolate mode, and with neither."""
    return ModeRun(_default_run(tmp_path_factory, request.param), request.param)


def test_a_test_over_its_limit_fails_with_pytest_memrays_message(
    tmp_path_factory: pytest.TempPathFactory, shared: ModeRun
) -> None:
    """The message, the section and the M status are pytest-memray's (and -v's status word,
    from the way of tracking's -vv run)."""
    result = shared.result
    module = _OVER_LIMIT_MODULE
    assert outcomes_in(result, f"{module}.py") == {"passed": 1, "failed": 1}
    pytest.LineMatcher(report_sections(result.outlines)["test_over"]).fnmatch_lines(
        [
            "Test was limited to 1.0MiB but allocated 3.0MiB",
            "*- memray-max-memory -*",
            "List of allocations:",
            "    - 3.0MiB allocated here:",
            f"        test_over:*{module}.py:5",
        ]
    )
    result.stdout.fnmatch_lines([f"{module}.py M.*"])
    verbose = _very_verbose_run(tmp_path_factory, shared.mode)
    assert outcomes_in(verbose, f"{module}.py") == {"passed": 1, "failed": 1}
    verbose.stdout.fnmatch_lines([f"{module}.py::test_over MEMORY PROBLEMS*"])


def test_the_closest_marker_wins(shared: ModeRun) -> None:
    """A test's own limit_memory overrides the module's pytestmark default."""
    module = "test_the_closest_marker_wins.py"
    assert outcomes_in(shared.result, module) == {"passed": 1, "failed": 1}
    shared.result.stdout.fnmatch_lines([f"MEMORY PROBLEMS {module}::test_module_default*"])


def test_current_thread_only_ignores_other_threads(shared: ModeRun) -> None:
    """Memory allocated by a helper thread counts unless current_thread_only=True."""
    module = "test_current_thread_only_ignores_other_threads.py"
    assert outcomes_in(shared.result, module) == {"passed": 1, "failed": 1}
    shared.result.stdout.fnmatch_lines([f"MEMORY PROBLEMS {module}::test_all_threads*"])


def test_limit_does_not_change_the_outcome_of_a_failing_test(shared: ModeRun) -> None:
    """A test that fails on its own keeps its own failure, not the memory message."""
    module = "test_limit_does_not_change_the_outcome_of_a_failing_test.py"
    assert outcomes_in(shared.result, module) == {"failed": 1}
    section = pytest.LineMatcher(report_sections(shared.result.outlines)["test_fails"])
    section.fnmatch_lines(["E       assert 1048576 == 1"])
    section.no_fnmatch_line("*Test was limited to*")
    shared.result.stdout.fnmatch_lines([f"FAILED {module}::test_fails*"])
    shared.result.stdout.no_fnmatch_line(f"*{module}::test_fails*Test was limited to*")


def test_verbosity_controls_how_many_allocations_are_listed(
    pytester: pytest.Pytester, run: Runner, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """-q lists none, the default lists the 10 biggest, -vv lists all of them.

    pytest's process cuts the list by verbosity, whatever the mode: fork mode here, and
    test_every_allocation_reaches_the_failure_section shows the whole list in each mode.
    The default and -vv cases are modules of fork mode's runs at those verbosities
    (_default_run, _very_verbose_run); -q, which changes every test's report, is a run of its own.
    """
    flags = [MODE_FLAGS["fork"]]
    pytester.makepyfile(**{_VERBOSITY_MODULE: _twelve_allocations("test_many_by_verbosity")})
    quiet = run(*flags, "-q")
    quiet.stdout.fnmatch_lines(["Test was limited to 1.0KiB but allocated *"])
    quiet.stdout.no_fnmatch_line("*memray-max-memory*")
    default = _default_run(tmp_path_factory, "fork")
    assert outcomes_in(default, f"{_VERBOSITY_MODULE}.py") == {"failed": 1}
    section = report_sections(default.outlines)["test_many_by_verbosity"]
    pytest.LineMatcher(section).fnmatch_lines(
        ["List of allocations:", "    ...and * more"], consecutive=False
    )
    assert "\n".join(section).count("allocated here:") == 10
    very_verbose = _very_verbose_run(tmp_path_factory, "fork")
    assert outcomes_in(very_verbose, f"{_VERBOSITY_MODULE}.py") == {"failed": 1}
    section = report_sections(very_verbose.outlines)["test_many_by_verbosity"]
    pytest.LineMatcher(section).no_fnmatch_line("*...and * more*")
    assert "\n".join(section).count("allocated here:") >= 12


@pytest.mark.parametrize("mode", _MODES)
def test_every_allocation_reaches_the_failure_section(
    tmp_path_factory: pytest.TempPathFactory, mode: str
) -> None:
    """With -vv all twelve allocations are listed, whichever process measured them (_very_verbose_run)."""
    very_verbose = _very_verbose_run(tmp_path_factory, mode)
    assert outcomes_in(very_verbose, f"{_EVERY_ALLOCATION_MODULE}.py") == {"failed": 1}
    section = report_sections(very_verbose.outlines)["test_many"]
    pytest.LineMatcher(section).fnmatch_lines(["Test was limited to 1.0KiB but allocated *"])
    pytest.LineMatcher(section).no_fnmatch_line("*...and * more*")
    assert "\n".join(section).count("allocated here:") >= 12


def test_sizes_as_the_reports_print_them_are_accepted(pytester: pytest.Pytester, run: Runner) -> None:
    """A size copied from a report ("1.0MiB") works in a marker and in a size option."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.limit_memory("1.0MiB")
        def test_over():
            data = bytearray(3 * 1024 * 1024)
            assert data is not None

        def test_under_the_default():
            data = bytearray(3 * 1024 * 1024)
            assert data is not None
        """
    )
    result = run("--memray", "--memray-limit-memory=64.0MiB", "--memray-json=out.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*Test was limited to 1.0MiB but allocated 3.0MiB"])
    document = json.loads((pytester.path / "out.json").read_text())
    assert document["settings"]["limit_memory"] == 64 * 1024**2


#: Malformed markers and the error each gives (``test_marked`` is the marked test's name).
MALFORMED_MARKERS = [
    (
        'limit_memory("ten MB")',
        "*::test_marked: invalid marker @pytest.mark.limit_memory('ten MB'): 'ten MB' is not a memory"
        ' size; expected a number and a unit, such as "24 MB"'
        " (units B, KB, MB, GB, TB, PB, or KiB to PiB as reports print them; 1 KB = 1 KiB = 1024 B)",
    ),
    (
        'limit_memory("5 XB")',
        "*::test_marked: invalid marker @pytest.mark.limit_memory('5 XB'): '5 XB' is not a memory size*",
    ),
    (
        'limit_memory("-1 MB")',
        "*::test_marked: invalid marker @pytest.mark.limit_memory('-1 MB'): '-1 MB' is not a memory size*",
    ),
    (
        "limit_memory()",
        "*::test_marked: invalid marker @pytest.mark.limit_memory():"
        " missing a required argument: 'limit';"
        " the signature is limit_memory(limit: str, *, current_thread_only: bool = False)",
    ),
    (
        "limit_memory(24)",
        "*::test_marked: invalid marker @pytest.mark.limit_memory(24): the limit must be a string,"
        ' a number and a unit, such as "24 MB" *; got int 24',
    ),
    (
        'limit_memory("1 MB", "2 MB")',
        "*invalid marker @pytest.mark.limit_memory('1 MB', '2 MB'): too many positional arguments*",
    ),
    (
        'limit_memory("1 MB", threads=True)',
        "*invalid marker @pytest.mark.limit_memory('1 MB', threads=True):"
        " got an unexpected keyword argument 'threads'*",
    ),
    (
        'limit_memory("1 MB", current_thread_only="yes")',
        "*invalid marker @pytest.mark.limit_memory('1 MB', current_thread_only='yes'):"
        " current_thread_only must be True or False; got 'yes'",
    ),
    (
        'memray_isolate("thread")',
        "*::test_marked: invalid marker @pytest.mark.memray_isolate('thread'):"
        " unknown isolation mode 'thread'; expected one of 'fork', 'forkserver', 'spawn'",
    ),
    (
        'limit_leaks("1 MB", filter_fn="not callable")',
        "*invalid marker @pytest.mark.limit_leaks('1 MB', filter_fn='not callable'):"
        " filter_fn must be a function or None; got str 'not callable'",
    ),
    (
        "limit_leaks()",
        "*invalid marker @pytest.mark.limit_leaks(): missing a required argument: 'location_limit';*",
    ),
    (
        'limit_leaks("lots")',
        "*invalid marker @pytest.mark.limit_leaks('lots'): 'lots' is not a memory size*",
    ),
    (
        "limit_leaks(1024)",
        "*invalid marker @pytest.mark.limit_leaks(1024): location_limit must be a string,*; got int 1024",
    ),
    (
        'limit_leaks("1 KB", warmups=-1)',
        "*::test_marked: invalid marker @pytest.mark.limit_leaks('1 KB', warmups=-1):"
        " warmups must be a whole number, 0 or more; got int -1",
    ),
    (
        'limit_leaks("1 KB", warmups=1.5)',
        "*invalid marker @pytest.mark.limit_leaks('1 KB', warmups=1.5):"
        " warmups must be a whole number, 0 or more; got float 1.5",
    ),
    (
        'limit_leaks("1 KB", repeats=0)',
        "*::test_marked: invalid marker @pytest.mark.limit_leaks('1 KB', repeats=0):"
        " repeats must be a whole number, 1 or more; got int 0",
    ),
    (
        'limit_leaks("1 KB", repeats="3")',
        "*invalid marker @pytest.mark.limit_leaks('1 KB', repeats='3'):"
        " repeats must be a whole number, 1 or more; got str '3'",
    ),
    (
        'limit_leaks("1 KB", repeats=True)',
        "*invalid marker @pytest.mark.limit_leaks('1 KB', repeats=True):"
        " repeats must be a whole number, 1 or more; got bool True",
    ),
    (
        'limit_leaks("1 KB", 1, 3)',
        "*invalid marker @pytest.mark.limit_leaks('1 KB', 1, 3): too many positional arguments;"
        " the signature is limit_leaks(location_limit: str, *, *warmups: Optional[[]int[]] = None,"
        " repeats: Optional[[]int[]] = None)",
    ),
    (
        "limit_leaked_objects(filter_fn=3)",
        "*invalid marker @pytest.mark.limit_leaked_objects(filter_fn=3): filter_fn must be a function or None;"
        " got int 3",
    ),
    (
        'limit_leaked_objects("x")',
        "*invalid marker @pytest.mark.limit_leaked_objects('x'): too many positional arguments*",
    ),
    (
        "limit_allocations(-1)",
        "*::test_marked: invalid marker @pytest.mark.limit_allocations(-1):"
        " count must be a whole number, 0 or more; got int -1",
    ),
    (
        'limit_allocations("10")',
        "*invalid marker @pytest.mark.limit_allocations('10'): count must be a whole number, 0 or more; got str '10'",
    ),
    (
        "limit_allocations()",
        "*invalid marker @pytest.mark.limit_allocations(): missing a required argument: 'count';*",
    ),
    # limit_rss: the resident growth's marker (tests/test_limit_rss.py)
    (
        'limit_rss("lots")',
        "*::test_marked: invalid marker @pytest.mark.limit_rss('lots'): 'lots' is not a memory size;"
        ' expected a number and a unit, such as "24 MB"*',
    ),
    (
        "limit_rss(512)",
        "*::test_marked: invalid marker @pytest.mark.limit_rss(512): the limit must be a string,"
        ' a number and a unit, such as "24 MB" *; got int 512',
    ),
    (
        "limit_rss()",
        "*::test_marked: invalid marker @pytest.mark.limit_rss(): missing a required argument: 'limit';"
        " the signature is limit_rss(limit: str)",
    ),
    (
        'limit_rss("1 MB", "2 MB")',
        "*invalid marker @pytest.mark.limit_rss('1 MB', '2 MB'): too many positional arguments;"
        " the signature is limit_rss(limit: str)",
    ),
    (
        'limit_rss("1 MB", per_thread=True)',
        "*invalid marker @pytest.mark.limit_rss('1 MB', per_thread=True):"
        " got an unexpected keyword argument 'per_thread'*",
    ),
]


@pytest.mark.parametrize(("marker", "expected"), MALFORMED_MARKERS)
def test_a_malformed_marker_is_an_error_naming_the_test_marker_and_value(
    pytester: pytest.Pytester, run_inprocess: Runner, marker: str, expected: str
) -> None:
    """The marked test errors without running; no INTERNALERROR; the other tests still run.

    Markers are read at collection, in pytest's process, whatever the mode: this runs in
    process with --memray; test_malformed_markers_error_alike_in_every_isolation_mode
    checks every message again under each isolation mode.
    """
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.{marker}
        def test_marked():
            raise AssertionError("must not run")

        def test_other():
            pass
        """
    )
    result = run_inprocess("--memray", "-rE")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*_ ERROR at setup of test_marked _*", expected])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    result.stdout.no_fnmatch_line("*must not run*")


def _malformed_suite() -> str:
    """A module holding every malformed marker (``test_marked_N`` carries the Nth), and a test that passes."""
    tests = "".join(
        f"""
@pytest.mark.{marker}
def test_marked_{index}():
    raise AssertionError("must not run")
"""
        for index, (marker, _) in enumerate(MALFORMED_MARKERS)
    )
    return "import pytest\n" + tests + "\n\ndef test_other():\n    pass\n"


@pytest.mark.parametrize("mode", sorted(EVERY_ISOLATION_FLAG))
def test_malformed_markers_error_alike_in_every_isolation_mode(
    tmp_path_factory: pytest.TempPathFactory, mode: str
) -> None:
    """Under each isolation mode every malformed marker gives the same error as in process,
    in its test's own section, without starting a child that runs it; the other test runs.

    One module holds every marker, so the modes cost one run each instead of one per
    marker; in fork and forkserver mode it is a module of that mode's default run
    (_default_run), spawn's run is its own.
    """
    if mode in MODE_FLAGS:
        result = _default_run(tmp_path_factory, mode)
    else:
        suites = {_MALFORMED_MODULE: _malformed_suite()}
        flags = [EVERY_ISOLATION_FLAG[mode], "-rA"]
        result = run_once(
            tmp_path_factory, f"limit-memory-malformed-{mode}", lambda path: run_suites(path, suites, *flags)
        ).result
    assert outcomes_in(result, f"{_MALFORMED_MODULE}.py") == {"passed": 1, "errors": len(MALFORMED_MARKERS)}
    sections = report_sections(result.outlines)
    for index, (_, expected) in enumerate(MALFORMED_MARKERS):
        own = expected.replace("::test_marked:", f"::test_marked_{index}:")
        pytest.LineMatcher(sections[f"ERROR at setup of test_marked_{index}"]).fnmatch_lines([own])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    result.stdout.no_fnmatch_line("*must not run*")


def test_markers_are_documented_with_their_signatures(run_inprocess: Runner) -> None:
    """pytest --markers lists each memray marker with its real signature and purpose."""
    result = run_inprocess("--markers")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.limit_memory(limit: str, *, current_thread_only: bool = False):"
            " Fail the test when its call phase allocates ``limit`` or more at its high watermark.",
            "@pytest.mark.limit_leaks(location_limit: str, *, filter_fn: Optional[[]LeaksFilterFunction[]] = None,"
            " current_thread_only: bool = False, warmups: Optional[[]int[]] = None,"
            " repeats: Optional[[]int[]] = None): Fail the test when memory allocated at one place*"
            " (with ``warmups`` or ``repeats``: on every tracked repetition).",
            "@pytest.mark.limit_leaked_objects(*, filter_fn: Optional[[]LeakedObjectsFilterFunction[]] = None):"
            " Fail the test when objects it created outlive it (Python 3.13.3 or newer).",
            "@pytest.mark.limit_allocations(count: int): Fail the test when its call phase makes more than"
            " ``count`` allocations (see the docs for what counts).",
            "@pytest.mark.memray_isolate(mode: Optional[[]str[]] = None, *, timeout: Optional[[]float[]] = None):"
            " Track this test in its own child process, even without --memray-isolate; ``mode`` is fork,"
            " forkserver or spawn (default: the run's); kill it after ``timeout`` seconds (0: never).",
        ],
        consecutive=False,
    )
