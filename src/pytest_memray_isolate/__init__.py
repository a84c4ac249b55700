"""pytest-memray-isolate: per-test memory limits measured with memray, optionally in a child process."""

from __future__ import annotations

from ._judging.capture import Location
from ._stacks import LeakedObjectsFilterFunction, LeaksFilterFunction, Stack, StackFrame
from ._tracking.region import MemoryRegion
from ._version import __version__

__all__ = [
    "LeakedObjectsFilterFunction",
    "LeaksFilterFunction",
    "Location",
    "MemoryRegion",
    "Stack",
    "StackFrame",
    "__version__",
]
