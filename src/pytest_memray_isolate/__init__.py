"""pytest-memray-isolate: per-test memory limits measured with memray, optionally in a child process."""

from __future__ import annotations

from ._version import __version__
from .stacks import LeakedObjectsFilterFunction, LeaksFilterFunction, Stack, StackFrame

__all__ = [
    "LeakedObjectsFilterFunction",
    "LeaksFilterFunction",
    "Stack",
    "StackFrame",
    "__version__",
]
