"""Ways to run a test's call phase under memray: in this process or in a child."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from memray import FileFormat

__all__ = ["ChildReport", "Job", "tracker_options"]


@dataclass
class ChildReport:
    """What an isolated child sent back: its call report and the warnings it raised."""

    report: Dict[str, Any]
    warnings: List[Tuple[str, str, str, str, int]] = field(default_factory=list)


@dataclass
class Job:
    """One tracked call: where its capture goes and, when isolated, what the child reported."""

    nodeid: str
    capture: Path
    message: Path
    child: Optional[ChildReport] = None


def tracker_options() -> Dict[str, Any]:
    """Keyword arguments for ``memray.Tracker``, the same in every mode."""
    return {"file_format": FileFormat.AGGREGATED_ALLOCATIONS}
