"""pytest-memray-isolate: per-test memory limits measured with memray, optionally in a child process."""

from __future__ import annotations

from ._stacks import LeakedObjectsFilterFunction, LeaksFilterFunction, Stack, StackFrame
from ._version import __version__

__all__ = [
    "LeakedObjectsFilterFunction",
    "LeaksFilterFunction",
    "Stack",
    "StackFrame",
    "__version__",
]
