"""Shared test helpers: the suite drives pytest itself, in a subprocess, through pytester."""

from __future__ import annotations

from typing import Callable

import pytest

pytest_plugins = ["pytester"]

#: The command-line switch for each way of tracking a test.
MODE_FLAGS = {"in-process": "--memray", "fork": "--memray-isolate=fork"}


@pytest.fixture(params=sorted(MODE_FLAGS))
def mode_flag(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once per tracking mode."""
    return MODE_FLAGS[request.param]


Runner = Callable[..., pytest.RunResult]


@pytest.fixture
def run(pytester: pytest.Pytester) -> Runner:
    """Run pytest in a fresh interpreter, as users do; -p no:cacheprovider keeps the tree clean."""

    def run_pytest(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)

    return run_pytest
