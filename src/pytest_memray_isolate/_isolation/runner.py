"""What the parent needs of an isolation mode: run a test's call in a child, bring back its report."""

from __future__ import annotations

import sys
from typing import Callable, Protocol

import pytest

from .messages import Job

__all__ = ["IsolationRunner", "flush_output"]


def flush_output() -> None:
    """Flush what this process buffered for stdout and stderr, before a child shares them."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()


class IsolationRunner(Protocol):
    """Runs a test's call in a child process of some kind and brings its report back."""

    #: Whether the Tracker is put around the test function in this process (a fork
    #: inherits it) rather than by the child itself.
    tracks_here: bool

    def wrap(self, item: pytest.Item, runtest: Callable[[], object], job: Job) -> Callable[[], None]:
        """A replacement for ``item.runtest`` that runs the call in a child."""

    def close(self) -> None:
        """Stop whatever outlives one test (the forkserver)."""
