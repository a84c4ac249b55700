"""pytest-memray-isolate: per-test memory limits measured with memray, optionally in a child process.

The public names are imported when first used (PEP 562): importing the package alone, as
its conflict guard's entry point does in every pytest session, even one run with
``-p no:memray``, must not cost memray's import and the plugin's.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Dict, List

from ._version import __version__

if TYPE_CHECKING:
    from ._judging.capture import Location
    from ._stacks import LeakedObjectsFilterFunction, LeaksFilterFunction, Stack, StackFrame
    from ._tracking.region import MemoryRegion

__all__ = [
    "LeakedObjectsFilterFunction",
    "LeaksFilterFunction",
    "Location",
    "MemoryRegion",
    "Stack",
    "StackFrame",
    "__version__",
]

#: Each public name and the module that defines it.
_HOMES: Dict[str, str] = {
    "LeakedObjectsFilterFunction": "._stacks",
    "LeaksFilterFunction": "._stacks",
    "Location": "._judging.capture",
    "MemoryRegion": "._tracking.region",
    "Stack": "._stacks",
    "StackFrame": "._stacks",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
