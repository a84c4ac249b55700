"""Shared test helpers: the suite drives pytest itself through pytester.

Three layers, cheapest first: unit tests call the plugin's pure parts; ``run_inprocess``
runs pytest inside the test's process for what never forks; ``run`` runs it in a process
of its own (forked from a warm one) for whatever forks, spawns, crashes, handles signals
or measures memory.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence

import psutil
import pytest
from warm_pytest import WarmStarter

pytest_plugins = ["pytester"]

#: The command-line switch for each way of isolating a test.
EVERY_ISOLATION_FLAG = {mode: f"--memray-isolate={mode}" for mode in ("fork", "forkserver", "spawn")}
#: The command-line switch for each way of tracking a test.
EVERY_MODE_FLAG = {"in-process": "--memray", **EVERY_ISOLATION_FLAG}

#: The isolation modes a test runs in unless how a child's process starts, ends or is
#: watched is its point. A forkserver's child and a spawned child run their test with the
#: same code (the child's session, child_session.py, fed by request.py): they differ in
#: how the process is made, a fork of the server or a new interpreter. So the forkserver,
#: the cheaper, stands for both; spawn runs where the process itself matters (crashes,
#: deadlines, signals, output streams, a fresh import; ``every_isolated_flag``) and in
#: tests/test_remote_modes.py.
ISOLATION_FLAGS = {mode: EVERY_ISOLATION_FLAG[mode] for mode in ("fork", "forkserver")}
#: The tracking modes a test runs in: in pytest's process and ISOLATION_FLAGS.
MODE_FLAGS = {"in-process": EVERY_MODE_FLAG["in-process"], **ISOLATION_FLAGS}


@pytest.fixture(params=sorted(MODE_FLAGS))
def mode_flag(request: pytest.FixtureRequest) -> str:
    """Each test using this runs in pytest's process, and in a fork and forkserver child."""
    return MODE_FLAGS[request.param]


@pytest.fixture(params=sorted(ISOLATION_FLAGS))
def isolated_flag(request: pytest.FixtureRequest) -> str:
    """Each test using this runs in a fork and in a forkserver child (see ISOLATION_FLAGS)."""
    return ISOLATION_FLAGS[request.param]


@pytest.fixture(params=sorted(EVERY_MODE_FLAG))
def every_mode_flag(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once per tracking mode, spawn included."""
    return EVERY_MODE_FLAG[request.param]


@pytest.fixture(params=sorted(EVERY_ISOLATION_FLAG))
def every_isolated_flag(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once per isolation mode, spawn included: for what depends
    on how the child's process starts, ends or is watched."""
    return EVERY_ISOLATION_FLAG[request.param]


def sources_by_mode(*others: str) -> List[Any]:
    """Where a setting is given crossed with the modes, for ``parametrize(("where", "mode_flag"), ...)``.

    The command line runs in every mode; each other source (default: the ini file) in fork
    mode only. A setting's source is read once, in pytest's process, before any mode takes
    part (settings.resolve_settings); the mode decides only where the resolved value is
    used, which the command-line cases check in each mode. Ids read ``ini-fork``.
    """
    pairs = [("command line", mode) for mode in sorted(MODE_FLAGS)]
    pairs += [(where, "fork") for where in others or ("ini",)]
    return [pytest.param(where, MODE_FLAGS[mode], id=f"{where}-{mode}") for where, mode in pairs]


Runner = Callable[..., pytest.RunResult]

#: Installed pytest plugins (entry-point names) that a run of the suite's own small test
#: files loads only when a test is about them (``plugins=`` below). Elsewhere they would
#: shuffle the order (randomly), warn about their own settings (asyncio), or only cost
#: start-up time: every subprocess run, and every spawned child, imports what it loads.
#: The plugin under test is still loaded the way users load it, by its entry point.
OTHER_PLUGINS = (
    "randomly",
    "asyncio",
    "anyio",
    "pytest_cov",
    "xdist",
    "xdist.looponfail",
    "rerunfailures",
    "timeout",
    "platformdirs",
)


def without_plugins(keep: Iterable[str] = ()) -> List[str]:
    """``-p no:NAME`` for each of OTHER_PLUGINS not named in ``keep``."""
    kept = set(keep)
    return [arg for name in OTHER_PLUGINS if name not in kept for arg in ("-p", f"no:{name}")]


#: The installed plugins two figure-comparing tests keep loaded, as every run loaded them
#: until 2026-12-02. On Python 3.9 with the lowest dependencies, leaving them out changed
#: figures those tests compare: a left-open capture counted one allocation place fewer
#: than the aggregated capture of the same test (5 and 6), and one order of the
#: order-independence suite took 6 KiB more at the same allocation count. Not explained
#: yet; until it is, those tests run as they did when they last passed.
LOADED_AS_BEFORE = tuple(name for name in OTHER_PLUGINS if name not in ("randomly", "asyncio"))

#: The switches that leave every plugin of OTHER_PLUGINS out, for tests that start pytest
#: themselves (with a timeout, or with ``popen``).
QUIET_PLUGINS = tuple(without_plugins())


@pytest.fixture
def run(pytester: pytest.Pytester) -> Runner:
    """Run pytest in a process of its own, as users do; -p no:cacheprovider keeps the tree clean.

    Use it for every run that tracks isolated tests (it forks, spawns or starts a
    forkserver), crashes, sends or handles signals, or whose figures are the point: such a
    run must not share the process of the test that checks it. ``plugins=("xdist",)``
    keeps installed plugins the run is about; the others are left out (OTHER_PLUGINS).

    The run is forked from a warm process that has imported pytest and memray already
    (warm_pytest.py), which halves its cost. What users would see differently is only
    the frames below ``pytest.main`` in a stack dump of pytest's process or a forked
    child, which the docs' transcripts leave out (``...``); a run that depends on how
    Python started uses ``pytester.runpytest_subprocess`` (tests/test_startup.py).
    ``keep_cache=True`` keeps pytest's cache, for runs that remember for the next
    (``--fail-on-increase``).
    """

    def run_pytest(*args: str, plugins: Sequence[str] = (), keep_cache: bool = False) -> pytest.RunResult:
        arguments = (*([] if keep_cache else ["-p", "no:cacheprovider"]), *without_plugins(plugins), *args)
        return warm_run(pytester.path, arguments, environ=_subprocess_environ(Path.cwd()), cwd=Path.cwd())

    return run_pytest


#: This xdist worker's warm process (see tests/warm_pytest.py).
_WARM = WarmStarter()


def warm_run(
    directory: Path,
    arguments: Sequence[str],
    *,
    environ: Dict[str, str],
    cwd: Path,
    timeout: Optional[float] = None,
) -> pytest.RunResult:
    """What ``pytester.runpytest_subprocess`` does (from the current directory, with a
    numbered ``--basetemp`` and the output in ``stdout`` and ``stderr`` files in
    ``directory``), in a child forked from the warm process."""
    number = 0
    while (directory / f"runpytest-{number}").exists():
        number += 1
    basetemp = directory / f"runpytest-{number}"
    basetemp.mkdir(mode=0o700)
    return _WARM.run(
        [f"--basetemp={basetemp}", *arguments], cwd=cwd, output=directory, environ=environ, timeout=timeout
    )


def _subprocess_environ(directory: Path) -> Dict[str, str]:
    """The environment pytester gives a subprocess: this one's, with the directory first on PYTHONPATH."""
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(directory), environ.get("PYTHONPATH", "")]))
    return environ


#: A conftest that imports each module of the plugin's package, through pytest's rewriting
#: import hook (all but ``__main__``, which runs the command line).
_IMPORT_EVERY_MODULE = """
import importlib, pkgutil, pytest_memray_isolate
for module in pkgutil.walk_packages(pytest_memray_isolate.__path__, "pytest_memray_isolate."):
    if not module.name.endswith(".__main__"):
        importlib.import_module(module.name)
"""


def pytest_configure(config: pytest.Config) -> None:
    """Have pytest keep its rewritten byte code of the plugin's modules, once, where Python
    is told not to write byte code (``PYTHONDONTWRITEBYTECODE``, set on this project's
    machines).

    pytest loads the plugin through its entry point and so rewrites the asserts of every
    module of the package; it reads the rewritten code from ``__pycache__`` when it is
    there, but writes it only where Python may write byte code. Without it every pytest
    the suite starts (each run, each spawned child, each forkserver) parsed and rewrote the
    whole package again: 40% of a typical run's time. One pytest with byte code allowed,
    collecting an otherwise empty directory whose conftest imports every module of the
    package (the isolation modes' own are imported only when a run uses them), leaves its
    rewritten modules behind. Under pytest-xdist the controller does it, before it starts
    the workers.
    """
    if sys.dont_write_bytecode and not hasattr(config, "workerinput"):
        environ = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
        environ.pop("PYTEST_ADDOPTS", None)
        with tempfile.TemporaryDirectory() as empty:
            Path(empty, "conftest.py").write_text(_IMPORT_EVERY_MODULE)
            subprocess.run(
                [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", empty],
                env=environ,
                cwd=empty,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,  # "no tests collected" is its exit status 5
            )


def pytest_unconfigure() -> None:
    _WARM.close()


@pytest.fixture
def run_inprocess(pytester: pytest.Pytester) -> Runner:
    """Run pytest inside this process (``pytester.runpytest_inprocess``): no interpreter to
    start, so 0.2 to 0.3 s on this project's 2-core machine where a subprocess run takes a
    second or more.

    Use it only for runs that never fork nor track isolated tests: option and ini parsing,
    usage errors, ``--help`` and ``--markers``, marker validation at collection, warnings
    at configuration. A run with ``--memray`` tracks in this process, which is safe as long
    as nothing else here does (memray allows one tracker per process). The plugin's signal
    handlers are installed and put back within the run; its output is captured as a
    subprocess run's is (``stdout``, ``stderr``, ``ret``), under the warning filters a
    fresh interpreter has, not this suite's.
    """

    def run_pytest(*args: str, plugins: Sequence[str] = ()) -> pytest.RunResult:
        with warnings.catch_warnings():
            _interpreters_warning_filters()
            return pytester.runpytest_inprocess("-p", "no:cacheprovider", *without_plugins(plugins), *args)

    return run_pytest


def _interpreters_warning_filters() -> None:
    """Put back the filters a fresh interpreter starts with (the documented default warning
    filter), as a subprocess run has them: under this suite's ``filterwarnings = error``, a
    warning the run under test issues and reports (the plugin's, at collection) would be
    raised instead."""
    warnings.resetwarnings()
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.simplefilter("ignore", category, append=True)


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
    """Whether none of ``pids`` runs any more (zombies waiting for init count as gone).

    The suite's own processes are left out: this one and the warm process its runs are
    forked from (their parent, which a run may record as pytest's parent).
    """
    harness = {os.getpid(), _WARM.pid}
    pids = [pid for pid in pids if pid not in harness]
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


def report_sections(lines: List[str]) -> Dict[str, List[str]]:
    """The sections of pytest's output headed ``____ NAME ____``: NAME -> the lines under it.

    NAME is what pytest puts between the underscores (``test_x``, ``test_x[1]``, ``ERROR at
    setup of test_x``). A section ends at the next such heading or at a ``====`` line, so a
    check on one section cannot be met by another test's lines, which a run holding several
    tests needs; two tests of the same name in one run would share a heading, and fail here.
    """
    sections: Dict[str, List[str]] = {}
    current: Optional[List[str]] = None
    for line in lines:
        heading = re.fullmatch(r"_{3,} (.+?) _{3,}", line)
        if heading:
            assert heading.group(1) not in sections, f"two sections are headed {heading.group(1)}"
            current = sections[heading.group(1)] = []
        elif re.fullmatch(r"={3,}( .* =+)?", line):
            current = None
        elif current is not None:
            current.append(line)
    return sections


def report_block(lines: List[str], name: str) -> List[str]:
    """The MEMRAY REPORT block of test ``name`` (``Allocation results for ...::NAME ...``), up
    to the next test's block or the report's closing lines; for runs holding several tests."""
    start = next(
        index
        for index, line in enumerate(lines)
        if line.startswith("Allocation results for ") and f"::{name} " in line
    )
    end = next(
        (
            index
            for index in range(start + 1, len(lines))
            if lines[index].startswith(("Allocation results for ", "Highest peak:"))
        ),
        len(lines),
    )
    return lines[start:end]


def run_suites(
    directory: Path,
    suites: Dict[str, str],
    *args: str,
    environment: Optional[Dict[str, str]] = None,
    timeout: float = 150,
    keep: Sequence[str] = (),
    keep_cache: bool = False,
) -> pytest.RunResult:
    """Run pytest once, in a process of its own (forked warm, as ``run`` does), on several
    small test modules at once.

    ``suites`` maps a module's name (without ``.py``) to its source; each is written to
    ``directory``, from which pytest runs as ``run`` would run it. For checks that need a
    subprocess but not one each: a module-scoped fixture shares one run among the tests
    that check its modules (``outcomes_in`` and ``report_sections`` tell each module's and
    each test's part apart), so a mode costs one interpreter and not one per check.
    ``environment`` adds to the variables the run inherits; a run that outlives ``timeout``
    seconds (under the suite's own timeout, in pyproject.toml) is killed and fails the tests
    that share it; ``keep`` names the installed plugins it loads (as ``run``'s ``plugins``);
    ``keep_cache`` keeps pytest's cache in ``directory``, for runs made one after the other
    there that remember for the next (as ``run``'s).
    """
    for name, source in suites.items():
        (directory / f"{name}.py").write_text(textwrap.dedent(source).strip("\n") + "\n")
    arguments = [f"--basetemp={directory / 'basetemp'}", *([] if keep_cache else ["-p", "no:cacheprovider"])]
    variables = {name: value for name, value in os.environ.items() if name != "PYTEST_ADDOPTS"}
    variables.update(environment or {})
    return _WARM.run(
        [*arguments, *without_plugins(keep), *args],
        cwd=directory,
        output=directory,
        environ=variables,
        timeout=timeout,
    )


#: The outcome words of pytest's short test summary (``-rA``) and what assert_outcomes calls them.
_SUMMARY_WORDS = {
    "PASSED": "passed",
    "FAILED": "failed",
    "ERROR": "errors",
    "XFAIL": "xfailed",
    "XPASS": "xpassed",
}


def outcomes_in(result: pytest.RunResult, module: str) -> Dict[str, int]:
    """How many tests of ``module`` (``test_x.py``) had each outcome, from a ``-rA`` summary.

    The counterpart of ``assert_outcomes`` for one module of a run holding several. A
    skip counts for the module whose code raised it, as pytest names that place (a skip
    the plugin raises names the plugin).
    """
    lines = result.outlines
    start = next(index for index, line in enumerate(lines) if "short test summary info" in line)
    counts: Dict[str, int] = {}
    for line in lines[start + 1 :]:
        if line.startswith("MEMORY PROBLEMS "):  # the plugin's word for a failed memory limit
            line = "FAILED " + line[len("MEMORY PROBLEMS ") :]
        word, _, rest = line.partition(" ")
        where = rest.split(" ", 1)[0]
        if word == "SKIPPED" and where.startswith("["):
            number = int(where[1:-1])
            if rest.split(" ", 2)[1].startswith(f"{module}:"):
                counts["skipped"] = counts.get("skipped", 0) + number
        elif word in _SUMMARY_WORDS and (where == module or where.startswith(f"{module}::")):
            kind = _SUMMARY_WORDS[word]
            counts[kind] = counts.get(kind, 0) + 1
    return counts


class SharedRun(NamedTuple):
    """One run that several tests share: its result, and the directory it ran in."""

    result: pytest.RunResult
    path: Path


def saved_result(result: pytest.RunResult) -> Dict[str, Any]:
    """What a run's result keeps in JSON, for the workers that read a run another started."""
    return {
        "ret": int(result.ret),
        "outlines": result.outlines,
        "errlines": result.errlines,
        "duration": result.duration,
    }


def result_from_saved(data: Dict[str, Any]) -> pytest.RunResult:
    """The result :func:`saved_result` kept."""
    return pytest.RunResult(data["ret"], data["outlines"], data["errlines"], data["duration"])


def run_once(
    factory: pytest.TempPathFactory, key: str, start: Callable[[Path], pytest.RunResult]
) -> SharedRun:
    """``start(directory)`` once per session, and its result and directory for every caller.

    A module-scoped fixture runs once per xdist worker that gets one of its tests: two
    workers would each start the same shared run. Here the first caller starts it, under
    a lock in the directory all workers share, and saves its output beside it; the others
    wait for the lock and read that. ``key`` names the run within the session.
    """
    root = factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        root = root.parent  # the session's directory, above each worker's own
    directory, saved = root / f"shared-{key}", root / f"shared-{key}.json"
    with open(root / f"shared-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if saved.exists():
            return SharedRun(result_from_saved(json.loads(saved.read_text())), directory)
        directory.mkdir()
        outcome = start(directory)
        saved.write_text(json.dumps(saved_result(outcome)))
        return SharedRun(outcome, directory)
