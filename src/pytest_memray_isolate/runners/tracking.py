"""Starting memray's Tracker as close to the test's own code as possible.

The Tracker is entered in the wrapper's own frame, never inside a generator (such as a
``contextlib.contextmanager``): memray follows the frames entered after it starts, and a
Tracker started in a suspended generator records stacks without the test's frames.
"""

from __future__ import annotations

import functools
import gc
import inspect
import sys
from typing import Any, Callable, List

from memray import Tracker

from ..limits import check_leaked_objects
from . import Job, tracker_arguments
from .heap import settle

__all__ = ["tracked"]


def _prepared_tracker(job: Job, settle_heap: bool, keep_alive: List[object]) -> Tracker:
    """A Tracker for ``job``, constructed before the allocator is settled: constructing it
    runs Python code whose allocations would otherwise undo part of the settling."""
    tracker = Tracker(job.capture, **tracker_arguments(job.tracker))
    if settle_heap:
        keep_alive.append(settle())
    return tracker


def _before_stopping(job: Job) -> None:
    if job.objects is not None:
        # Cycles and interpreter caches would otherwise count as leaked objects.
        gc.collect()
        getattr(sys, "_clear_internal_caches", lambda: None)()


def _after_stopping(job: Job, tracker: Tracker) -> None:
    """Judge leaked objects here, in the process where they live."""
    if job.objects is not None:
        job.objects_verdict = check_leaked_objects(tracker.get_surviving_objects(), job.objects)


def tracked(function: Callable[..., Any], job: Job, *, settle_heap: bool = False) -> Callable[..., Any]:
    """Wrap ``function`` so each call runs under a Tracker writing ``job.capture``.

    With ``settle_heap`` (isolated children) the allocator is brought to its canonical
    state first, so the figures do not depend on what the parent did before forking.
    """
    keep_alive: List[object] = []

    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def run_tracked_async(*args: Any, **kwargs: Any) -> Any:
            tracker = _prepared_tracker(job, settle_heap, keep_alive)
            try:
                with tracker:
                    try:
                        return await function(*args, **kwargs)
                    finally:
                        _before_stopping(job)
            finally:
                _after_stopping(job, tracker)

        return run_tracked_async

    @functools.wraps(function)
    def run_tracked(*args: Any, **kwargs: Any) -> Any:
        tracker = _prepared_tracker(job, settle_heap, keep_alive)
        try:
            with tracker:
                try:
                    return function(*args, **kwargs)
                finally:
                    _before_stopping(job)
        finally:
            _after_stopping(job, tracker)

    return run_tracked
