"""--memray-html: the page's parts (unit), and the page of a real run opened in headless
Chromium with the network off, checked on the DOM the browser builds after real clicks
and typing (chromium_page.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from chromium_page import file_of, open_page
from conftest import Runner
from pytest_memray_isolate._isolation.messages import ExitFacts
from pytest_memray_isolate._judging.capture import RegionFigures
from pytest_memray_isolate._reporting.html_report import child_cause, page_rows, page_text, rollup
from pytest_memray_isolate._reporting.pages import Scale, href, size_text
from pytest_memray_isolate._reporting.record import TestRecord

MiB = 1024 * 1024


def _record(nodeid: str, peak: Any, **fields: Any) -> TestRecord:
    defaults: Dict[str, Any] = {"outcome": "passed", "mode": "fork", "limit": None, "duration": 0.5}
    defaults.update(fields)
    return TestRecord(
        nodeid=nodeid, peak_memory=peak, total_allocations=None if peak is None else 3, **defaults
    )


def test_rows_are_heaviest_first_with_unmeasured_tests_last() -> None:
    """The chart and the table start in the same order: peaks descending, then tests whose
    capture could not be read, in run order."""
    records = [_record("a.py::small", 1), _record("a.py::none", None), _record("b.py::big", 9 * MiB)]
    assert [row.nodeid for row in page_rows(records, Path("/r"))] == [
        "b.py::big",
        "a.py::small",
        "a.py::none",
    ]


def test_margin_says_how_much_of_a_memory_limit_is_left_or_over() -> None:
    """limit_memory gives a margin in sizes as the MEMRAY REPORT writes them; a leaks limit,
    which is not on the peak, gives none and is not drawn on the chart."""
    limit = {"kind": "limit_memory", "bytes": 4 * MiB, "text": "4 MB", "source": "marker"}
    leaks = {
        "kind": "limit_leaks",
        "bytes": MiB,
        "text": "1 MB",
        "source": "marker",
        "warmups": 0,
        "repeats": 1,
    }
    rows = page_rows(
        [
            _record("t.py::under", MiB, limit=limit),
            _record("t.py::over", 6 * MiB, limit=limit),
            _record("t.py::leaking", MiB // 2, limit=leaks),
        ],
        Path("/r"),
    )
    by_name = {row.nodeid: row for row in rows}
    assert by_name["t.py::under"].margin_text == "3.0MiB left · 25%"
    assert by_name["t.py::over"].margin_text == "2.0MiB over · 150%"
    assert by_name["t.py::under"].memory_limit == 4 * MiB
    assert (by_name["t.py::under"].limit_text, by_name["t.py::leaking"].limit_text) == ("4 MB", "leaks 1 MB")
    assert by_name["t.py::leaking"].margin_text == "—"
    assert by_name["t.py::leaking"].memory_limit is None


def test_a_child_that_did_not_report_is_named_with_its_cause() -> None:
    """Crashes and kills read differently; the row is of the crashed kind whatever its outcome."""
    assert (
        child_cause(ExitFacts(exit_code=3, signal=None, killed_for=None, max_rss=0))
        == "crashed: exit status 3"
    )
    assert (
        child_cause(ExitFacts(exit_code=None, signal="SIGSEGV", killed_for=None, max_rss=0))
        == "crashed: SIGSEGV"
    )
    killed = ExitFacts(exit_code=None, signal="SIGKILL", killed_for="memory", max_rss=0)
    assert child_cause(killed) == "killed: over its resident memory ceiling"
    (row,) = page_rows([_record("t.py::dies", None, outcome="failed", child=killed)], Path("/r"))
    assert (row.kind, row.cause) == ("crashed", "killed: over its resident memory ceiling")


def test_resident_growth_and_its_limit_show_where_a_record_has_them() -> None:
    """A record without the resident figure (a platform without it) shows a dash; one with
    it shows its size, and a limit_rss its margin, as limit_memory's is for the peak."""
    (row,) = page_rows([_record("t.py::a", MiB)], Path("/r"))
    assert row.resident_text == "—"
    limit = {"kind": "limit_rss", "bytes": 8 * MiB, "text": "8 MB", "source": "marker"}
    (row,) = page_rows([_record("t.py::b", MiB, rss_growth=2 * MiB, limit=limit)], Path("/r"))
    assert (row.resident_text, row.limit_text, row.margin_text) == (
        "2.0MiB",
        "resident 8 MB",
        "6.0MiB left · 25%",
    )
    assert row.memory_limit is None  # not drawn on the chart of peaks


def test_a_test_that_measured_regions_says_so_and_links_their_captures() -> None:
    """Its figures are the highest of its regions: the row says how many, and links each
    kept region capture; a test without regions says nothing of them."""
    regions = tuple(
        RegionFigures(
            number, "/r/t.py", 3 + number, MiB * number, 1, (), capture_file=f"/r/c/t-region{number}.bin"
        )
        for number in (1, 2)
    )
    (row,) = page_rows([_record("t.py::measured", 2 * MiB, regions=regions)], Path("/r"))
    assert row.regions_text == "highest of 2 memray_regions"
    assert row.links[-2:] == (
        ("capture of region 1", "c/t-region1.bin"),
        ("capture of region 2", "c/t-region2.bin"),
    )
    page = page_text([_record("t.py::measured", 2 * MiB, regions=regions)], page_dir=Path("/r"), exitstatus=0)
    assert '<span class="note">highest of 2 memray_regions</span>' in page
    (plain,) = page_rows([_record("t.py::plain", MiB)], Path("/r"))
    assert plain.regions_text == ""


def test_rollup_groups_tests_by_file() -> None:
    """One line per file: how many tests, failures and crashes, and its heaviest test."""
    crash = ExitFacts(exit_code=1, signal=None, killed_for=None, max_rss=0)
    rows = page_rows(
        [
            _record("a.py::one", MiB),
            _record("a.py::two", 5 * MiB, outcome="failed"),
            _record("b.py::three", 2 * MiB, outcome="failed", child=crash),
        ],
        Path("/r"),
    )
    files = {item.path: item for item in rollup(rows)}
    assert [item.path for item in rollup(rows)] == ["a.py", "b.py"]
    assert (files["a.py"].tests, files["a.py"].failed, files["a.py"].crashed) == (2, 1, 0)
    assert (files["a.py"].highest_nodeid, files["a.py"].highest_text) == ("a.py::two", "5.0MiB")
    assert (files["b.py"].failed, files["b.py"].crashed) == (1, 1)


def test_links_are_relative_to_the_page() -> None:
    """A page and its flame graphs can move together; odd characters are quoted."""
    assert href("/run/graphs/flame #1.html", Path("/run/reports")) == "../graphs/flame%20%231.html"
    assert (
        href("/run/graphs/p-t.py-test[a=1,b@2].html", Path("/run")) == "graphs/p-t.py-test%5Ba=1,b@2%5D.html"
    )
    assert href("/run/graphs/p-t.py-tést.html", Path("/run/graphs")) == "p-t.py-t%C3%A9st.html"


def test_log_scale_keeps_small_peaks_visible() -> None:
    """On the log scale a peak a million times smaller than the top still has height."""
    scale = Scale.over([10, 10 * MiB])
    assert scale.linear(10) < 0.001
    assert scale.log(10) > 10
    assert scale.log(10 * MiB) == scale.linear(10 * MiB) == pytest.approx(220.0)
    assert all(label.endswith("B") for _, label in scale.log_ticks())


def test_the_page_escapes_test_ids() -> None:
    """A parameter id with markup in it is shown as text, never run as markup."""
    text = page_text(
        [_record("t.py::test[<script>alert(1)</script>]", MiB)], page_dir=Path("/"), exitstatus=0
    )
    assert "<script>alert(1)" not in text
    assert "&lt;script&gt;alert(1)" in text


# -- the page of a real run, in a browser -----------------------------------------------

_SUITE = """
import os

import pytest


@pytest.mark.limit_memory("64 MB")
def test_heavy():
    data = bytearray(24 * 1024 * 1024)
    assert data


@pytest.mark.limit_memory("1 MB")
def test_over_its_limit():
    data = bytearray(3 * 1024 * 1024)
    assert data


def test_crashes():
    data = bytearray(6 * 1024 * 1024)
    assert data
    os._exit(3)


@pytest.mark.parametrize("size", [1, 2, 4])
def test_small(size):
    data = bytearray(size * 100 * 1024)
    assert data
"""


def _run_suite(pytester: pytest.Pytester, run: Runner) -> Dict[str, Any]:
    pytester.makepyfile(test_suite=_SUITE)
    result = run(
        "--memray-isolate",
        "--memray-flamegraph=graphs",
        "--memray-flamegraph-all",
        "--memray-bin-path=captures",
        "--memray-json=report.json",
        "--memray-html=pages/report.html",
    )
    result.assert_outcomes(passed=4, failed=2)
    document: Dict[str, Any] = json.loads((pytester.path / "report.json").read_text())
    return document


def _visible_ids(page: Any) -> List[str]:
    ids: List[str] = page.evaluate(
        "Array.from(document.querySelectorAll('#tests tbody tr')).filter(r => !r.hidden)"
        ".map(r => r.cells[0].textContent)"
    )
    return ids


def test_the_page_of_a_run_works_in_a_browser_without_network(
    pytester: pytest.Pytester, run: Runner, tmp_path: Path
) -> None:
    """One bar and one row per tracked test, heaviest first; a click on the Peak header sorts
    the rows by peak (descending, then ascending); typing in the filter hides the other rows;
    the crashed test is marked with its cause; its flame graph and capture links lead to
    files; the log scale redraws the bars; and the page asked for nothing but files."""
    document = _run_suite(pytester, run)
    tests = document["tests"]
    page_path = pytester.path / "pages" / "report.html"
    peaks = {test["nodeid"]: test["peak_memory"] for test in tests}
    heaviest_first = sorted(peaks, key=lambda nodeid: peaks[nodeid], reverse=True)

    with open_page(page_path, tmp_path / "profile") as page:
        assert page.evaluate("document.querySelectorAll('#chart .bars path').length") == len(tests) == 6
        assert page.evaluate("document.querySelectorAll('#tests tbody tr').length") == len(tests)
        assert _visible_ids(page) == heaviest_first
        heights = page.evaluate(
            "Array.from(document.querySelectorAll('#chart .bars path')).map(b => b.getBBox().height)"
        )
        assert heights == sorted(heights, reverse=True)
        assert heights[0] > heights[-1] > 0
        colours = page.evaluate(
            "Array.from(document.querySelectorAll('#chart .bars path')).map(b => getComputedStyle(b).stroke)"
        )
        kinds = page.evaluate(
            "Array.from(document.querySelectorAll('#tests tbody tr')).map(r => r.className)"
        )
        assert len(set(colours)) == len(set(kinds)) == 3  # passed, failed, crashed: a colour each
        assert [colours[kinds.index(kind)] for kind in kinds] == colours
        # test_heavy and test_over_its_limit have a limit_memory: a mark each.
        assert page.evaluate("document.querySelectorAll('#chart .limits path').length") == 2

        page.click("#tests th:nth-child(4)")  # Peak
        assert page.evaluate(
            "document.querySelector('#tests th:nth-child(4)').getAttribute('aria-sort')"
        ) == ("descending")
        assert _visible_ids(page) == heaviest_first
        page.click("#tests th:nth-child(4)")
        assert _visible_ids(page) == heaviest_first[::-1]

        page.type("#filter", "small")
        assert sorted(_visible_ids(page)) == sorted(nodeid for nodeid in peaks if "test_small" in nodeid)
        assert page.evaluate("document.getElementById('shown').textContent") == "3 of 6 shown"
        resident = page.evaluate(
            "Object.fromEntries(Array.from(document.querySelectorAll('#tests tbody tr'))"
            ".map(r => [r.cells[0].textContent, r.cells[5].textContent]))"
        )
        assert resident == {test["nodeid"]: size_text(test["rss_growth"]) for test in tests}
        assert any(text != "—" for text in resident.values())
        page.evaluate(
            "(() => { const kind = document.getElementById('kind'); kind.value = 'crashed';"
            " kind.dispatchEvent(new Event('change')); })()"
        )
        assert _visible_ids(page) == []  # no test_small crashed
        page.evaluate("document.getElementById('filter').value = ''")
        page.type("#filter", "test_")
        assert _visible_ids(page) == ["test_suite.py::test_crashes"]

        crashed = page.evaluate(
            "Array.from(document.querySelectorAll('#tests tr.crashed')).map(r => [r.cells[0].textContent,"
            " r.cells[1].textContent, getComputedStyle(r).backgroundColor])"
        )
        assert [(nodeid, outcome) for nodeid, outcome, _ in crashed] == [
            ("test_suite.py::test_crashes", "failedcrashed: exit status 3")
        ]
        assert crashed[0][2] != page.evaluate(
            "getComputedStyle(document.querySelector('#tests tr.passed')).backgroundColor"
        )
        assert page.evaluate("document.querySelector('#crashes li').textContent") == (
            "test_suite.py::test_crashes: crashed: exit status 3"
        )

        links = page.evaluate(
            "Array.from(document.querySelectorAll('#tests a')).map(a => [a.textContent, a.getAttribute('href'), a.href])"
        )
        graphs = [(relative, url) for label, relative, url in links if label == "flame graph"]
        captures = [url for label, _, url in links if label == "capture"]
        assert len(graphs) == len(captures) == len(tests)
        for relative, url in graphs:
            assert relative.startswith("../graphs/flamegraph-")
            assert file_of(url).is_file()
        assert all(file_of(url).is_file() for url in captures)

        smallest = "document.querySelector('#chart .bars path:last-child').getBBox().height"
        linear = page.evaluate(smallest)
        page.click("#log")
        assert page.evaluate("document.getElementById('chart').classList.contains('log')")
        assert page.evaluate(smallest) > linear

        assert page.errors() == []
        requested = page.requested()
        assert requested[0] == page_path.as_uri()
        assert [url for url in requested if not url.startswith("file:")] == []


def test_a_page_that_fails_to_be_written_at_the_end_fails_the_run(
    pytester: pytest.Pytester, run: Runner
) -> None:
    """When the page cannot be written at the end, the summary names the error after the
    MEMRAY REPORT and the run fails; the JSON report is still written."""
    pytester.makepyfile(
        """
        import shutil

        def test_replaces_the_pages_directory():
            shutil.rmtree("pages")
            with open("pages", "w") as stream:
                stream.write("no longer a directory\\n")
        """
    )
    pytester.mkdir("pages")
    result = run("--memray", "--memray-html=pages/report.html", "--memray-json=report.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*MEMRAY REPORT*",
            "*",
            "Could not write the memray HTML report to */pages/report.html: *",
            "*= 1 passed in *",
        ]
    )
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    assert json.loads((pytester.path / "report.json").read_text())["summary"]["tracked"] == 1


def test_the_page_comes_from_the_ini_file_too(pytester: pytest.Pytester, run: Runner) -> None:
    """``memray_html`` in the ini file writes the page, with one row per tracked test."""
    pytester.makeini("[pytest]\nmemray_html = out/page.html\n")
    pytester.makepyfile("def test_one():\n    assert bytearray(1024)\n\ndef test_two():\n    pass\n")
    run("--memray").assert_outcomes(passed=2)
    text = (pytester.path / "out" / "page.html").read_text()
    assert text.count("<tr class=") == 2
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in text


def test_the_controller_writes_one_page_with_every_workers_tests(
    pytester: pytest.Pytester, run: Runner
) -> None:
    """Under pytest-xdist the page is written once, by the controller, with a row for each
    test whichever worker ran it."""
    pytester.makepyfile(
        "import pytest\n\n@pytest.mark.parametrize('n', range(6))\ndef test_each(n):\n    assert len(bytearray(n * 1024)) == n * 1024\n"
    )
    run("-n", "2", "--memray", "--memray-html=page.html", plugins=("xdist",)).assert_outcomes(passed=6)
    text = (pytester.path / "page.html").read_text()
    assert sorted(re.findall(r'<tr class="passed"><td>([^<]+)', text)) == [
        f"test_the_controller_writes_one_page_with_every_workers_tests.py::test_each[{n}]" for n in range(6)
    ]


def test_a_run_without_tracked_tests_writes_an_empty_page() -> None:
    """No test tracked: the page still opens, saying so, with an empty chart and table."""
    text = page_text([], page_dir=Path("/"), exitstatus=5)
    assert "0 tracked tests" in text
    assert "<tr class=" not in text


def test_loading_the_plugin_does_not_import_jinja2() -> None:
    """jinja2 takes about a tenth of a second to import: only a run that writes a page pays
    for it, not every pytest run and spawned child."""
    code = "import sys, pytest_memray_isolate.plugin; print(sorted(m for m in sys.modules if 'jinja2' in m))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"
