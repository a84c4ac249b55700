"""``python -m pytest_memray_isolate compare``: the comparison itself (unit), the command
line as users run it (subprocess), and its page in headless Chromium (chromium_page.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from chromium_page import open_page
from conftest import Runner
from pytest_memray_isolate._reporting.compare import (
    METRICS,
    ReportError,
    compare,
    load_report,
    parse_threshold,
    terminal_lines,
)

MiB = 1024 * 1024
PEAK = METRICS["peak"]


def _document(tests: Dict[str, Optional[int]], *, minor: int = 1, **extra: Any) -> Dict[str, Any]:
    """A report of the schema's shape with the given peaks (allocations: a tenth of them)."""
    return {
        "schema": "pytest-memray-isolate/report",
        "version": 1,
        "minor_version": minor,
        "tests": [
            {
                "nodeid": nodeid,
                "peak_memory": peak,
                "total_allocations": None if peak is None else peak // 10,
                **extra,
            }
            for nodeid, peak in tests.items()
        ],
    }


BASE = _document(
    {"t.py::grows": 10 * MiB, "t.py::shrinks": 8 * MiB, "t.py::same": MiB, "t.py::gone": 2 * MiB}
)
NEW = _document(
    {"t.py::grows": 15 * MiB, "t.py::shrinks": 4 * MiB, "t.py::same": MiB, "t.py::added": 3 * MiB}
)


def test_comparison_matches_tests_by_node_id() -> None:
    """Tests in both runs are ordered by growth; new and removed ones are apart; the totals
    cover the tests of both runs only."""
    comparison = compare(BASE, NEW, PEAK)
    assert [(change.nodeid, change.delta) for change in comparison.changes] == [
        ("t.py::grows", 5 * MiB),
        ("t.py::same", 0),
        ("t.py::shrinks", -4 * MiB),
    ]
    assert [change.nodeid for change in comparison.new] == ["t.py::added"]
    assert [change.nodeid for change in comparison.removed] == ["t.py::gone"]
    assert (comparison.base_total, comparison.new_total) == (19 * MiB, 20 * MiB)
    assert [change.nodeid for change in comparison.most_changed(1)] == ["t.py::grows"]
    assert [change.status for change in comparison.changes] == ["grew", "unchanged", "shrank"]
    assert comparison.changes[0].ratio == pytest.approx(0.5)


def test_threshold_is_a_share_or_an_amount() -> None:
    """10% lets a test grow by a tenth; a size is an amount of bytes; for allocations a
    number; anything else says what was expected."""
    comparison = compare(BASE, NEW, PEAK)
    assert [change.nodeid for change in comparison.grown_beyond(parse_threshold("10%", PEAK))] == [
        "t.py::grows"
    ]
    assert comparison.grown_beyond(parse_threshold("50%", PEAK)) == []
    assert [c.nodeid for c in comparison.grown_beyond(parse_threshold("4 MB", PEAK))] == ["t.py::grows"]
    assert comparison.grown_beyond(parse_threshold("5 MB", PEAK)) == []
    assert parse_threshold("100", METRICS["allocations"]).bytes == 100
    with pytest.raises(ValueError, match="expected a percentage such as 10% or a number and a unit"):
        parse_threshold("lots", PEAK)
    with pytest.raises(ValueError, match="or a whole number"):
        parse_threshold("1 MB", METRICS["allocations"])


def test_a_figure_missing_in_one_run_is_neither_growth_nor_fall() -> None:
    """A test whose capture could not be read in one run, or a report without the metric
    (resident growth before schema minor version 2), is listed apart."""
    comparison = compare(_document({"t.py::a": None}), _document({"t.py::a": MiB}), PEAK)
    assert comparison.changes == ()
    assert [change.status for change in comparison.unmeasured] == ["unmeasured"]
    resident = compare(BASE, NEW, METRICS["rss"])
    assert resident.changes == ()
    assert len(resident.unmeasured) == 3
    with_resident = compare(
        _document({"t.py::a": MiB}, minor=2, rss_growth=MiB),
        _document({"t.py::a": MiB}, minor=2, rss_growth=3 * MiB),
        METRICS["rss"],
    )
    assert [change.delta for change in with_resident.changes] == [2 * MiB]


def test_terminal_lines_name_changes_new_removed_total_and_threshold() -> None:
    """The printed comparison, line for line."""
    lines = terminal_lines(
        compare(BASE, NEW, PEAK), top=10, threshold=parse_threshold("10%", PEAK), names=("a.json", "b.json")
    )
    assert lines == [
        "Peak memory: 3 tests in both runs, 1 new, 1 removed (a.json -> b.json)",
        "",
        "Changed most (2 of 2):",
        "     +5.0MiB    +50.0%  10.0MiB -> 15.0MiB  t.py::grows",
        "     -4.0MiB    -50.0%  8.0MiB -> 4.0MiB  t.py::shrinks",
        "",
        "New tests (1):",
        "      3.0MiB  t.py::added",
        "",
        "Removed tests (1):",
        "      2.0MiB  t.py::gone",
        "",
        "Total over the tests in both runs: 19.0MiB -> 20.0MiB (+1.0MiB, +5.3%)",
        "1 test grew beyond 10%:",
        "  t.py::grows (+5.0MiB)",
    ]


def test_load_report_refuses_what_is_not_a_version_1_report(tmp_path: Path) -> None:
    """A missing file, another JSON document and another schema version each get one line;
    any minor version of version 1 is read."""
    with pytest.raises(ReportError, match=r"missing.json: no such file$"):
        load_report(tmp_path / "missing.json")
    other = tmp_path / "other.json"
    other.write_text('{"tests": []}')
    with pytest.raises(ReportError, match=r"other.json: not a pytest-memray-isolate report"):
        load_report(other)
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({**BASE, "version": 2}))
    with pytest.raises(ReportError, match=r"newer.json: report schema version 2 is not supported"):
        load_report(newer)
    later_minor = tmp_path / "minor.json"
    later_minor.write_text(json.dumps({**BASE, "minor_version": 7}))
    assert load_report(later_minor)["minor_version"] == 7


# -- the command line, as users run it -----------------------------------------------


def _compare(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_memray_isolate", "compare", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    """BASE.json and NEW.json in ``tmp_path``, as documents of the schema."""
    (tmp_path / "base.json").write_text(json.dumps(BASE))
    (tmp_path / "new.json").write_text(json.dumps(NEW))
    return tmp_path


def test_command_exits_1_only_when_a_test_grew_beyond_the_threshold(reports: Path) -> None:
    """For CI: 0 without a threshold or within it, 1 beyond it, with the tests named."""
    plain = _compare(reports, "base.json", "new.json")
    assert (plain.returncode, plain.stderr) == (0, "")
    assert (
        plain.stdout.splitlines()[0]
        == "Peak memory: 3 tests in both runs, 1 new, 1 removed (base.json -> new.json)"
    )
    within = _compare(reports, "base.json", "new.json", "--threshold", "60%")
    assert within.returncode == 0
    assert within.stdout.splitlines()[-1] == "No test grew beyond 60%."
    beyond = _compare(reports, "base.json", "new.json", "--threshold", "1 MB")
    assert beyond.returncode == 1
    assert beyond.stdout.splitlines()[-2:] == ["1 test grew beyond 1 MB:", "  t.py::grows (+5.0MiB)"]
    allocations = _compare(reports, "base.json", "new.json", "--metric", "allocations", "--top", "1")
    assert "Changed most (1 of 2):" in allocations.stdout.splitlines()
    assert allocations.stdout.splitlines()[0].startswith("Allocations: ")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "error: {path}: no such file"),
        ("not json", "error: {path}: not a pytest-memray-isolate report (--memray-json writes them)"),
        (
            '{"schema": "another/tool"}',
            "error: {path}: not a pytest-memray-isolate report (--memray-json writes them)",
        ),
        (
            json.dumps({**BASE, "version": 2}),
            "error: {path}: report schema version 2 is not supported (this version reads version 1)",
        ),
    ],
    ids=["missing", "not-json", "another-schema", "version-2"],
)
def test_a_file_that_is_not_a_report_is_one_line_and_exit_2(
    reports: Path, content: Optional[str], message: str
) -> None:
    """Each unreadable input is named on one line of stderr; nothing is printed to stdout."""
    if content is not None:
        (reports / "bad.json").write_text(content)
    result = _compare(reports, "base.json", "bad.json")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [message.format(path="bad.json")]


def test_a_bad_threshold_or_count_is_a_usage_error(reports: Path) -> None:
    """argparse's usage error, exit 2, saying what a threshold or --top may be."""
    result = _compare(reports, "base.json", "new.json", "--threshold", "lots")
    assert result.returncode == 2
    assert "--threshold 'lots': expected a percentage such as 10% or a number and a unit" in result.stderr
    result = _compare(reports, "base.json", "new.json", "--top", "0")
    assert result.returncode == 2
    assert "argument --top: expected a whole number, 1 or more, not '0'" in result.stderr


# -- the page, from two real runs, in a browser -----------------------------------------

_BEFORE = """
import pytest

@pytest.mark.parametrize("size", [2, 4, 8])
def test_sized(size):
    assert bytearray(size * 1024 * 1024)

def test_shrinks():
    assert bytearray(6 * 1024 * 1024)

def test_goes_away():
    assert bytearray(1024 * 1024)
"""

_AFTER = """
import pytest

@pytest.mark.parametrize("size", [2, 4, 8])
def test_sized(size):
    assert bytearray(size * 3 * 1024 * 1024)

def test_shrinks():
    assert bytearray(1024 * 1024)

def test_is_new():
    assert bytearray(1024 * 1024)
"""


def _ids(page: Any, selector: str) -> List[str]:
    ids: List[str] = page.evaluate(
        f"Array.from(document.querySelectorAll({json.dumps(selector)})).filter(r => !r.hidden)"
        ".map(r => r.cells[0].textContent)"
    )
    return ids


def test_the_comparison_page_of_two_runs_works_in_a_browser_without_network(
    pytester: pytest.Pytester, run: Runner, tmp_path: Path
) -> None:
    """From two real runs: one bar per test of both runs, one row per test of either; a
    click on the Change header sorts by change; the filter hides rows; the tests over the
    threshold are named; the page asked for nothing but its file."""
    pytester.makepyfile(test_suite=_BEFORE)
    run("--memray", "--memray-json=base.json").assert_outcomes(passed=5)
    pytester.makepyfile(test_suite=_AFTER)
    run("--memray", "--memray-json=new.json").assert_outcomes(passed=5)
    result = _compare(
        pytester.path, "base.json", "new.json", "--threshold", "50%", "--html", "out/compare.html"
    )
    assert result.returncode == 1, result.stderr
    page_path = pytester.path / "out" / "compare.html"
    assert result.stdout.splitlines()[-1] == "Comparison page: out/compare.html"
    base, new = (
        json.loads((pytester.path / name).read_text())["tests"] for name in ("base.json", "new.json")
    )
    before = {test["nodeid"]: test["peak_memory"] for test in base}
    after = {test["nodeid"]: test["peak_memory"] for test in new}
    both = [nodeid for nodeid in after if nodeid in before]
    growth_first = sorted(both, key=lambda nodeid: after[nodeid] - before[nodeid], reverse=True)

    with open_page(page_path, tmp_path / "profile") as page:
        assert page.evaluate("document.querySelectorAll('#chart .bars path').length") == len(both) == 4
        assert page.evaluate("document.querySelectorAll('#tests tbody tr').length") == 6
        assert page.evaluate(
            "Array.from(document.querySelectorAll('#chart .bars path')).map(b => b.getAttribute('class'))"
        ) == [
            "grew",
            "grew",
            "grew",
            "shrank",
        ]
        assert _ids(page, "#tests tbody tr")[:4] == growth_first
        assert (
            page.evaluate("document.querySelector('#tests tr.new').cells[0].textContent")
            == "test_suite.py::test_is_new"
        )
        assert page.evaluate("document.querySelector('#tests tr.removed').cells[0].textContent") == (
            "test_suite.py::test_goes_away"
        )

        page.click("#tests th:nth-child(5)")  # Change: the biggest first
        page.click("#tests th:nth-child(5)")  # then the biggest fall first
        assert _ids(page, "#tests tbody tr")[:4] == growth_first[::-1]

        page.type("#filter", "sized")
        assert sorted(_ids(page, "#tests tbody tr")) == sorted(nodeid for nodeid in both if "sized" in nodeid)

        over = page.evaluate("Array.from(document.querySelectorAll('#over li')).map(li => li.textContent)")
        assert [line.split(": ")[0] for line in over] == [
            f"test_suite.py::test_sized[{size}]" for size in (8, 4, 2)
        ]

        assert page.errors() == []
        assert [url for url in page.requested() if not url.startswith("file:")] == []
