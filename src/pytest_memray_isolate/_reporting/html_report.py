"""The page to open in a browser (--memray-html): the run's tests as a chart and a table.

Built from the same :class:`TestRecord` s as --memray-json, at the end of the run, by
the reporter (the controller under pytest-xdist). This module turns each record into
the texts and geometry the template ``templates/report.html.j2`` writes out; sorting,
filtering and the chart's log scale are the page's own inline script.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from .._isolation.messages import ExitFacts
from .._sizes import format_size
from .._version import __version__
from .json_report import write_text_atomically
from .pages import CHART_HEIGHT, Scale, chart_pitch, href, render, size_text
from .record import TestRecord

__all__ = ["FileRollup", "TestRow", "child_cause", "page_rows", "page_text", "rollup", "write_page"]


def child_cause(child: ExitFacts) -> str:
    """Why an isolated child ended without reporting, in a few words for the page."""
    if child.killed_for == "timeout":
        return "killed: over its time limit"
    if child.killed_for == "memory":
        return "killed: over its resident memory ceiling"
    if child.killed_for is not None:
        return f"killed: {child.killed_for}"
    if child.signal is not None:
        return f"crashed: {child.signal}"
    return f"crashed: exit status {child.exit_code}"


@dataclass(frozen=True)
class TestRow:
    """One test as the page shows it: texts, sort keys and its bar's geometry."""

    __test__ = False

    nodeid: str
    outcome: str
    #: ``crashed`` for a child that ended without reporting, else the outcome.
    kind: str
    mode: str
    peak: Optional[int]
    allocations: Optional[int]
    resident: Optional[int]
    #: The limit's marker name, ``None`` without a limit.
    limit_kind: Optional[str]
    limit_text: str
    limit_key: Optional[float]
    margin_text: str
    #: The share of its limit the test used (sorts the margin column: closest first).
    margin_key: Optional[float]
    duration: Optional[float]
    cause: Optional[str]
    links: Tuple[Tuple[str, str], ...]
    #: How many ``memray_region`` blocks the test measured (its figures are the highest).
    regions: int = 0

    @property
    def regions_text(self) -> str:
        """What the test's row says of its regions ("" for a test without any)."""
        if not self.regions:
            return ""
        return f"highest of {self.regions} memray_region{'s' if self.regions > 1 else ''}"

    @property
    def peak_text(self) -> str:
        return size_text(self.peak)

    @property
    def allocations_text(self) -> str:
        return "—" if self.allocations is None else f"{self.allocations:,}"

    @property
    def resident_text(self) -> str:
        return size_text(self.resident)

    @property
    def duration_text(self) -> str:
        return "—" if self.duration is None else f"{self.duration:.3f}s"

    @property
    def memory_limit(self) -> Optional[int]:
        """The limit_memory bytes drawn on the chart (other limits are not on the peak)."""
        if self.limit_kind != "limit_memory" or self.limit_key is None:
            return None
        return int(self.limit_key)


#: What a margin column says where there is nothing to measure against.
_NO_MARGIN: Tuple[str, Optional[float]] = ("—", None)


def _margin(figure: Optional[int], budget: int, show: Callable[[int], str]) -> Tuple[str, Optional[float]]:
    """How far ``figure`` is under (or over) ``budget``, and the share of it used."""
    if figure is None or budget <= 0:
        return _NO_MARGIN
    left = budget - figure
    used = figure / budget
    return f"{show(abs(left))} {'left' if left >= 0 else 'over'} · {used:.0%}", used


def _limit(record: TestRecord) -> Tuple[str, Optional[float], str, Optional[float]]:
    """The limit's text and sort key, and the margin's text and sort key."""
    limit = record.limit
    if limit is None:
        return ("—", None, *_NO_MARGIN)
    kind = str(limit["kind"])
    if kind == "limit_memory":
        budget = int(limit["bytes"])
        return (str(limit["text"]), budget, *_margin(record.peak_memory, budget, format_size))
    if kind == "limit_allocations":
        count = int(limit["count"])
        return (f"{count:,} allocations", count, *_margin(record.total_allocations, count, "{:,}".format))
    if kind == "limit_rss":
        budget = int(limit["bytes"])
        return (f"resident {limit['text']}", budget, *_margin(record.rss_growth, budget, format_size))
    if kind == "limit_leaks":
        return (f"leaks {limit['text']}", int(limit["bytes"]), *_NO_MARGIN)
    return (kind.replace("limit_", "").replace("_", " "), None, *_NO_MARGIN)


def _links(record: TestRecord, page_dir: Path) -> Tuple[Tuple[str, str], ...]:
    links = []
    if record.flamegraph is not None:
        links.append(("flame graph", href(record.flamegraph, page_dir)))
    if record.capture_file is not None:
        links.append(("capture", href(record.capture_file, page_dir)))
    for process in record.processes or ():
        if process.role != "test" and process.capture_file is not None:
            links.append((f"capture of {process.pid}", href(process.capture_file, page_dir)))
    for region in record.regions or ():
        if region.capture_file is not None:
            links.append((f"capture of region {region.number}", href(region.capture_file, page_dir)))
    return tuple(links)


def page_rows(records: Iterable[TestRecord], page_dir: Path) -> List[TestRow]:
    """The page's rows, heaviest peak first; tests without a readable peak last, in run order."""
    rows = []
    for record in records:
        limit_text, limit_key, margin_text, margin_key = _limit(record)
        rows.append(
            TestRow(
                nodeid=record.nodeid,
                outcome=record.outcome,
                kind="crashed" if record.child is not None else record.outcome,
                mode=record.mode,
                peak=record.peak_memory,
                allocations=record.total_allocations,
                resident=record.rss_growth,
                limit_kind=None if record.limit is None else str(record.limit["kind"]),
                limit_text=limit_text,
                limit_key=limit_key,
                margin_text=margin_text,
                margin_key=margin_key,
                duration=record.duration,
                cause=None if record.child is None else child_cause(record.child),
                links=_links(record, page_dir),
                regions=len(record.regions or ()),
            )
        )
    rows.sort(key=lambda row: -1 if row.peak is None else row.peak, reverse=True)
    return rows


@dataclass(frozen=True)
class FileRollup:
    """The tests of one file (the node id's part before ``::``) taken together."""

    path: str
    tests: int
    failed: int
    crashed: int
    highest_peak: Optional[int]
    highest_nodeid: str
    allocations: int
    duration: float

    @property
    def highest_text(self) -> str:
        return size_text(self.highest_peak)


def rollup(rows: Iterable[TestRow]) -> List[FileRollup]:
    """One line per file, the heaviest file (by its highest peak) first."""
    by_file: Dict[str, List[TestRow]] = {}
    for row in rows:
        by_file.setdefault(row.nodeid.split("::", 1)[0], []).append(row)
    files = []
    for path, members in by_file.items():
        measured = [row for row in members if row.peak is not None]
        heaviest = max(measured, key=lambda row: row.peak or 0, default=None)
        files.append(
            FileRollup(
                path=path,
                tests=len(members),
                failed=sum(row.outcome == "failed" for row in members),
                crashed=sum(row.kind == "crashed" for row in members),
                highest_peak=None if heaviest is None else heaviest.peak,
                highest_nodeid="" if heaviest is None else heaviest.nodeid,
                allocations=sum(row.allocations or 0 for row in members),
                duration=sum(row.duration or 0.0 for row in members),
            )
        )
    files.sort(key=lambda item: -1 if item.highest_peak is None else item.highest_peak, reverse=True)
    return files


def _number(value: float) -> str:
    """A coordinate as short as it can be written: ``3``, ``12.5``."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _bars(rows: List[TestRow]) -> Dict[str, Any]:
    """The chart's geometry: one bar per row in the rows' order, and each memory limit's mark."""
    scale = Scale.over([row.peak for row in rows] + [row.memory_limit for row in rows])
    pitch = chart_pitch(len(rows))
    width = max(pitch * 0.8, 2.0)
    bars = []
    for index, row in enumerate(rows):
        limit = row.memory_limit
        height = scale.linear(row.peak)
        bars.append(
            {
                "left": _number(index * pitch),
                "x": _number(index * pitch + width / 2),
                "y": _number(CHART_HEIGHT - height),
                "log": _number(scale.log(row.peak)),
                "limit_y": None if limit is None else _number(CHART_HEIGHT - scale.linear(limit)),
                "limit": None if limit is None else _number(scale.linear(limit)),
                "limit_log": None if limit is None else _number(scale.log(limit)),
            }
        )
    return {
        "bars": bars,
        "pitch": pitch,
        "bar_width": _number(width),
        "width": _number(max(len(rows) * pitch, 200.0)),
        "height": CHART_HEIGHT,
        "base": _number(CHART_HEIGHT),
        "linear_ticks": [(_number(CHART_HEIGHT - height), label) for height, label in scale.linear_ticks()],
        "log_ticks": [(_number(CHART_HEIGHT - height), label) for height, label in scale.log_ticks()],
    }


def page_text(records: Iterable[TestRecord], *, page_dir: Path, exitstatus: Optional[int]) -> str:
    """The whole page for ``records``, its links relative to ``page_dir``."""
    rows = page_rows(records, page_dir)
    outcomes = Counter(row.kind for row in rows)
    heaviest = next((row for row in rows if row.peak is not None), None)
    return render(
        "report.html.j2",
        rows=rows,
        files=rollup(rows),
        chart=_bars(rows),
        outcomes=sorted(outcomes.items()),
        crashed=[(index, row) for index, row in enumerate(rows) if row.cause is not None],
        heaviest=heaviest,
        exitstatus=exitstatus,
        version=__version__,
    )


def write_page(path: Path, records: Iterable[TestRecord], *, exitstatus: Optional[int]) -> None:
    """Write the page to ``path`` as the JSON report is written: whole or not at all."""
    write_text_atomically(path, page_text(records, page_dir=path.parent, exitstatus=exitstatus))
