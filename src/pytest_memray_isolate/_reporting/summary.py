"""The MEMRAY REPORT text, laid out line for line as pytest-memray prints it."""

from __future__ import annotations

from typing import Iterable, List, Optional

from .._judging.capture import MemoryResult, RegionFigures, process_lines
from .._sizes import format_size

__all__ = ["closing_lines", "ranked", "region_line", "summary_block"]


def ranked(results: Iterable[MemoryResult], most: int) -> List[MemoryResult]:
    """The ``most`` results with the highest peak (all for 0), highest first, ties in run order."""
    ordered = sorted(results, key=lambda result: result.peak_memory, reverse=True)
    return ordered if most == 0 else ordered[:most]


def summary_block(result: MemoryResult) -> List[str]:
    """The lines describing one test in the MEMRAY REPORT: pytest-memray's first, unchanged,
    then what it does not report (resident growth, each followed process)."""
    lines = [
        f"Allocation results for {result.nodeid} at the high watermark",
        "",
        f"\t 📦 Total memory allocated: {format_size(result.peak_memory)}",
        f"\t 📏 Total allocations: {result.total_allocations}",
        f"\t 📊 Histogram of allocation sizes: |{result.histogram}|",
        "\t 🥇 Biggest allocating functions:",
    ]
    lines += [
        f"\t\t- {where.function}:{where.filename}:{where.lineno} -> {format_size(where.size)}"
        for where in result.top_locations
    ]
    if result.rss_growth is not None:
        lines.append(f"\t 🧠 Resident memory growth: {format_size(result.rss_growth)}")
    else:
        lines.append(f"\t 🧠 Resident memory growth: {result.rss_unavailable or 'unknown'}")
    if result.regions:
        lines.append("\t 🔍 Each memray_region (the figures above are the highest of them):")
        lines += [f"\t\t- {region_line(region)}" for region in result.regions]
    if result.processes:
        lines.append("\t 🔀 Peak of each process (the total above is their sum):")
        lines += [f"\t\t- {line}" for line in process_lines(result.processes)]
    lines.append("\n")
    return lines


def region_line(region: RegionFigures) -> str:
    """One region of a test: its number, where it was opened, its peak and allocations."""
    line = (
        f"region {region.number} ({region.opened_at}):"
        f" {format_size(region.peak_memory)} at its peak, {region.total_allocations}"
        f" allocation{'' if region.total_allocations == 1 else 's'}"
    )
    if region.leaked_memory is not None:
        line += f", {format_size(region.leaked_memory)} leaked"
    return line


def closing_lines(results: Iterable[MemoryResult], isolation: Optional[str]) -> List[str]:
    """What the report adds after pytest-memray's blocks: the run's highest peak, the mode."""
    lines = []
    highest = max(results, key=lambda result: result.peak_memory, default=None)
    if highest is not None:
        lines.append(f"Highest peak: {format_size(highest.peak_memory)} in {highest.nodeid}")
    if isolation is not None:
        lines.append(f"Isolation: {isolation} (each tracked test ran in a child process of its own)")
    return lines
