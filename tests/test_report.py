"""Unit tests for the MEMRAY REPORT text and the figures behind it."""

from __future__ import annotations

import pytest

from pytest_memray_isolate._judging.capture import Location, MemoryResult, histogram
from pytest_memray_isolate._reporting.summary import ranked, summary_block

# Sizes and the bars pytest-memray 1.11 draws for them (its cli_hist, run on the same lists).
_SPREAD = [5433013, 2530830, 6624040, 810112, 1215280, 8990609, 1579241, 6135242, 9777561, 973061]
_SPREAD += [8513359, 3602038, 629073, 1441956, 7275368, 7015765, 1171980, 4037656, 1521912, 9245039]
_SPREAD += [7122251, 991710, 9486739, 2077053, 3745329, 9781065, 1037873, 9682181, 9823755, 6655195]
_SPREAD += [831971, 3709138, 781528, 9339288, 2234303, 4858838, 7031987, 2420199, 9071204, 1976226]
_SPREAD += [9578343, 5175467, 9399558, 3032086, 1728988, 9757632, 9583220, 3151953, 6247795, 1634614]


@pytest.mark.parametrize(
    ("sizes", "bars"),
    [
        ([1024], "█"),
        ([1, 1024], "█ "),
        ([0, 10, 100, 1000, 10000, 100000], "▄▄█ █"),
        ([608, 4194308, 1096], "█ ▄"),
        ([5] * 7, "█    "),
        (_SPREAD, "▂▂▂▂█"),
    ],
)
def test_histogram_draws_the_bars_pytest_memray_draws(sizes: list[int], bars: str) -> None:
    """Same bins, same log scale, same bar glyphs: at most five bars, one per bin."""
    assert histogram(sizes) == bars


def test_histogram_of_nothing_is_empty() -> None:
    """A test with no allocation at its high watermark has no histogram (and no report block)."""
    assert histogram([]) == ""


def _result(nodeid: str, peak: int) -> MemoryResult:
    return MemoryResult(nodeid, peak, 1, "█", (Location("f", "t.py", 1, peak),))


def test_ranked_keeps_the_highest_peaks_in_run_order_for_ties() -> None:
    """--most-allocations N shows the N biggest; equal peaks keep the order the tests ran in."""
    results = [_result("a", 10), _result("b", 30), _result("c", 10), _result("d", 20)]
    assert [r.nodeid for r in ranked(results, 3)] == ["b", "d", "a"]
    assert [r.nodeid for r in ranked(results, 0)] == ["b", "d", "a", "c"]


def test_summary_block_is_laid_out_line_for_line_as_pytest_memray() -> None:
    """Tools that parse pytest-memray's report read this one unchanged."""
    result = MemoryResult(
        nodeid="test_x.py::test_big",
        peak_memory=40508928 + 608,
        total_allocations=4,
        histogram="█ ",
        top_locations=(Location("test_big", "/src/test_x.py", 14, 40508928),),
        rss_growth=64 * 1024**2,
    )
    assert summary_block(result) == [
        "Allocation results for test_x.py::test_big at the high watermark",
        "",
        "\t 📦 Total memory allocated: 38.6MiB",
        "\t 📏 Total allocations: 4",
        "\t 📊 Histogram of allocation sizes: |█ |",
        "\t 🥇 Biggest allocating functions:",
        "\t\t- test_big:/src/test_x.py:14 -> 38.6MiB",
        "\t 🧠 Resident memory growth: 64.0MiB",
        "\n",
    ]


def test_summary_block_says_why_a_resident_growth_is_missing() -> None:
    """Without a figure the resident line gives the reason instead of a number, after
    pytest-memray's lines and before each followed process's."""
    from pytest_memray_isolate._judging.capture import ProcessFigures

    result = MemoryResult(
        nodeid="test_x.py::test_big",
        peak_memory=1024,
        total_allocations=1,
        histogram="█",
        top_locations=(),
        processes=(ProcessFigures(42, "test", 1024, 1),),
        rss_unavailable="unavailable on this platform (it needs Linux's /proc/self/clear_refs)",
    )
    lines = summary_block(result)
    assert lines[5:] == [
        "\t 🥇 Biggest allocating functions:",
        "\t 🧠 Resident memory growth: unavailable on this platform (it needs Linux's /proc/self/clear_refs)",
        "\t 🔀 Peak of each process (the total above is their sum):",
        "\t\t- test process 42: 1.0KiB",
        "\n",
    ]


def test_only_tests_that_can_reach_the_report_are_read_in_detail() -> None:
    """With --most-allocations N, a test below the N highest peaks seen so far is not read in detail."""
    from pytest_memray_isolate._judging.judge import TopPeaks

    top_two = TopPeaks(2)
    assert [top_two.wanted(peak) for peak in (10, 5, 3, 7, 7, 20, 6)] == [
        True,
        True,
        False,
        True,
        False,
        True,
        False,
    ]
    everything = TopPeaks(None)
    assert all(everything.wanted(peak) for peak in (1, 2, 3))
