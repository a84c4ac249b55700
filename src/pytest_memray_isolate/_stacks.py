"""The stack types that users' filter functions receive (public API)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Tuple

__all__ = ["LeakedObjectsFilterFunction", "LeaksFilterFunction", "Stack", "StackFrame"]


@dataclass(frozen=True)
class StackFrame:
    """One frame of the call stack that led to an allocation."""

    function: str
    """Name of the function, or ``"???"`` when memray could not resolve it."""
    filename: str
    """Source file of the function, or ``"???"``."""
    lineno: int
    """Line being executed, or ``0`` when unknown."""


@dataclass(frozen=True)
class Stack:
    """The call stack of one allocation, innermost frame first."""

    frames: Tuple[StackFrame, ...]


class LeaksFilterFunction(Protocol):
    """Decides whether ``limit_leaks`` counts the memory left alive by a stack.

    Return ``True`` to count (and so report) the allocation, ``False`` to ignore it.
    """

    def __call__(self, stack: Stack) -> bool: ...


class LeakedObjectsFilterFunction(Protocol):
    """Decides whether ``limit_leaked_objects`` reports an object that outlived the test.

    Return ``True`` to report the object, ``False`` to ignore it.
    """

    def __call__(self, obj: object) -> bool: ...
