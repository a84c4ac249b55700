"""Shared test helpers: the suite drives pytest itself, in a subprocess, through pytester."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, List

import psutil
import pytest

pytest_plugins = ["pytester"]

#: The command-line switch for each way of isolating a test.
ISOLATION_FLAGS = {mode: f"--memray-isolate={mode}" for mode in ("fork", "forkserver", "spawn")}
#: The command-line switch for each way of tracking a test.
MODE_FLAGS = {"in-process": "--memray", **ISOLATION_FLAGS}


@pytest.fixture(params=sorted(MODE_FLAGS))
def mode_flag(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once per tracking mode."""
    return MODE_FLAGS[request.param]


@pytest.fixture(params=sorted(ISOLATION_FLAGS))
def isolated_flag(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once per isolation mode."""
    return ISOLATION_FLAGS[request.param]


Runner = Callable[..., pytest.RunResult]

#: Plugins the test extra installs for the tests that are about them; elsewhere they would
#: shuffle the order (randomly) or warn about their own settings (asyncio).
QUIET_PLUGINS = ("-p", "no:randomly", "-p", "no:asyncio")


@pytest.fixture
def run(pytester: pytest.Pytester) -> Runner:
    """Run pytest in a fresh interpreter, as users do; -p no:cacheprovider keeps the tree clean."""

    def run_pytest(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *QUIET_PLUGINS, *args)

    return run_pytest


@pytest.fixture
def private_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A TMPDIR of the test's own, to check that the plugin leaves nothing in it.

    It is short (directly in the system's temporary directory): multiprocessing puts Unix
    sockets in it, whose paths may not be longer than about 100 bytes.
    """
    tmp = Path(tempfile.mkdtemp(prefix="pmi-"))
    monkeypatch.setenv("TMPDIR", str(tmp))
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


def recorded_pids(pytester: pytest.Pytester) -> List[int]:
    """The process ids the test's suite wrote to its ``pids`` file, one word each."""
    path = pytester.path / "pids"
    return [int(word) for word in path.read_text().split()] if path.exists() else []


def gone(pids: List[int], wait: float = 5.0) -> bool:
    """Whether none of ``pids`` runs any more (zombies waiting for init count as gone)."""
    give_up = time.monotonic() + wait
    while True:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > give_up:
            return not alive
        time.sleep(0.05)


#: CPython keeps one 48-byte record per pymalloc arena in a table that doubles when full.
_ARENA_RECORD_BYTES = 48


def arena_table_growth(difference: int) -> bool:
    """Whether ``difference`` bytes is one doubling of pymalloc's arena table (48 bytes x 2**k).

    The table's capacity follows the most arenas the process ever had, which depends on
    history; a test that needs more arenas than it holds pays for one reallocation of it.
    That one allocation is the only figure settling cannot make order-independent.
    """
    records, remainder = divmod(difference, _ARENA_RECORD_BYTES)
    return remainder == 0 and records >= 16 and records & (records - 1) == 0
