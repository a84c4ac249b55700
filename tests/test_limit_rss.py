"""Resident memory growth per test (_tracking/resident.py) and the limit_rss marker.

The figure is measured where the test runs, so the four ways of tracking each get one
shared run (one interpreter a mode) that holds every check where the mode matters; what
is decided in pytest's process alone (marker validation, the default limit, how the
markers combine, a platform without the figure) runs once, in process.
"""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any, Dict

import pytest

from conftest import EVERY_MODE_FLAG, Runner, outcomes_in, report_sections, run_once, run_suites
from pytest_memray_isolate._judging.limits import check_rss
from pytest_memray_isolate._plan import RssLimit
from pytest_memray_isolate._tracking import resident
from pytest_memray_isolate._tracking.resident import Resident, ResidentProbe, statm_resident, status_value

MIB = 1024**2

#: A piece of /proc/self/status as Linux 6 writes it.
_STATUS = b"""Name:\tpython3
Umask:\t0022
State:\tR (running)
VmPeak:\t  123456 kB
VmHWM:\t   98304 kB
VmRSS:\t   65536 kB
RssAnon:\t   40000 kB
Threads:\t1
"""


def test_status_value_reads_a_size_in_bytes() -> None:
    """VmHWM and VmRSS are read by their own key (not a longer one), in bytes."""
    assert status_value(_STATUS, b"VmHWM") == 98304 * 1024
    assert status_value(_STATUS, b"VmRSS") == 65536 * 1024
    assert status_value(_STATUS, b"Rss") is None  # RssAnon is another key
    assert status_value(b"VmHWM:\t 8 kB", b"VmHWM") == 8 * 1024  # first line, no newline at the end


def test_status_value_ignores_what_follows_the_text_and_rejects_bad_lines() -> None:
    """A buffer's trailing zeros do not matter; a missing key or an unreadable value gives None."""
    assert status_value(_STATUS + bytes(100), b"VmRSS") == 65536 * 1024
    assert status_value(bytearray(_STATUS) + bytes(100), b"VmHWM") == 98304 * 1024
    assert status_value(_STATUS, b"VmSwap") is None
    assert status_value(b"VmHWM:\tlots kB\n", b"VmHWM") is None
    assert status_value(b"VmHWM:\t12 pages\n", b"VmHWM") is None


def test_statm_resident_is_its_second_field_in_pages() -> None:
    """/proc/self/statm gives sizes in pages; the resident one is the second field (what
    psutil's memory_info().rss reads); trailing zero bytes and bad text are handled."""
    assert statm_resident(b"12345 2048 512 3 0 4000 0\n", 4096) == 2048 * 4096
    assert statm_resident(bytearray(b"12345 2048 512 3 0 4000 0\n") + bytes(50), 4096) == 2048 * 4096
    assert statm_resident(b"12345\n", 4096) is None
    assert statm_resident(b"", 4096) is None
    assert statm_resident(b"1 x 2\n", 4096) is None


def test_statm_resident_is_psutils_figure() -> None:
    """In this process, statm's resident size is psutil's rss, read a moment apart."""
    import mmap

    import psutil

    with open("/proc/self/statm", "rb") as stream:
        ours = statm_resident(stream.read(), mmap.PAGESIZE)
    theirs = psutil.Process().memory_info().rss
    assert ours is not None
    assert abs(ours - theirs) < MIB


def test_growth_is_the_peak_over_the_start_and_never_negative() -> None:
    """A peak below the start (pages freed since, counters' lag) is no growth; a missing
    figure gives no growth, and says why."""
    assert Resident(start=10 * MIB, peak=74 * MIB).growth == 64 * MIB
    assert Resident(start=10 * MIB, peak=9 * MIB).growth == 0
    missing = Resident(unavailable="unavailable on this platform")
    assert missing.growth is None
    assert missing.description == "unavailable on this platform"


def test_the_probe_measures_pages_touched_between_reset_and_read() -> None:
    """In this process: 32 MiB touched after the reset show in the growth (Linux only)."""
    import mmap

    probe = ResidentProbe()
    probe.reset()
    mapping = mmap.mmap(-1, 32 * MIB)
    for offset in range(0, 32 * MIB, mmap.PAGESIZE):
        mapping[offset] = 1
    probe.read_peak()
    mapping.close()
    growth = probe.figures().growth
    assert growth is not None
    assert growth >= 30 * MIB


def test_the_probe_says_the_figure_is_unavailable_without_clear_refs(monkeypatch: pytest.MonkeyPatch) -> None:
    """No clear_refs file (not Linux): no figure, and the reason names the platform."""
    monkeypatch.setattr(resident, "CLEAR_REFS", "/nonexistent/clear_refs")
    probe = ResidentProbe()
    probe.reset()
    probe.read_peak()
    figures = probe.figures()
    assert figures.growth is None
    assert figures.unavailable == "unavailable on this platform (it needs Linux's /proc/self/clear_refs)"


def test_check_rss_fails_at_the_limit_naming_the_test_limit_and_figure() -> None:
    """Reaching the limit fails (as limit_memory's does), with a memray section; under it passes."""
    limit = RssLimit(limit=32 * MIB, text="32 MB")
    verdict = check_rss("t.py::test_it", Resident(start=10 * MIB, peak=74 * MIB), limit, heap_peak=MIB)
    assert verdict is not None
    assert verdict.message == (
        "Test t.py::test_it was limited to 32.0MiB of resident memory growth but grew by 64.0MiB"
    )
    assert verdict.section == (
        "memray-resident-memory",
        "Peak resident size during the call: 74.0MiB (at its start: 10.0MiB)\n"
        "memray's peak of the call's allocations: 1.0MiB",
    )
    assert check_rss("t.py::test_it", Resident(start=10 * MIB, peak=42 * MIB), limit) is not None
    assert check_rss("t.py::test_it", Resident(start=10 * MIB, peak=41 * MIB), limit) is None


def test_check_rss_without_a_figure_fails_saying_why() -> None:
    """A limit that cannot be checked fails, without a memray section (not a memory problem)."""
    limit = RssLimit(limit=32 * MIB, text="32 MB")
    verdict = check_rss("t.py::test_it", Resident(unavailable="unavailable on this platform"), limit)
    assert verdict is not None
    assert verdict.message == (
        "Test t.py::test_it was limited to 32.0MiB of resident memory growth,"
        " but the growth is unavailable on this platform"
    )
    assert verdict.section is None


# -- one run per way of tracking --------------------------------------------------------


def _touching(mib: int) -> str:
    """A test module's start: ``touched()`` maps ``mib`` MiB and writes to every page of it."""
    return textwrap.dedent(
        f"""
        import mmap
        import pytest

        SIZE = {mib} * 1024 * 1024

        def touched():
            mapping = mmap.mmap(-1, SIZE)
            for offset in range(0, SIZE, mmap.PAGESIZE):
                mapping[offset] = 1
            mapping.close()
        """
    )


#: A module whose tests grow their resident memory by 16 MiB.
_TOUCHING = _touching(16)

_MAPPING = _touching(64) + textwrap.dedent(
    """
    def test_touches_64_mib():
        touched()


    def test_maps_64_mib_untouched():
        mapping = mmap.mmap(-1, SIZE)
        mapping.close()


    @pytest.mark.limit_rss("32 MB")
    def test_over_its_limit():
        touched()


    @pytest.mark.limit_rss("512 MB")
    def test_under_its_limit():
        touched()
    """
)


#: A memray_region test's resident growth, judged over its whole call: in process only
#: (where the judging is decided), in the in-process shared run, after test_mapping.
_WHOLE_CALL = (
    _TOUCHING
    + "\n@pytest.mark.limit_rss('4 MB')\ndef test_over(memray_region):\n    touched()\n"
    + "    with memray_region():\n        pass\n"
    + "\n@pytest.mark.limit_rss('1 GB')\ndef test_under(memray_region):\n    touched()\n"
    + "    with memray_region():\n        pass\n"
)


def _shared(factory: pytest.TempPathFactory, mode: str) -> Dict[str, Any]:
    """The mapping suite run once in ``mode``, with its JSON report and JUnit XML; in
    process, with _WHOLE_CALL's module too (its tests run after the mapping's, whose
    figures they cannot change: each test's growth is measured from its own start)."""
    suites = {"test_mapping": _MAPPING}
    if mode == "in-process":
        suites["test_whole_call"] = _WHOLE_CALL
    flags = [EVERY_MODE_FLAG[mode], "-rA", "--memray-json=out.json", "--junitxml=junit.xml"]
    shared_run = run_once(factory, f"limit-rss-{mode}", lambda path: run_suites(path, suites, *flags))
    document = json.loads((shared_run.path / "out.json").read_text())
    return {
        "result": shared_run.result,
        "tests": {test["nodeid"].split("::")[1]: test for test in document["tests"]},
        "junit": ElementTree.parse(shared_run.path / "junit.xml").getroot(),
    }


@pytest.fixture(scope="module", params=sorted(EVERY_MODE_FLAG))
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """The mapping suite run once per way of tracking, with its JSON report and JUnit XML."""
    return _shared(tmp_path_factory, str(request.param))


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """The in-process run of the mapping suite, which also holds _WHOLE_CALL's module."""
    return _shared(tmp_path_factory, "in-process")


def test_touched_pages_show_as_resident_growth(shared: Dict[str, Any]) -> None:
    """64 MiB mapped and touched: a resident growth of at least 60 MiB, in every mode, in the
    JSON report, the MEMRAY REPORT and the JUnit properties alike."""
    entry = shared["tests"]["test_touches_64_mib"]
    assert entry["rss_growth"] >= 60 * MIB
    result: pytest.RunResult = shared["result"]
    block_start = result.outlines.index(
        "Allocation results for test_mapping.py::test_touches_64_mib at the high watermark"
    )
    resident_lines = [line for line in result.outlines[block_start:] if "Resident memory growth" in line]
    assert resident_lines[0].startswith("\t 🧠 Resident memory growth: 6")  # 60.0MiB to 64.0MiB
    assert resident_lines[0].endswith("MiB")
    case = shared["junit"].find(".//testcase[@name='test_touches_64_mib']")
    assert case is not None
    properties = {item.get("name"): item.get("value") for item in case.iter("property")}
    assert properties["memray_rss_growth"] == str(entry["rss_growth"])


def test_an_untouched_mapping_is_in_memrays_peak_but_not_resident(shared: Dict[str, Any]) -> None:
    """memray counts the 64 MiB mapping; the pages were never touched, so the process did
    not grow: the two figures are far apart."""
    entry = shared["tests"]["test_maps_64_mib_untouched"]
    assert entry["peak_memory"] >= 64 * MIB
    assert entry["rss_growth"] < 8 * MIB


def test_limit_rss_fails_over_and_passes_under(shared: Dict[str, Any]) -> None:
    """Over its limit: a memory problem (M) with the message naming the test, the limit and
    the growth, and a memray-resident-memory section; under it: passes."""
    result: pytest.RunResult = shared["result"]
    assert outcomes_in(result, "test_mapping.py") == {"passed": 3, "failed": 1}
    section = pytest.LineMatcher(report_sections(result.outlines)["test_over_its_limit"])
    section.fnmatch_lines(
        [
            "Test test_mapping.py::test_over_its_limit was limited to 32.0MiB of resident memory growth"
            " but grew by 6*MiB",
            "*- memray-resident-memory -*",
            "Peak resident size during the call: *MiB (at its start: *MiB)",
            "memray's peak of the call's allocations: 64.0MiB",
        ]
    )
    result.stdout.fnmatch_lines(["test_mapping.py ..M.*"])
    assert shared["tests"]["test_over_its_limit"]["limit"] == {
        "kind": "limit_rss",
        "bytes": 32 * MIB,
        "text": "32 MB",
        "source": "marker",
    }


# -- decided in pytest's process: once ---------------------------------------------------


def test_the_default_limit_applies_unless_the_closest_marker_says_otherwise(
    pytester: pytest.Pytester, run_inprocess: Runner
) -> None:
    """The ini default fails an unmarked test; a module's pytestmark overrides the default
    and a test's own marker overrides the module's."""
    pytester.makeini("[pytest]\nmemray_limit_rss = 4 MB\n")
    pytester.makepyfile(
        test_default=_TOUCHING + "\ndef test_by_default():\n    touched()\n",
        test_module=_TOUCHING
        + "\npytestmark = pytest.mark.limit_rss('1 GB')\n"
        + "\ndef test_module_loosens():\n    touched()\n"
        + "\n@pytest.mark.limit_rss('4 MB')\ndef test_own_tightens():\n    touched()\n",
    )
    result = run_inprocess("--memray", "-rA", "--memray-json=out.json")
    result.assert_outcomes(passed=1, failed=2)
    sections = report_sections(result.outlines)
    assert sections["test_by_default"][0].startswith(
        "Test test_default.py::test_by_default was limited to 4.0MiB of resident memory growth but grew by "
    )
    assert sections["test_own_tightens"][0].startswith(
        "Test test_module.py::test_own_tightens was limited to 4.0MiB of resident memory growth"
    )
    result.stdout.fnmatch_lines(["test_default.py M*", "test_module.py .M*"])
    document = json.loads((pytester.path / "out.json").read_text())
    assert document["settings"]["limit_rss"] == 4 * MIB
    limits = {test["nodeid"]: test["limit"] for test in document["tests"]}
    assert limits["test_default.py::test_by_default"]["source"].startswith("memray_limit_rss in the ini file")


def test_the_command_line_default_is_a_size(pytester: pytest.Pytester, run_inprocess: Runner) -> None:
    """--memray-limit-rss takes a size and says so when it is not one."""
    pytester.makepyfile(_TOUCHING + "\ndef test_it():\n    touched()\n")
    failed = run_inprocess("--memray", "--memray-limit-rss=4 MB")
    failed.assert_outcomes(failed=1)
    passed = run_inprocess("--memray", "--memray-limit-rss=1 GB")
    passed.assert_outcomes(passed=1)
    bad = run_inprocess("--memray", "--memray-limit-rss=lots")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(
        ["ERROR: --memray-limit-rss = 'lots' (from the command line): expected a number and a unit, *"]
    )


def test_limit_rss_combines_with_the_other_limits(pytester: pytest.Pytester, run_inprocess: Runner) -> None:
    """Like limit_allocations, limit_rss goes with limit_memory on the same test (no "one
    marker" error): each is checked, and the first that fails is reported."""
    pytester.makepyfile(
        _TOUCHING
        + "\n@pytest.mark.limit_memory('1 GB')\n@pytest.mark.limit_rss('4 MB')\n"
        + "def test_rss_fails():\n    touched()\n"
        + "\n@pytest.mark.limit_memory('1 MB')\n@pytest.mark.limit_rss('1 GB')\n"
        + "def test_memory_fails():\n    touched()\n"
    )
    result = run_inprocess("--memray", "-rA")
    result.assert_outcomes(failed=2)
    sections = report_sections(result.outlines)
    pytest.LineMatcher(sections["test_rss_fails"]).fnmatch_lines(
        ["Test *::test_rss_fails was limited to 4.0MiB of resident memory growth but grew by *"]
    )
    pytest.LineMatcher(sections["test_memory_fails"]).fnmatch_lines(
        ["Test was limited to 1.0MiB but allocated *"]
    )
    result.stdout.no_fnmatch_line("*Only one Memray marker*")


def test_limit_rss_judges_a_test_that_measures_regions_over_its_whole_call(
    in_process: Dict[str, Any],
) -> None:
    """A memray_region test's resident growth is its whole call's, regions or not: 16 MiB
    touched outside its region fail a 4 MB limit_rss, and pass a 1 GB one."""
    result: pytest.RunResult = in_process["result"]
    assert outcomes_in(result, "test_whole_call.py") == {"passed": 1, "failed": 1}
    pytest.LineMatcher(report_sections(result.outlines)["test_over"]).fnmatch_lines(
        ["Test *::test_over was limited to 4.0MiB of resident memory growth but grew by 1*MiB"]
    )


def test_without_the_figure_a_limit_rss_test_fails_and_the_report_says_so(
    pytester: pytest.Pytester, run_inprocess: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where /proc/self/clear_refs is missing, a limit_rss test fails saying the figure is
    unavailable (not a memory problem: F, not M); others pass, the MEMRAY REPORT says why
    there is no figure, the JSON has null and JUnit no property."""
    monkeypatch.setattr(resident, "CLEAR_REFS", str(Path("/nonexistent") / "clear_refs"))
    pytester.makepyfile(
        _TOUCHING
        + "\n@pytest.mark.limit_rss('1 GB')\ndef test_limited():\n    touched()\n"
        + "\ndef test_plain():\n    touched()\n"
    )
    result = run_inprocess("--memray", "-rA", "--memray-json=out.json", "--junitxml=junit.xml")
    result.assert_outcomes(passed=1, failed=1)
    pytest.LineMatcher(report_sections(result.outlines)["test_limited"]).fnmatch_lines(
        [
            "Test *::test_limited was limited to 1.0GiB of resident memory growth, but the growth is"
            " unavailable on this platform (it needs Linux's /proc/self/clear_refs)",
        ]
    )
    result.stdout.fnmatch_lines(["test_without_the_figure_*.py F *"])
    unavailable = (
        "\t 🧠 Resident memory growth: unavailable on this platform (it needs Linux's /proc/self/clear_refs)"
    )
    assert result.outlines.count(unavailable) == 2
    document = json.loads((pytester.path / "out.json").read_text())
    assert [test["rss_growth"] for test in document["tests"]] == [None, None]
    names = [item.get("name") for item in ElementTree.parse(pytester.path / "junit.xml").iter("property")]
    assert "memray_peak_memory" in names
    assert "memray_rss_growth" not in names


def test_limit_rss_works_without_memray(pytester: pytest.Pytester, run_inprocess: Runner) -> None:
    """Like the other markers, limit_rss alone tracks the marked test (only it), without a
    MEMRAY REPORT."""
    pytester.makepyfile(
        _TOUCHING
        + "\n@pytest.mark.limit_rss('4 MB')\ndef test_marked():\n    touched()\n"
        + "\ndef test_unmarked():\n    touched()\n"
    )
    result = run_inprocess("-rA")
    result.assert_outcomes(passed=1, failed=1)
    pytest.LineMatcher(report_sections(result.outlines)["test_marked"]).fnmatch_lines(
        ["Test *::test_marked was limited to 4.0MiB of resident memory growth but grew by *"]
    )
    result.stdout.no_fnmatch_line("*MEMRAY REPORT*")
