"""Two runs' --memray-json reports compared: what changed, what is new, what is gone.

``python -m pytest_memray_isolate compare BASE.json NEW.json`` (see ``__main__.py``)
prints :func:`terminal_lines`, fails for CI when a test grew beyond a threshold
(:meth:`Comparison.grown_beyond`), and with ``--html`` writes :func:`page_text`.
Everything here but reading the files is pure, so it is tested without a run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from .._options import Tolerance
from .._sizes import SIZE_HINT, format_size, parse_size
from .._version import __version__
from .json_report import SCHEMA, VERSION
from .pages import CHART_HEIGHT, chart_pitch, render

__all__ = [
    "METRICS",
    "Change",
    "Comparison",
    "Metric",
    "ReportError",
    "compare",
    "load_report",
    "page_text",
    "parse_threshold",
    "terminal_lines",
]


class ReportError(Exception):
    """A report that cannot be compared; the message is one line for the terminal."""


@dataclass(frozen=True)
class Metric:
    """A figure each test has in the report, and how to write it."""

    name: str
    key: str
    title: str
    show: Callable[[float], str]
    #: Whether a threshold may be a size (else a whole number of allocations).
    sized: bool


def _count(value: float) -> str:
    return f"{int(value):,}"


METRICS: Dict[str, Metric] = {
    "peak": Metric("peak", "peak_memory", "Peak memory", format_size, sized=True),
    "allocations": Metric("allocations", "total_allocations", "Allocations", _count, sized=False),
    # Schema minor version 2 adds it; older reports have no figure to compare.
    "rss": Metric("rss", "rss_growth", "Resident growth", format_size, sized=True),
}


def load_report(path: Path) -> Dict[str, Any]:
    """The report at ``path``: any minor version of schema version 1."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file") from None
    except OSError as error:
        raise ReportError(f"{path}: cannot be read: {error.strerror or error}") from None
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise ReportError(f"{path}: not a pytest-memray-isolate report (--memray-json writes them)")
    if document.get("version") != VERSION or not isinstance(document.get("tests"), list):
        raise ReportError(
            f"{path}: report schema version {document.get('version')!r} is not supported"
            f" (this version reads version {VERSION})"
        )
    return document


def parse_threshold(text: str, metric: Metric) -> Tolerance:
    """``10%``, or how much more a test may take: a size (``1 MB``) or, for allocations, a count."""
    stripped = text.strip()
    hint = f"expected a percentage such as 10% or {SIZE_HINT if metric.sized else 'a whole number'}"
    if stripped.endswith("%"):
        try:
            percent = float(stripped[:-1])
        except ValueError:
            percent = -1.0
        if not percent >= 0:
            raise ValueError(hint)
        return Tolerance(text=stripped, percent=percent)
    try:
        amount = parse_size(stripped) if metric.sized else int(stripped)
    except ValueError:
        raise ValueError(hint) from None
    if amount < 0:
        raise ValueError(hint)
    return Tolerance(text=stripped, bytes=amount)


@dataclass(frozen=True)
class Change:
    """One test's figure in each run (``None``: not in that run, or not measured there)."""

    nodeid: str
    base: Optional[int]
    new: Optional[int]
    in_base: bool = True
    in_new: bool = True

    @property
    def delta(self) -> Optional[int]:
        if self.base is None or self.new is None:
            return None
        return self.new - self.base

    @property
    def ratio(self) -> Optional[float]:
        """The change as a share of the base figure (``None`` from nothing)."""
        delta = self.delta
        if delta is None or not self.base:
            return None
        return delta / self.base

    @property
    def status(self) -> str:
        if not self.in_base:
            return "new"
        if not self.in_new:
            return "removed"
        delta = self.delta
        if delta is None:
            return "unmeasured"
        return "grew" if delta > 0 else "shrank" if delta < 0 else "unchanged"


@dataclass(frozen=True)
class Comparison:
    """The two runs, test by test, for one metric."""

    metric: Metric
    #: The tests of both runs measured in both, the biggest growth first, the biggest fall last.
    changes: Tuple[Change, ...]
    new: Tuple[Change, ...]
    removed: Tuple[Change, ...]
    #: Tests of both runs without the figure in one of them.
    unmeasured: Tuple[Change, ...]

    @property
    def base_total(self) -> int:
        return sum(change.base or 0 for change in self.changes)

    @property
    def new_total(self) -> int:
        return sum(change.new or 0 for change in self.changes)

    def most_changed(self, count: int) -> List[Change]:
        """The ``count`` tests whose figure moved most either way, biggest first."""
        moved = [change for change in self.changes if change.delta]
        moved.sort(key=lambda change: abs(change.delta or 0), reverse=True)
        return moved[:count]

    def grown_beyond(self, threshold: Tolerance) -> List[Change]:
        """The tests whose figure grew by more than ``threshold`` allows."""
        return [
            change
            for change in self.changes
            if change.base is not None
            and change.new is not None
            and change.new > threshold.allowance(change.base)
        ]


def _figures(document: Dict[str, Any], key: str) -> Dict[str, Optional[int]]:
    figures: Dict[str, Optional[int]] = {}
    for test in document["tests"]:
        value = test.get(key)
        figures[str(test["nodeid"])] = value if isinstance(value, int) else None
    return figures


def compare(base: Dict[str, Any], new: Dict[str, Any], metric: Metric) -> Comparison:
    """Each test of either report, matched by node id."""
    before, after = _figures(base, metric.key), _figures(new, metric.key)
    both = [Change(nodeid, before[nodeid], after[nodeid]) for nodeid in after if nodeid in before]
    changes = [change for change in both if change.delta is not None]
    changes.sort(key=lambda change: change.delta or 0, reverse=True)
    return Comparison(
        metric=metric,
        changes=tuple(changes),
        new=tuple(
            Change(nodeid, None, after[nodeid], in_base=False) for nodeid in after if nodeid not in before
        ),
        removed=tuple(
            Change(nodeid, before[nodeid], None, in_new=False) for nodeid in before if nodeid not in after
        ),
        unmeasured=tuple(change for change in both if change.delta is None),
    )


def _signed(metric: Metric, value: int) -> str:
    return ("+" if value > 0 else "-" if value < 0 else "±") + metric.show(abs(value))


def _percent(ratio: Optional[float]) -> str:
    return "from 0" if ratio is None else f"{ratio:+.1%}"


def _value(metric: Metric, value: Optional[int]) -> str:
    return "—" if value is None else metric.show(value)


def terminal_lines(
    comparison: Comparison, *, top: int, threshold: Optional[Tolerance], names: Tuple[str, str]
) -> List[str]:
    """What the command prints: the biggest changes, new and removed tests, the total, and
    the tests over the threshold."""
    metric = comparison.metric
    lines = [
        f"{metric.title}: {len(comparison.changes)} tests in both runs, {len(comparison.new)} new,"
        f" {len(comparison.removed)} removed ({names[0]} -> {names[1]})"
    ]
    moved = comparison.most_changed(top)
    lines.append("")
    if moved:
        lines.append(
            f"Changed most ({len(moved)} of {sum(1 for change in comparison.changes if change.delta)}):"
        )
        lines += [
            f"  {_signed(metric, change.delta or 0):>10} {_percent(change.ratio):>9}"
            f"  {_value(metric, change.base)} -> {_value(metric, change.new)}  {change.nodeid}"
            for change in moved
        ]
    else:
        lines.append("No test's figure changed.")
    if comparison.new:
        lines += ["", f"New tests ({len(comparison.new)}):"]
        lines += [f"  {_value(metric, change.new):>10}  {change.nodeid}" for change in comparison.new]
    if comparison.removed:
        lines += ["", f"Removed tests ({len(comparison.removed)}):"]
        lines += [f"  {_value(metric, change.base):>10}  {change.nodeid}" for change in comparison.removed]
    if comparison.unmeasured:
        lines += ["", f"Without the figure in one of the runs ({len(comparison.unmeasured)}):"]
        lines += [f"  {change.nodeid}" for change in comparison.unmeasured]
    base_total, new_total = comparison.base_total, comparison.new_total
    ratio = None if not base_total else (new_total - base_total) / base_total
    lines += [
        "",
        f"Total over the tests in both runs: {metric.show(base_total)} -> {metric.show(new_total)}"
        f" ({_signed(metric, new_total - base_total)}, {_percent(ratio)})",
    ]
    if threshold is not None:
        over = comparison.grown_beyond(threshold)
        if over:
            lines.append(f"{len(over)} test{'' if len(over) == 1 else 's'} grew beyond {threshold.text}:")
            lines += [f"  {change.nodeid} ({_signed(metric, change.delta or 0)})" for change in over]
        else:
            lines.append(f"No test grew beyond {threshold.text}.")
    return lines


def _bars(changes: Tuple[Change, ...]) -> Dict[str, Any]:
    """The chart's geometry: a bar per test of both runs, up for growth, down for a fall."""
    top = max((abs(change.delta or 0) for change in changes), default=0) or 1
    half = CHART_HEIGHT / 2
    pitch = chart_pitch(len(changes))
    width = max(pitch * 0.8, 2.0)
    bars = []
    for index, change in enumerate(changes):
        height = abs(change.delta or 0) / top * half
        bars.append(
            {
                "x": f"{index * pitch + width / 2:.1f}",
                "end": f"{half - height if (change.delta or 0) > 0 else half + height:.1f}",
            }
        )
    return {
        "bars": bars,
        "bar_width": f"{width:.1f}",
        "width": f"{max(len(changes) * pitch, 200.0):.1f}",
        "height": CHART_HEIGHT,
        "zero": half,
        "top": top,
    }


def page_text(comparison: Comparison, *, names: Tuple[str, str], threshold: Optional[Tolerance]) -> str:
    """The comparison as a self-contained page: the chart of the changes and every test's row."""
    metric = comparison.metric
    rows = [*comparison.changes, *comparison.new, *comparison.removed, *comparison.unmeasured]
    statuses: Dict[str, int] = {}
    for change in rows:
        statuses[change.status] = statuses.get(change.status, 0) + 1
    chart = _bars(comparison.changes)
    base_total, new_total = comparison.base_total, comparison.new_total
    return render(
        "compare.html.j2",
        metric=metric,
        names=names,
        rows=rows,
        chart=chart,
        top_text=metric.show(chart["top"]),
        statuses=sorted(statuses.items()),
        show=lambda value: _value(metric, value),
        signed=lambda value: "—" if value is None else _signed(metric, value),
        percent=lambda ratio: "—" if ratio is None else f"{ratio:+.1%}",
        total=(
            f"{metric.show(base_total)} -> {metric.show(new_total)} ({_signed(metric, new_total - base_total)})"
        ),
        over=[] if threshold is None else comparison.grown_beyond(threshold),
        threshold=threshold,
        version=__version__,
    )
