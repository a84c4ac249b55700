"""Applying limit markers to a test's capture: a verdict with the message and report section."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

from memray import AllocationRecord

from .capture import Frame, top_frame
from .markers import MemoryLimit
from .sizes import format_size

__all__ = ["Verdict", "allocation_lines", "check_memory_limit"]

_INDENT = " " * 4
#: At verbosity 0 and 1 the failure section lists this many of the biggest allocations.
_LISTED_AT_DEFAULT_VERBOSITY = 10


@dataclass(frozen=True)
class Verdict:
    """Why a test failed its memory limit: the failure message and a report section."""

    message: str
    section: Optional[Tuple[str, str]]


def _visible_frames(frames: Sequence[Frame]) -> List[Frame]:
    """The stack from the innermost frame that is not the plugin's own, outwards."""
    first = top_frame(frames)
    return [] if first is None else list(frames[frames.index(first) :])


def allocation_lines(records: Iterable[AllocationRecord], *, stacks: int, native: bool) -> List[str]:
    """One entry per allocation: its size, then up to ``stacks`` frames of its stack."""
    lines: List[str] = []
    for record in records:
        frames = _visible_frames(record.hybrid_stack_trace() if native else record.stack_trace())
        if not frames:
            continue
        lines.append(f"{_INDENT}- {format_size(record.size)} allocated here:")
        for function, filename, lineno in frames[:stacks]:
            lines.append(f"{_INDENT * 2}{function}:{filename}:{lineno}")
        if len(frames) > stacks:
            lines.append(f"{_INDENT * 2}...")
    return lines


def check_memory_limit(
    records: Sequence[AllocationRecord],
    limit: MemoryLimit,
    *,
    verbosity: int,
    stacks: int = 1,
    native: bool = False,
) -> Optional[Verdict]:
    """Fail when the allocations alive at the high watermark add up to the limit or more."""
    allocated = sum(record.size for record in records)
    if allocated < limit.limit:
        return None
    message = f"Test was limited to {format_size(limit.limit)} but allocated {format_size(allocated)}"
    if verbosity < 0:
        return Verdict(message, None)
    if verbosity >= 2:
        listed: Sequence[AllocationRecord] = records
    else:
        listed = sorted(records, key=lambda record: record.size, reverse=True)[:_LISTED_AT_DEFAULT_VERBOSITY]
    body = "\n".join(allocation_lines(listed, stacks=stacks, native=native))
    if len(records) > len(listed):
        body += f"\n    ...and {len(records) - len(listed)} more"
    return Verdict(message, ("memray-max-memory", "List of allocations:\n" + body))
