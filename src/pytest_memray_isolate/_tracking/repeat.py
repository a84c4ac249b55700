"""Calling a test function several times: which call is a warm-up, which is tracked, and
what to say when a later call fails although the first passed."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

from .._isolation.messages import CallSpec
from .._judging.capture import is_own_file

__all__ = ["calls_of", "not_repeatable"]


def calls_of(spec: CallSpec) -> List[Tuple[str, Optional[Path]]]:
    """Each call of a repeated test in order: its description and its capture (``None`` for a warm-up)."""
    calls: List[Tuple[str, Optional[Path]]] = [
        (f"warm-up {number} of {spec.warmups}", None) for number in range(1, spec.warmups + 1)
    ]
    calls += [
        (f"tracked repetition {number} of {spec.repeats}", capture)
        for number, capture in enumerate(spec.repetition_captures(), start=1)
    ]
    return calls


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _where_it_failed(error: BaseException) -> str:
    """The failed call's traceback from the test's own frames down (the plugin's left out)."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if not is_own_file(frame.filename)]
    return "".join(
        traceback.format_list(frames) + traceback.format_exception_only(type(error), error)
    ).rstrip()


def not_repeatable(spec: CallSpec, index: int, error: BaseException) -> BaseException:
    """The failure for call ``index`` (from 0, never the first) that failed after the earlier ones passed."""
    description = calls_of(spec)[index][0]
    total = spec.warmups + spec.repeats
    passed = "its first call" if index == 1 else f"its first {index} calls"
    return pytest.fail.Exception(
        f"This test cannot be repeated: its {_ordinal(index + 1)} call ({description}) failed after"
        f" {passed} passed. A repeated limit_leaks calls the test function {total} times with the same"
        " fixture values; give its marker warmups=0, repeats=1 to track a single call.\n\n"
        f"The {_ordinal(index + 1)} call failed here:\n{_where_it_failed(error)}",
        pytrace=False,
    )
