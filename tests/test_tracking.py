"""End to end: what a user sees with --memray and --memray-isolate, in both modes alike."""

from __future__ import annotations

import re
from pathlib import Path
from typing import List

import pytest

from conftest import (
    EVERY_MODE_FLAG,
    MODE_FLAGS,
    SharedRun,
    outcomes_in,
    report_sections,
    run_once,
    run_suites,
)


def _summary_nodeids(output: str) -> list[str]:
    return re.findall(r"^Allocation results for (\S+) at the high watermark$", output, re.MULTILINE)


# -- checks that share one run per mode -----------------------------------------------
#
# Each module below is the suite of the test of the same name; one run per mode holds
# them all, with -rA (per-module outcomes), --most-allocations=0 (every test's block) and
# --junitxml. Each test checks its own module's part: its outcomes, its sections, its
# tests' blocks of the MEMRAY REPORT. _SHARED_SUITES run in every mode, spawn included;
# _THREE_MODE_SUITES join them in pytest's process, fork and forkserver (``mode_flag``'s
# modes). What changes the whole report (--hide-memray-summary, how many tests it lists)
# or every test's warnings (filterwarnings = error) has runs of its own, further down.

_SHARED_SUITES = {
    "test_outcomes_and_sections_are_reported_as_without_tracking": """
        import logging
        import sys
        import pytest

        def test_passes():
            assert True

        def test_fails_with_diff():
            print("printed to stdout before failing")
            sys.stderr.write("written to stderr\\n")
            logging.getLogger("demo").warning("logged before failing")
            assert [1, 2, 3] == [1, 2, 4]

        def test_skips():
            pytest.skip("not today")

        @pytest.mark.xfail(reason="known bug")
        def test_xfails():
            assert False

        @pytest.mark.xfail(reason="fixed already")
        def test_xpasses():
            pass

        @pytest.mark.xfail(strict=True, reason="must fail")
        def test_strict_xpass():
            pass
        """,
    "test_warnings_raised_in_the_test_reach_the_warnings_summary": """
        import warnings

        class OwnWarning(UserWarning):
            pass

        def test_warns():
            warnings.warn("careful with that", OwnWarning)
        """,
    "test_a_fixture_that_records_warnings_keeps_them": """
        import warnings
        import pytest

        @pytest.fixture
        def recorded():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                yield caught

        def test_recwarn(recwarn):
            warnings.warn("kept by recwarn")
            assert [str(warning.message) for warning in recwarn] == ["kept by recwarn"]

        # A fixture's own recorder is process state: it reaches a forked child only (a
        # forkserver's or spawned child gets the fixture's value, the list).
        @pytest.mark.memray_isolate("fork")
        def test_own_recorder(recorded):
            warnings.warn("kept by the fixture")
            assert [str(warning.message) for warning in recorded] == ["kept by the fixture"]
        """,
    "test_record_property_reaches_the_junit_report": """
        def test_records(record_property):
            record_property("answer", 42)
        """,
    "test_session_fixture_is_set_up_once_for_the_whole_run": """
        import os
        import pytest

        LOG = os.path.join(os.path.dirname(__file__), "events.log")

        def note(event):
            with open(LOG, "a") as stream:
                stream.write(event + "\\n")

        @pytest.fixture(scope="session")
        def shared():
            note("setup")
            yield [1, 2, 3]
            note("teardown")

        @pytest.mark.parametrize("n", range(4))
        def test_uses_shared(shared, n):
            note("call")
            assert shared == [1, 2, 3]
        """,
    "test_failing_tests_get_their_figures_too": """
        def test_fails_after_allocating():
            size = len(bytearray(4 * 1024 * 1024))
            assert size == 0
        """,
    "test_the_plugins_own_frames_never_appear_in_the_report": """
        import pytest

        @pytest.mark.parametrize("size", [1, 1000, 100000])
        def test_param(size):
            assert len(bytes(size)) == size

        def test_plain():
            assert sum(range(10)) == 45
        """,
    "test_unittest_testcases_are_tracked": """
        import unittest

        class TestBuffers(unittest.TestCase):
            def test_allocates(self):
                data = bytearray(3 * 1024 * 1024)
                self.assertTrue(data is not None)

            def test_fails(self):
                self.assertEqual(1, 2)
        """,
}


_THREE_MODE_SUITES = {
    "test_report_lists_each_tracked_test_with_its_figures": """
        def test_big():
            data = bytearray(8 * 1024 * 1024)
            assert len(data)

        def test_small():
            data = bytearray(64 * 1024)
            assert len(data)
        """,
    "test_fixture_setup_and_teardown_are_not_counted": """
        import pytest

        @pytest.fixture
        def big():
            data = bytearray(32 * 1024 * 1024)
            yield data
            del data[:]
            junk = bytearray(32 * 1024 * 1024)

        def test_uses_big(big):
            own = bytearray(100 * 1024)
            assert len(big) == 32 * 1024 * 1024
            assert own is not None
        """,
    "test_async_test_functions_keep_pytests_own_verdict": """
        async def test_coroutine():
            pass
        """,
    "test_most_allocations_limits_the_report": """
        import pytest

        @pytest.mark.parametrize("mib", [1, 2, 3, 4, 5, 6, 7])
        def test_allocates(mib):
            data = bytearray(mib * 1024 * 1024)
            assert data is not None
        """,
}


def _shared_run(factory: pytest.TempPathFactory, mode: str) -> SharedRun:
    """The shared run of ``mode`` (started once per session, see ``run_once``)."""
    suites = _SHARED_SUITES if mode == "spawn" else {**_SHARED_SUITES, **_THREE_MODE_SUITES}
    flags = [
        EVERY_MODE_FLAG[mode],
        "-rA",
        "--most-allocations=0",
        "--junitxml=out.xml",
        "-o",
        "junit_family=xunit1",
    ]
    return run_once(factory, f"tracking-{mode}", lambda path: run_suites(path, suites, *flags))


@pytest.fixture(scope="module", params=sorted(EVERY_MODE_FLAG))
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    """_SHARED_SUITES run once per tracking mode: their modules do not meet (each has its
    own files, names and outcomes), and -rA, --most-allocations=0 and --junitxml only add
    to what the run prints and writes."""
    return _shared_run(tmp_path_factory, str(request.param))


@pytest.fixture(scope="module", params=sorted(MODE_FLAGS))
def shared_of_three(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    """The same runs in pytest's process, fork and forkserver, which also hold _THREE_MODE_SUITES."""
    return _shared_run(tmp_path_factory, str(request.param))


def _block(result: pytest.RunResult, nodeid: str) -> List[str]:
    """The MEMRAY REPORT's block of one test: its heading, and the lines up to the next
    test's heading or the report's end."""
    lines = result.outlines
    start = lines.index(f"Allocation results for {nodeid} at the high watermark")
    end = start + 1
    while end < len(lines) and not lines[end].startswith(("Allocation results for ", "Highest peak", "=")):
        end += 1
    return lines[start:end]


def test_outcomes_and_sections_are_reported_as_without_tracking(shared: SharedRun) -> None:
    """Pass, fail with the full assertion diff, skip, xfail, xpass, captured output and logs."""
    result = shared.result
    module = "test_outcomes_and_sections_are_reported_as_without_tracking.py"
    assert outcomes_in(result, module) == {"passed": 1, "failed": 2, "skipped": 1, "xfailed": 1, "xpassed": 1}
    pytest.LineMatcher(report_sections(result.outlines)["test_fails_with_diff"]).fnmatch_lines(
        [
            "*def test_fails_with_diff():*",
            "E       assert [1, 2, 3] == [1, 2, 4]",
            "E         At index 2 diff: 3 != 4*",
            "*- Captured stdout call -*",
            "printed to stdout before failing",
            "*- Captured stderr call -*",
            "written to stderr",
            "*- Captured log call -*",
            "WARNING  demo:*logged before failing",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            f"SKIPPED [[]1[]] {module}:15: not today",
            f"XFAIL {module}::test_xfails - known bug",
            f"XPASS {module}::test_xpasses - fixed already",
            f"FAILED {module}::test_strict_xpass*",
        ],
        consecutive=False,
    )


def test_warnings_raised_in_the_test_reach_the_warnings_summary(shared: SharedRun) -> None:
    """A warning from a tracked test is listed under its node id with its message and category."""
    result = shared.result
    assert outcomes_in(result, "test_warnings_raised_in_the_test_reach_the_warnings_summary.py") == {
        "passed": 1
    }
    result.stdout.fnmatch_lines(
        [
            "*= warnings summary =*",
            "test_warnings_raised_in_the_test_reach_the_warnings_summary.py::test_warns",
            "*:7: OwnWarning: careful with that",
        ]
    )


def test_a_fixture_that_records_warnings_keeps_them(shared: SharedRun) -> None:
    """recwarn (in every mode), or a fixture's own recorder (in a forked child), gets the
    test's warnings, and pytest's warnings summary does not list them, as without
    tracking: an isolated child sends the parent only what pytest's own recorder would
    have received."""
    module = "test_a_fixture_that_records_warnings_keeps_them.py"
    assert outcomes_in(shared.result, module) == {"passed": 2}
    assert "kept by" not in shared.result.stdout.str()


def test_record_property_reaches_the_junit_report(shared: SharedRun) -> None:
    """Properties recorded during the tracked call are written to --junitxml."""
    assert outcomes_in(shared.result, "test_record_property_reaches_the_junit_report.py") == {"passed": 1}
    xml = (shared.path / "out.xml").read_text()
    assert '<property name="answer" value="42" />' in xml


def test_session_fixture_is_set_up_once_for_the_whole_run(shared: SharedRun) -> None:
    """Fixtures live where pytest runs: a session fixture is built and torn down once."""
    assert outcomes_in(shared.result, "test_session_fixture_is_set_up_once_for_the_whole_run.py") == {
        "passed": 4
    }
    events = (shared.path / "events.log").read_text().split()
    assert events == ["setup", "call", "call", "call", "call", "teardown"]


def test_failing_tests_get_their_figures_too(shared: SharedRun) -> None:
    """A test that fails after allocating is still measured and listed."""
    result = shared.result
    assert outcomes_in(result, "test_failing_tests_get_their_figures_too.py") == {"failed": 1}
    result.stdout.fnmatch_lines(
        [
            "Allocation results for *::test_fails_after_allocating at the high watermark",
            "",
            "\t 📦 Total memory allocated: 4.0MiB",
        ]
    )


def test_the_plugins_own_frames_never_appear_in_the_report(shared: SharedRun) -> None:
    """Allocations memray attributes to the plugin's wrapper are not listed as the test's hot spots."""
    result = shared.result
    assert outcomes_in(result, "test_the_plugins_own_frames_never_appear_in_the_report.py") == {"passed": 4}
    output = result.stdout.str()
    assert "Biggest allocating functions" in output
    assert "pytest_memray_isolate" not in output


def test_unittest_testcases_are_tracked(shared: SharedRun) -> None:
    """unittest.TestCase methods are measured too (pytest-memray 1.11 skips them)."""
    result = shared.result
    assert outcomes_in(result, "test_unittest_testcases_are_tracked.py") == {"passed": 1, "failed": 1}
    result.stdout.fnmatch_lines(
        [
            "Allocation results for *::TestBuffers::test_allocates at the high watermark",
            "",
            "\t 📦 Total memory allocated: 3.0MiB",
        ]
    )
    pytest.LineMatcher(report_sections(result.outlines)["TestBuffers.test_fails"]).fnmatch_lines(
        ["E       AssertionError: 1 != 2"]
    )


def test_report_lists_each_tracked_test_with_its_figures(shared_of_three: SharedRun) -> None:
    """The MEMRAY REPORT has pytest-memray's layout, biggest peak first."""
    result = shared_of_three.result
    module = "test_report_lists_each_tracked_test_with_its_figures.py"
    assert outcomes_in(result, module) == {"passed": 2}
    result.stdout.fnmatch_lines(["*= MEMRAY REPORT =*", f"Allocation results for {module}::test_big *"])
    pytest.LineMatcher(_block(result, f"{module}::test_big")).fnmatch_lines(
        [
            f"Allocation results for {module}::test_big at the high watermark",
            "",
            "\t 📦 Total memory allocated: 8.0MiB",
            "\t 📏 Total allocations: *",
            "\t 📊 Histogram of allocation sizes: |*|",
            "\t 🥇 Biggest allocating functions:",
            f"\t\t- test_big:*{module}:2 -> 8.0MiB",
            "\t 🧠 Resident memory growth: *",
            "",
            "",
        ],
        consecutive=True,
    )
    small = _block(result, f"{module}::test_small")
    pytest.LineMatcher(small).fnmatch_lines(
        [
            f"Allocation results for {module}::test_small at the high watermark",
            "",
            "\t 📦 Total memory allocated: 64.0KiB",
        ],
        consecutive=True,
    )
    listed = _summary_nodeids(result.stdout.str())
    assert listed.index(f"{module}::test_big") < listed.index(f"{module}::test_small")


def test_fixture_setup_and_teardown_are_not_counted(shared_of_three: SharedRun) -> None:
    """Only the call phase is measured: a fixture's 32 MiB does not show in the test's peak."""
    result = shared_of_three.result
    module = "test_fixture_setup_and_teardown_are_not_counted.py"
    assert outcomes_in(result, module) == {"passed": 1}
    assert [nodeid for nodeid in _summary_nodeids(result.stdout.str()) if nodeid.startswith(module)] == [
        f"{module}::test_uses_big"
    ]
    block = "\n".join(_block(result, f"{module}::test_uses_big"))
    peaks = re.findall(r"Total memory allocated: (\S+)", block)
    assert len(peaks) == 1
    assert peaks[0].endswith("KiB")
    assert float(peaks[0][:-3]) < 200


def test_async_test_functions_keep_pytests_own_verdict(shared_of_three: SharedRun) -> None:
    """Tracking does not hide that an async test needs an async plugin: pytest says so as usual
    (the run loads neither pytest-asyncio nor anyio's plugin; this module's is the run's
    only coroutine test, a failure from pytest 9 on, a skip with a warning before)."""
    result = shared_of_three.result
    result.stdout.fnmatch_lines(["*async def functions are not natively supported*"])
    result.stdout.no_fnmatch_line("*never awaited*")


def test_most_allocations_limits_the_report(tmp_path_factory: pytest.TempPathFactory, mode_flag: str) -> None:
    """--most-allocations N lists the N biggest; 0 lists every tracked test.

    pytest's process sorts and cuts the list, whatever the mode: the default (5, biggest
    first) is checked in every mode, in a run of this module alone (the list is the
    run's); 0 in each mode's shared run (test_most_allocations_zero_lists_every_test); 2 in fork
    mode, in a run of its own.
    """
    module = "test_most_allocations_limits_the_report.py"
    mode = next(name for name, flag in MODE_FLAGS.items() if flag == mode_flag)
    suites = {"test_most_allocations_limits_the_report": _THREE_MODE_SUITES[module[:-3]]}

    def listed(*options: str) -> List[str]:
        key = f"tracking-most-{mode}{''.join(options)}"
        run = run_once(tmp_path_factory, key, lambda path: run_suites(path, suites, mode_flag, *options))
        return _summary_nodeids(run.result.stdout.str())

    default = listed()
    assert [nodeid.split("[")[1] for nodeid in default] == ["7]", "6]", "5]", "4]", "3]"]
    if mode_flag != MODE_FLAGS["fork"]:
        return
    two = listed("--most-allocations=2")
    assert [nodeid.split("[")[1] for nodeid in two] == ["7]", "6]"]


def test_most_allocations_zero_lists_every_test(shared_of_three: SharedRun) -> None:
    """--most-allocations=0 (the shared runs' setting) lists every tracked test: the seven
    of test_most_allocations_limits_the_report's module are all there."""
    module = "test_most_allocations_limits_the_report.py"
    assert outcomes_in(shared_of_three.result, module) == {"passed": 7}
    everything = [
        nodeid
        for nodeid in _summary_nodeids(shared_of_three.result.stdout.str())
        if nodeid.startswith(module)
    ]
    assert len(everything) == 7


# -- options that change every test of a run: one run per mode ---------------------------

_OPTION_SUITES = {
    "test_hide_memray_summary_hides_the_report": """
        import pytest

        @pytest.mark.limit_memory("1 MB")
        def test_over():
            data = bytearray(2 * 1024 * 1024)
            assert data is not None
        """,
    "test_warnings_made_errors_by_the_user_fail_the_test": """
        import warnings

        def test_warns():
            warnings.warn("now an error", DeprecationWarning)
        """,
}


@pytest.fixture(scope="module", params=sorted(MODE_FLAGS))
def with_options(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    """_OPTION_SUITES run once per mode with --hide-memray-summary and, in the ini file,
    filterwarnings = error: the two do not meet (neither module's test warns but the one
    that checks it, and neither reads the report the other hides)."""
    flag = MODE_FLAGS[str(request.param)]

    def start(path: Path) -> pytest.RunResult:
        (path / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")
        return run_suites(path, _OPTION_SUITES, flag, "-rA", "--hide-memray-summary")

    return run_once(tmp_path_factory, f"tracking-options-{request.param}", start)


def test_warnings_made_errors_by_the_user_fail_the_test(with_options: SharedRun) -> None:
    """filterwarnings = error applies inside the tracked call as it does without tracking."""
    result = with_options.result
    assert outcomes_in(result, "test_warnings_made_errors_by_the_user_fail_the_test.py") == {"failed": 1}
    pytest.LineMatcher(report_sections(result.outlines)["test_warns"]).fnmatch_lines(
        ["E       DeprecationWarning: now an error"]
    )


def test_hide_memray_summary_hides_the_report(with_options: SharedRun) -> None:
    """--hide-memray-summary keeps tracking and limits but prints no MEMRAY REPORT."""
    result = with_options.result
    assert outcomes_in(result, "test_hide_memray_summary_hides_the_report.py") == {"failed": 1}
    result.stdout.no_fnmatch_line("*MEMRAY REPORT*")
