"""End to end: the memray_region fixture, which tracks only the blocks a test measures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import EVERY_MODE_FLAG, Runner, SharedRun, outcomes_in, report_block, report_sections, run_once
from private_runs import left_in_tmp, run_with_private_tmp

MIB = 1024 * 1024

# -- checks that share one run per way of tracking -------------------------------------
#
# Where the mode matters: the regions' Trackers run wherever the test runs (pytest's
# process, or its child), and their figures travel home in the child's reply.

_SHARED_SUITES = {
    "test_region_excludes_setup": """
        def test_excludes(memray_region):
            setup = bytearray(40 * 1024 * 1024)  # before the region: not counted
            with memray_region() as region:
                built = bytearray(4 * 1024 * 1024)
            assert 4 * 1024 * 1024 <= region.peak_memory < 8 * 1024 * 1024
            assert region.allocations >= 1
            assert region.top_locations[0].lineno == 4
            assert len(setup) and len(built)

        def test_empty(memray_region):
            with memray_region() as region:
                pass
            with memray_region(leaks=True) as traced:
                pass
            assert region.peak_memory < 1024 and region.top_locations == ()
            assert traced.peak_memory < 2048 and traced.leaked_memory < 1024
        """,
    "test_several_regions": """
        def test_several(memray_region):
            with memray_region() as first:
                small = bytearray(2 * 1024 * 1024)
            del small
            with memray_region() as second:
                big = bytearray(6 * 1024 * 1024)
            assert (first.number, second.number) == (1, 2)
            assert first.peak_memory < second.peak_memory
            assert len(big)
        """,
    "test_limit_applies_to_the_highest_region": """
        import pytest

        @pytest.mark.limit_memory("5 MB")
        def test_highest_over(memray_region):
            with memray_region():
                bytearray(1024 * 1024)
            with memray_region():
                data = bytearray(8 * 1024 * 1024)
            assert len(data)

        @pytest.mark.limit_memory("5 MB")
        def test_every_region_under(memray_region):
            setup = bytearray(40 * 1024 * 1024)  # over the limit, but in no region
            with memray_region():
                data = bytearray(2 * 1024 * 1024)
            with memray_region():
                more = bytearray(3 * 1024 * 1024)
            assert len(setup) and len(data) and len(more)
        """,
}


_IN_PROCESS_SUITES = {
    "test_setup": """
        import pytest

        @pytest.fixture
        def measured_setup(memray_region):
            with memray_region() as region:
                data = bytearray(3 * 1024 * 1024)
            return region, data

        def test_uses_it(measured_setup):
            region, data = measured_setup
            assert 3 * 1024 * 1024 <= region.peak_memory < 4 * 1024 * 1024
            assert len(data)
        """,
    "test_limits": """
        import pytest

        KEPT = []

        @pytest.mark.limit_leaks("64 KB")
        def test_leaks_in_a_region(memray_region):
            KEPT.append(bytearray(1024 * 1024))  # outside every region: not counted
            with memray_region():
                pass
            with memray_region():
                KEPT.append(bytearray(512 * 1024))

        @pytest.mark.limit_allocations(100)
        def test_allocates_outside(memray_region):
            outside = [bytearray(1000) for _ in range(1000)]
            with memray_region():
                inside = bytearray(1000)
            assert outside and inside

        @pytest.mark.limit_allocations(100)
        def test_allocates_inside(memray_region):
            with memray_region():
                inside = [bytearray(1000) for _ in range(1000)]
            assert inside
        """,
    "test_misuse": """
        import memray
        import pytest

        def test_nested(memray_region):
            with memray_region():
                with memray_region():
                    pass

        def test_tracker_active(memray_region, tmp_path):
            with memray.Tracker(tmp_path / "own.bin"):
                with memray_region():
                    pass

        def test_read_inside(memray_region):
            with memray_region() as region:
                region.peak_memory

        def test_read_before(memray_region):
            region = memray_region()
            region.allocations

        def test_leaks_not_asked(memray_region):
            with memray_region() as region:
                pass
            region.leaked_memory

        def test_used_twice(memray_region):
            region = memray_region()
            with region:
                pass
            with region:
                pass

        @pytest.mark.limit_leaks("1 KB", repeats=2)
        def test_repeated(memray_region):
            pass

        def test_after_them(memray_region):
            with memray_region() as region:
                data = bytearray(1024 * 1024)
            assert region.peak_memory >= 1024 * 1024
        """,
}

_FORK_SUITES = {
    "test_regions_work_in_asyncio_and_anyio_tests": """
        import asyncio
        import pytest

        async def build():
            await asyncio.sleep(0)
            return bytearray(3 * 1024 * 1024)

        @pytest.mark.asyncio
        async def test_asyncio(memray_region):
            setup = bytearray(20 * 1024 * 1024)
            with memray_region() as region:
                data = await build()
            assert 3 * 1024 * 1024 <= region.peak_memory < 6 * 1024 * 1024
            assert len(setup) and len(data)

        @pytest.mark.anyio
        async def test_anyio(memray_region):
            with memray_region() as region:
                data = await build()
            assert 3 * 1024 * 1024 <= region.peak_memory < 6 * 1024 * 1024
            assert len(data)

        @pytest.fixture
        def anyio_backend():
            return "asyncio"
        """,
    "test_dies": """
        import os

        def test_dies(memray_region):
            setup = bytearray(40 * 1024 * 1024)
            with memray_region():
                pass
            with memray_region():
                rows = bytearray(8 * 1024 * 1024)
                os._exit(3)
        """,
}


def _region_run(factory: pytest.TempPathFactory, mode: str) -> SharedRun:
    """The run of one way of tracking (started once per session, see ``run_once``):
    _SHARED_SUITES, with _IN_PROCESS_SUITES in pytest's process and _FORK_SUITES (under
    pytest-asyncio and anyio's plugin) in fork mode, in a TMPDIR of its own."""
    suites = {**_SHARED_SUITES}
    flags = [EVERY_MODE_FLAG[mode], "-rA", "--memray-json=report.json"]
    keep: List[str] = []
    if mode == "in-process":
        suites.update(_IN_PROCESS_SUITES)
    if mode == "fork":
        suites.update(_FORK_SUITES)
        flags += ["-o", "asyncio_default_fixture_loop_scope=function"]
        keep += ["asyncio", "anyio"]
    return run_once(
        factory, f"region-{mode}", lambda path: run_with_private_tmp(path, suites, *flags, keep=keep)
    )


@pytest.fixture(scope="module", params=sorted(EVERY_MODE_FLAG))
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    """_SHARED_SUITES run once in process (--memray) and once in each isolation mode. The
    modules do not meet: each test measures its own regions, and its limits are markers."""
    return _region_run(tmp_path_factory, str(request.param))


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    """The run in pytest's process, which also holds what is decided there alone: a region
    in a fixture, the other limit markers, the misuses (none compares an exact figure)."""
    return _region_run(tmp_path_factory, "in-process")


@pytest.fixture(scope="module")
def forked(tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    """The fork run, which also holds the coroutine tests and a child dying in a region."""
    return _region_run(tmp_path_factory, "fork")


def _tests(run: SharedRun) -> Dict[str, Dict[str, Any]]:
    """The run's --memray-json entries, by test name."""
    document = json.loads((run.path / "report.json").read_text())
    assert document["minor_version"] == 2
    return {test["nodeid"].split("::")[-1]: test for test in document["tests"]}


def test_a_region_counts_its_block_and_not_the_setup_before_it(shared: SharedRun) -> None:
    """A 40 MiB allocation before the region is not counted (the call has no Tracker of its
    own); the 4 MiB the block allocates is, in the test's assertions and in its report. The
    resident growth is still measured, over the whole call."""
    assert outcomes_in(shared.result, "test_region_excludes_setup.py") == {"passed": 2}
    entry = _tests(shared)["test_excludes"]
    assert isinstance(entry["rss_growth"], int)
    assert 4 * MIB <= entry["peak_memory"] < 8 * MIB
    [region] = entry["regions"]
    assert region["peak_memory"] == entry["peak_memory"]
    assert region["total_allocations"] == entry["total_allocations"] >= 1
    assert (region["number"], region["lineno"]) == (1, 3)
    assert region["leaked_memory"] is None
    assert region["top_locations"][0]["lineno"] == 4
    assert region["top_locations"][0]["size"] >= 4 * MIB
    shared.result.stdout.fnmatch_lines(
        [
            "Allocation results for test_region_excludes_setup.py::test_excludes at the high watermark",
            "\t 📦 Total memory allocated: 4.0MiB",
            "\t 🥇 Biggest allocating functions:",
            "\t\t- test_excludes:*test_region_excludes_setup.py:4 -> 4.0MiB",
            "\t 🔍 Each memray_region (the figures above are the highest of them):",
            "\t\t- region 1 (test_region_excludes_setup.py:3): 4.0MiB at its peak, * allocation*",
        ]
    )


def test_a_region_counts_next_to_nothing_of_its_own(shared: SharedRun) -> None:
    """An empty region measures under a kibibyte: the region's own code, run while its
    Tracker does, allocates next to nothing (the empty test's assertions, in each mode)."""
    regions = _tests(shared)["test_empty"]["regions"]
    assert [region["number"] for region in regions] == [1, 2]
    assert regions[0]["peak_memory"] < 1024
    assert regions[1]["leaked_memory"] < 1024


def test_a_test_reports_each_of_its_regions_and_the_highest_figures(shared: SharedRun) -> None:
    """Two regions one after the other: each is reported, the test's figures are the highest."""
    assert outcomes_in(shared.result, "test_several_regions.py") == {"passed": 1}
    entry = _tests(shared)["test_several"]
    first, second = entry["regions"]
    assert (first["number"], second["number"]) == (1, 2)
    assert 2 * MIB <= first["peak_memory"] < 3 * MIB
    assert 6 * MIB <= second["peak_memory"] < 7 * MIB
    assert entry["peak_memory"] == second["peak_memory"]
    assert entry["total_allocations"] == max(first["total_allocations"], second["total_allocations"])
    shared.result.stdout.fnmatch_lines(
        [
            "\t\t- region 1 (test_several_regions.py:2): 2.0MiB at its peak, * allocation*",
            "\t\t- region 2 (test_several_regions.py:5): 6.0MiB at its peak, * allocation*",
        ]
    )


def test_limit_memory_applies_to_the_highest_region(shared: SharedRun) -> None:
    """limit_memory fails the test whose second region goes over it, naming that region,
    and passes the test whose regions stay under it though it allocates more outside them."""
    module = "test_limit_applies_to_the_highest_region.py"
    assert outcomes_in(shared.result, module) == {"passed": 1, "failed": 1}
    pytest.LineMatcher(report_sections(shared.result.outlines)["test_highest_over"]).fnmatch_lines(
        [
            f"Test was limited to 5.0MiB but allocated 8.0MiB (in memray_region 2, opened at {module}:7)",
            "*- memray-max-memory -*",
            "List of allocations:",
            "    - 8.0MiB allocated here:",
            f"        test_highest_over:*{module}:8",
        ]
    )
    shared.result.stdout.fnmatch_lines([f"MEMORY PROBLEMS {module}::test_highest_over*"])
    assert _tests(shared)["test_every_region_under"]["peak_memory"] < 4 * MIB


# -- one way of tracking each --------------------------------------------------------


_ONE_REGION = """
    def test_build(memray_region):
        data = [bytearray(1000) for _ in range(100)]  # not counted
        with memray_region() as region:
            index = {id(item): item for item in data}
        assert region.peak_memory < 50 * 1024**2
        assert region.allocations < 10_000
        assert len(index) == 100
        print(f"peak {region.peak_memory} allocations {region.allocations}")
    """


def test_without_memray_the_fixture_tracks_on_its_own(pytester: pytest.Pytester, run: Runner) -> None:
    """In an ordinary run (no --memray) the region measures and the test reads its figures;
    no MEMRAY REPORT is printed, and --memray-json lists the test with its region."""
    pytester.makepyfile(test_build=_ONE_REGION)
    result = run("-rP", "--memray-json=out.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["peak * allocations *"])
    result.stdout.no_fnmatch_line("*MEMRAY REPORT*")
    [test] = json.loads((pytester.path / "out.json").read_text())["tests"]
    assert test["mode"] == "in-process"
    assert test["regions"][0]["peak_memory"] == test["peak_memory"] > 0


def test_regions_under_xdist_reach_the_controllers_report(pytester: pytest.Pytester, run: Runner) -> None:
    """Under pytest-xdist the regions travel from the worker with the test's record: the
    controller's MEMRAY REPORT and JSON show them."""
    pytester.makepyfile(test_build=_ONE_REGION, test_other="def test_other():\n    assert True\n")
    result = run("-n", "2", "--memray-isolate=fork", "--memray-json=out.json", plugins=("xdist",))
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["\t\t- region 1 (test_build.py:3): * at its peak, * allocation*"])
    tests = json.loads((pytester.path / "out.json").read_text())["tests"]
    regions = {test["nodeid"]: test["regions"] for test in tests}
    assert regions["test_other.py::test_other"] is None
    assert [region["number"] for region in regions["test_build.py::test_build"]] == [1]


def test_the_other_limit_markers_apply_to_each_region(in_process: SharedRun) -> None:
    """limit_leaks and limit_allocations judge the regions' captures, not what the test
    does outside them: a leak or many allocations outside every region pass; inside one,
    the failure names that region."""
    result = in_process.result
    assert outcomes_in(result, "test_limits.py") == {"passed": 1, "failed": 2}
    sections = report_sections(result.outlines)
    pytest.LineMatcher(sections["test_leaks_in_a_region"]).fnmatch_lines(
        [
            "Test was allowed to leak 64.0KiB per location but at least one location leaked more"
            " (in memray_region 2, opened at test_limits.py:10)"
        ]
    )
    pytest.LineMatcher(sections["test_allocates_inside"]).fnmatch_lines(
        ["Test was limited to 100 allocations but made * (in memray_region 1, opened at test_limits.py:22)"]
    )
    result.stdout.fnmatch_lines(["PASSED test_limits.py::test_allocates_outside"])


def test_a_child_that_dies_in_a_region_reports_that_regions_peak(forked: SharedRun) -> None:
    """A child that exits inside its second region fails the test with memray's figures of
    that region (its capture keeps every allocation, so it survives the crash), not the
    40 MiB set up before it. The reports keep both regions: the first as it ended, the
    second up to the crash (the child logged each as it started and ended)."""
    result = forked.result
    assert outcomes_in(result, "test_dies.py") == {"failed": 1}
    pytest.LineMatcher(report_sections(result.outlines)["test_dies"]).fnmatch_lines(
        [
            "The isolated child process running this test exited with status 3 before reporting a result.",
            "Memory allocated at the peak before the crash: 8.0MiB (memray, in memray_region 2).",
            "Biggest allocating places at that peak:",
            "\t- test_dies:*test_dies.py:8 -> 8.0MiB",
        ]
    )
    test = _tests(forked)["test_dies"]
    assert test["child"]["exit_code"] == 3
    first, second = test["regions"]
    assert (first["number"], first["lineno"], second["number"], second["lineno"]) == (1, 5, 2, 7)
    assert first["peak_memory"] < 64 * 1024
    assert second["peak_memory"] >= 8 * 1024 * 1024
    assert second["top_locations"][0]["lineno"] == 8
    assert (second["leaked_memory"], test["peak_memory"]) == (None, second["peak_memory"])
    block = report_block(result.outlines, "test_dies")
    assert [line.split(":")[0] for line in block if line.startswith("\t\t- region")] == [
        "\t\t- region 1 (test_dies.py",
        "\t\t- region 2 (test_dies.py",
    ]


def test_each_misuse_fails_its_test_saying_what_to_do(in_process: SharedRun) -> None:
    """Nesting regions, a Tracker already running, figures read too early, leaks not asked
    for, a region used twice and a repeated limit_leaks each fail the test alone (no
    INTERNALERROR in the whole run), with a message naming the test; the regions before
    still count."""
    result = in_process.result
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    assert outcomes_in(result, "test_misuse.py") == {"failed": 6, "errors": 1, "passed": 1}
    sections = report_sections(result.outlines)
    expected: Dict[str, List[str]] = {
        "test_nested": [
            "E*Failed: test_misuse.py::test_nested: a memray_region is opened at test_misuse.py:6"
            " inside the one opened at test_misuse.py:5, which is still open; regions cannot nest:"
            " end one region's with block before opening the next"
        ],
        "test_tracker_active": [
            "E*Failed: test_misuse.py::test_tracker_active: the memray_region opened at"
            " test_misuse.py:11 cannot start its memray Tracker: another Tracker is active in this"
            " process (No more than one Tracker instance can be active at the same time); stop that"
            " Tracker before the region starts, or measure with one of the two"
        ],
        "test_read_inside": [
            "E*Failed: test_misuse.py::test_read_inside: the figures of the memray_region opened"
            " at test_misuse.py:15 are read inside its with block; they are known once the block has"
            " ended: read them after it"
        ],
        "test_read_before": [
            "E*Failed: test_misuse.py::test_read_before: the memray_region opened at"
            " test_misuse.py:19 has not measured anything: use it in a with block (with"
            " memray_region() as region: ...) and read its figures after it"
        ],
        "test_leaks_not_asked": [
            "E*Failed: test_misuse.py::test_leaks_not_asked: the memray_region opened at"
            " test_misuse.py:23 was not asked to measure leaks; open it with"
            " memray_region(leaks=True) to read its leaked_memory"
        ],
        "test_used_twice": [
            "E*Failed: test_misuse.py::test_used_twice: the memray_region opened at"
            " test_misuse.py:28 has measured its block already; each region measures one with"
            " block: open another with memray_region()"
        ],
        "ERROR at setup of test_repeated": [
            "test_misuse.py::test_repeated: limit_leaks with warmups or repeats (or"
            " --memray-repeat-leaks) repeats the whole test, which cannot be combined with the"
            " memray_region fixture; use one or the other in this test"
        ],
    }
    for name, lines in expected.items():
        pytest.LineMatcher(sections[name]).fnmatch_lines(lines)
    # The user's code is where each failure points, not the plugin's.
    pytest.LineMatcher(sections["test_read_inside"]).fnmatch_lines([">*region.peak_memory"])
    assert "_tracking/region.py" not in "\n".join(sections["test_read_inside"])
    result.stdout.fnmatch_lines(["PASSED test_misuse.py::test_after_them"])


def test_kept_captures_include_each_regions_file(pytester: pytest.Pytester, run: Runner) -> None:
    """With --memray-bin-path each region's capture is kept as NAME-regionN.bin and named in
    the JSON; memray reads it."""
    pytester.makepyfile(test_build=_ONE_REGION)
    result = run(
        "--memray-isolate=fork", "--memray-bin-path=bins", "--memray-bin-prefix=p", "--memray-json=o.json"
    )
    result.assert_outcomes(passed=1)
    [test] = json.loads((pytester.path / "o.json").read_text())["tests"]
    kept = Path(test["regions"][0]["capture_file"])
    assert kept == pytester.path / "bins" / "p-test_build.py-test_build-region1.bin"
    assert kept.stat().st_size > 0
    result.stdout.fnmatch_lines([f"Created 1 binary dumps at {pytester.path / 'bins'} with prefix p"])


def test_a_region_opened_in_a_fixture_measures_on_its_own(in_process: SharedRun) -> None:
    """A region a fixture opens during setup, outside the test's call, measures with a
    capture of its own, removed once read; the test's record lists no region of it. The
    run leaves nothing in its TMPDIR (every test of the run counts)."""
    assert outcomes_in(in_process.result, "test_setup.py") == {"passed": 1}
    test = _tests(in_process)["test_uses_it"]
    assert (test["regions"], test["peak_memory"]) == ([], None)
    assert left_in_tmp(in_process.path) == []  # its capture, and the run's scratch, are gone


def test_regions_work_in_asyncio_and_anyio_tests(forked: SharedRun) -> None:
    """A region inside a coroutine test measures its block, under pytest-asyncio and anyio."""
    module = "test_regions_work_in_asyncio_and_anyio_tests.py"
    assert outcomes_in(forked.result, module) == {"passed": 2}
    document = json.loads((forked.path / "report.json").read_text())
    tests = [test for test in document["tests"] if test["nodeid"].startswith(f"{module}::")]
    assert len(tests) == 2
    assert all(3 * MIB <= test["peak_memory"] < 6 * MIB for test in tests)
