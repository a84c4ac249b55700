"""Which isolated tests write captures too large to leave their Tracker running.

An isolated child that leaves its Tracker running (_tracking/window.py) saves memray's
second walk over the loaded libraries, but its capture holds every allocation, and
memray reads such a capture several times over: about as long as that walk for a
capture of some 32 KiB, far longer for a test that makes hundreds of thousands of
allocations. Such a test is better off stopping its Tracker in the aggregated format,
whose file is small whatever the test does.

Which tests those are is known only once they have run: a test whose capture was
larger is remembered, with its parametrized siblings (which allocate alike), for the
rest of the run and, in pytest's cache, for the runs after it.
"""

from __future__ import annotations

from typing import Any, Optional, Set

__all__ = ["HEAVY_CAPTURE_BYTES", "HeavyCaptures"]

#: A capture larger than this costs more to read than stopping the Tracker would have.
HEAVY_CAPTURE_BYTES = 32 * 1024
_CACHE_KEY = "memray-isolate/heavy-captures"


def _function_of(nodeid: str) -> str:
    """The node id without its parameters: the tests of one parametrized function share it."""
    return nodeid.split("[", 1)[0]


class HeavyCaptures:
    """The tests known to write large captures, kept in pytest's cache between runs."""

    def __init__(self, config: Any) -> None:
        self._config = config
        self._nodeids: Optional[Set[str]] = None  # read from the cache when first needed
        self._functions: Set[str] = set()
        self._changed = False

    @property
    def _cache(self) -> Optional[Any]:
        return getattr(self._config, "cache", None)  # None with -p no:cacheprovider

    def _known(self) -> Set[str]:
        if self._nodeids is None:
            cache = self._cache
            known = cache.get(_CACHE_KEY, []) if cache is not None else []
            self._nodeids = {nodeid for nodeid in known if isinstance(nodeid, str)}
            self._functions.update(_function_of(nodeid) for nodeid in self._nodeids)
        return self._nodeids

    def is_heavy(self, nodeid: str) -> bool:
        """Whether this test (or a parametrized sibling, this run) wrote a large capture."""
        return nodeid in self._known() or _function_of(nodeid) in self._functions

    def record(self, nodeid: str, capture_bytes: int) -> None:
        """Note how large the capture of a test that left its Tracker running was."""
        if capture_bytes <= HEAVY_CAPTURE_BYTES:
            return
        self._functions.add(_function_of(nodeid))
        known = self._known()
        if nodeid not in known:
            known.add(nodeid)
            self._changed = True

    def save(self) -> None:
        """Keep the list for the next run (tests once heavy stay so until --cache-clear)."""
        cache = self._cache
        if self._changed and cache is not None:
            cache.set(_CACHE_KEY, sorted(self._known()))
            self._changed = False
