"""Starting memray's Tracker as close to the test's own code as possible."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, List

from memray import Tracker

from . import Job, tracker_options
from .heap import settle

__all__ = ["tracked"]


def _started_tracker(job: Job, settle_heap: bool, keep_alive: List[object]) -> Tracker:
    """A Tracker for ``job``, constructed before the allocator is settled: constructing it
    runs Python code whose allocations would otherwise undo part of the settling."""
    tracker = Tracker(job.capture, **tracker_options())
    if settle_heap:
        keep_alive.append(settle())
    return tracker


def tracked(function: Callable[..., Any], job: Job, *, settle_heap: bool = False) -> Callable[..., Any]:
    """Wrap ``function`` so each call runs under a Tracker writing ``job.capture``.

    With ``settle_heap`` (isolated children) the allocator is brought to its canonical
    state first, so the figures do not depend on what the parent did before forking.
    """
    keep_alive: List[object] = []

    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def run_tracked_async(*args: Any, **kwargs: Any) -> Any:
            with _started_tracker(job, settle_heap, keep_alive):
                return await function(*args, **kwargs)

        return run_tracked_async

    @functools.wraps(function)
    def run_tracked(*args: Any, **kwargs: Any) -> Any:
        with _started_tracker(job, settle_heap, keep_alive):
            return function(*args, **kwargs)

    return run_tracked
