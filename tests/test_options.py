"""End to end: pytest-memray's options and ini keys, each proven from the command line and from the ini alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from conftest import (
    MODE_FLAGS,
    Runner,
    SharedRun,
    outcomes_in,
    report_block,
    report_sections,
    run_once,
    run_suites,
    sources_by_mode,
)

_OVER_LIMIT = """
import pytest

def helper():
    return bytearray(3 * 1024 * 1024)

@pytest.mark.limit_memory("1 MB")
def test_over():
    data = helper()
    assert data is not None
"""

_ALLOCATES = """
def test_allocates():
    data = bytearray(2 * 1024 * 1024)
    assert data is not None

def test_allocates_more():
    data = bytearray(4 * 1024 * 1024)
    assert data is not None
"""

_ODD_NAMES = """
import pytest

@pytest.mark.parametrize("text", ["x" * 400, "a/b:c*d?e<f>|g h", "ünïcödé"])
def test_named(text):
    data = bytearray(1024 * 1024)
    assert data is not None
"""

_SMALL_OBJECTS = """
def test_small_objects():
    words = [str(n) for n in range(20_000)]
    assert words
"""

_DEFAULT_LIMITED = """
import pytest

def test_unmarked():
    data = bytearray(3 * 1024 * 1024)
    assert data is not None

@pytest.mark.limit_memory("8 MB")
def test_own_marker_wins():
    data = bytearray(3 * 1024 * 1024)
    assert data is not None

@pytest.mark.parametrize(
    "mib",
    [1, pytest.param(3, marks=pytest.mark.limit_memory("4 MB"), id="three-with-its-own-limit"), 3],
)
def test_per_parameter(mib):
    data = bytearray(mib * 1024 * 1024)
    assert data is not None
"""

_TWELVE_ALLOCATIONS = "\n".join(f"    chunks.append(bytearray({100_000 + n * 1024}))" for n in range(12))
_MANY = f'import pytest\n\n@pytest.mark.limit_memory("1 KB")\ndef test_many():\n    chunks = []\n{_TWELVE_ALLOCATIONS}\n'

_ISOLATED_BY_ITS_MARKER = """
import pytest

@pytest.mark.memray_isolate
def test_isolated():
    pass
"""

_CRASHES = "import os\n\ndef test_crashes():\n    os._exit(3)\n"

# The module each test's suite is written to in a shared run: the test's own name.
_BIN_PATH = "test_bin_path_keeps_one_capture_per_test"
_DEFAULT_PREFIX = "test_the_printed_default_prefix_is_the_one_the_files_carry"
_CRASHED = "test_a_crashed_childs_kept_capture_is_counted_and_named"
_PORTABLE = "test_kept_files_have_portable_names_and_memray_reads_them"
_UMASK = "test_every_file_the_run_keeps_follows_the_umask"
_STACKS = "test_stacks_shows_more_frames"
_NATIVE = "test_native_shows_native_frames"
_TRACE = "test_trace_python_allocators_counts_small_objects"
_DEFAULT_LIMIT = "test_default_limit_applies_to_unmarked_tests"
_VERBOSITY = "test_verbosity_memray_ini_key"
_MARKER_ISOLATED = "test_isolation_limits_with_an_isolated_test_do_not_warn"


def _kept(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.bin"))


def _own(paths: List[Path], module: str) -> List[Path]:
    """Those of ``paths`` (kept captures, flame graphs) that tests of ``module`` wrote."""
    return [path for path in paths if f"-{module}.py-" in path.name]


# -- shared runs ------------------------------------------------------------------------
#
# Most tests below run a small suite with an option given on the command line in each
# mode, and in the ini file in fork mode. One run holds the suites of several tests whose
# options leave each other's checks alone; each test checks its own module: its outcomes,
# its failure section, its block of the MEMRAY REPORT, its kept files. Which options do
# interact, and so never share a run:
# - --native and --stacks=2 both change the frames listed under an allocation;
# - verbosity_memray = -1 lists no allocation, which the frame checks read, and
#   verbosity_memray = 2 lists every one, which --trace-python-allocators multiplies;
# - -q (the verbosity test's) makes the summary say FAILED where the default-limit test
#   reads MEMORY PROBLEMS;
# - --memray-limit-memory=2 MB fails the unmarked 2 to 4 MiB tests of the kept-file
#   checks (whose tests must pass) and judges the small-object counting test;
# - --trace-python-allocators is what the counting test compares with and without;
# - one run has one capture prefix: the printed default and "nightly" are two runs.
# The verbosity test's exact counts in pytest's own process, and its -1 case, which has
# no run to share, run alone (test_verbosity_memray_ini_key).


def _shared(
    factory: pytest.TempPathFactory,
    key: str,
    suites: Dict[str, str],
    args: List[str],
    *,
    ini: Optional[str] = None,
    umask: Optional[int] = None,
) -> SharedRun:
    """One run of ``suites`` per session (``run_once``): ``{path}`` in ``args`` and ``ini``
    is the directory it runs in; ``ini`` is its ini file's [pytest] section, and ``umask``
    the umask it runs under."""

    def start(path: Path) -> pytest.RunResult:
        if ini is not None:
            (path / "tox.ini").write_text("[pytest]\n" + ini.format(path=path))
        arguments = [arg.format(path=path) for arg in args]
        if umask is None:
            return run_suites(path, suites, *arguments)
        previous = os.umask(umask)
        try:
            return run_suites(path, suites, *arguments)
        finally:
            os.umask(previous)

    return run_once(factory, f"options-{key}", start)


def _mode(mode_flag: str) -> str:
    return next(mode for mode, flag in MODE_FLAGS.items() if flag == mode_flag)


def _kept_files_run(factory: pytest.TempPathFactory, mode_flag: str) -> SharedRun:
    """Kept captures with the default prefix, in the "all" format, under umask 027: the
    default-prefix, umask and portable-name tests, and the small-object count without
    --trace-python-allocators; in fork mode with flame graphs and a JSON report, which
    the umask test checks there. Isolated, the run also holds verbosity_memray = 2 (with
    -q): no other suite here fails, so its list is the only one."""
    suites = {_DEFAULT_PREFIX: _ALLOCATES, _UMASK: _ALLOCATES, _PORTABLE: _ODD_NAMES, _TRACE: _SMALL_OBJECTS}
    args = [mode_flag, "--memray-bin-path={path}/captures", "--memray-capture-format=all"]
    args += ["--most-allocations=0", "-rA"]
    if mode_flag == MODE_FLAGS["fork"]:
        args += ["--memray-flamegraph=graphs", "--memray-flamegraph-all", "--memray-json=out.json"]
    ini = None
    if mode_flag != MODE_FLAGS["in-process"]:
        suites[_VERBOSITY] = _MANY
        args.append("-q")
        ini = "verbosity_memray = 2\n"
    return _shared(factory, f"kept-{_mode(mode_flag)}", suites, args, ini=ini, umask=0o027)


def _traced_run(factory: pytest.TempPathFactory, mode_flag: str) -> SharedRun:
    """--trace-python-allocators, --native and kept captures prefixed "nightly", with a JSON
    report: the small-object count traced, native frames, the kept file of each test and
    (isolated) of a crashed child. Tracing and native frames change neither the kept
    files nor the 3 MiB allocation's listing; the count reads its own test's block."""
    suites = {_TRACE: _SMALL_OBJECTS, _NATIVE: _OVER_LIMIT, _BIN_PATH: _ALLOCATES}
    if mode_flag != MODE_FLAGS["in-process"]:
        suites[_CRASHED] = _CRASHES
    args = [mode_flag, "--trace-python-allocators", "--memray-capture-format=all", "--native"]
    args += ["--memray-bin-path={path}/captures", "--memray-bin-prefix=nightly", "--memray-json=out.json"]
    return _shared(factory, f"traced-{_mode(mode_flag)}", suites, [*args, "--most-allocations=0", "-rA"])


def _traced_ini_run(factory: pytest.TempPathFactory) -> SharedRun:
    """Fork mode with what _traced_run gives on the command line in the ini file instead,
    and verbosity_memray = 0 (with -q): it cuts each list at 10, the 3 MiB allocation of
    the native-frame test first."""
    suites = {_TRACE: _SMALL_OBJECTS, _NATIVE: _OVER_LIMIT, _BIN_PATH: _ALLOCATES, _VERBOSITY: _MANY}
    ini = (
        "trace_python_allocators = true\nmemray_capture_format = all\nnative = true\n"
        "memray_bin_path = {path}/captures\nmemray_bin_prefix = nightly\nverbosity_memray = 0\n"
    )
    args = [MODE_FLAGS["fork"], "--most-allocations=0", "-q", "-rA"]
    return _shared(factory, "traced-ini", suites, args, ini=ini)


def _failure_lists_run(factory: pytest.TempPathFactory, mode_flag: str) -> SharedRun:
    """--stacks=2 and a default limit of 2 MB: the frames test is marked, so the default
    limit judges only its own test's unmarked tests. In pytest's process the run also
    holds --memray-timeout=5 and a test its marker isolates, which only that test's
    child is given (the other tests run in pytest's process)."""
    suites = {_STACKS: _OVER_LIMIT, _DEFAULT_LIMIT: _DEFAULT_LIMITED}
    args = [mode_flag, "--stacks=2", "--memray-limit-memory=2 MB", "-rA"]
    if mode_flag == MODE_FLAGS["in-process"]:
        suites[_MARKER_ISOLATED] = _ISOLATED_BY_ITS_MARKER
        args.append("--memray-timeout=5")
    return _shared(factory, f"failure-lists-{_mode(mode_flag)}", suites, args)


def _failure_lists_ini_run(factory: pytest.TempPathFactory) -> SharedRun:
    """Fork mode with stacks = 2 and memray_limit_memory = 2 MB in the ini file instead."""
    suites = {_STACKS: _OVER_LIMIT, _DEFAULT_LIMIT: _DEFAULT_LIMITED}
    ini = "stacks = 2\nmemray_limit_memory = 2 MB\n"
    return _shared(factory, "failure-lists-ini", suites, [MODE_FLAGS["fork"], "-rA"], ini=ini)


def _section(shared: SharedRun, name: str) -> pytest.LineMatcher:
    """The failure section of test ``name`` (one test of that name per run)."""
    return pytest.LineMatcher(report_sections(shared.result.outlines)[name])


def _block(shared: SharedRun, name: str) -> List[str]:
    """The MEMRAY REPORT block of test ``name`` in the shared run."""
    return report_block(shared.result.outlines, name)


def _created_line(shared: SharedRun, folder: Path, prefix: str) -> None:
    """The summary's line counts every capture the run kept (the run's, not one test's)."""
    shared.result.stdout.fnmatch_lines(
        [f"Created {len(_kept(folder))} binary dumps at {folder} with prefix {prefix}"]
    )


@pytest.mark.parametrize(("where", "mode_flag"), sources_by_mode())
def test_bin_path_keeps_one_capture_per_test(
    tmp_path_factory: pytest.TempPathFactory, mode_flag: str, where: str
) -> None:
    """--memray-bin-path (or memray_bin_path) keeps each test's capture and says where, with the real prefix."""
    shared = _traced_ini_run(tmp_path_factory) if where == "ini" else _traced_run(tmp_path_factory, mode_flag)
    assert outcomes_in(shared.result, f"{_BIN_PATH}.py") == {"passed": 2}
    folder = shared.path / "captures"
    names = [path.name for path in _own(_kept(folder), _BIN_PATH)]
    assert names == [
        "nightly-test_bin_path_keeps_one_capture_per_test.py-test_allocates.bin",
        "nightly-test_bin_path_keeps_one_capture_per_test.py-test_allocates_more.bin",
    ]
    _created_line(shared, folder, "nightly")


def test_the_printed_default_prefix_is_the_one_the_files_carry(
    tmp_path_factory: pytest.TempPathFactory, mode_flag: str
) -> None:
    """Without --memray-bin-prefix a random prefix is chosen, and the summary names that one."""
    shared = _kept_files_run(tmp_path_factory, mode_flag)
    assert outcomes_in(shared.result, f"{_DEFAULT_PREFIX}.py") == {"passed": 2}
    line = next(line for line in shared.result.stdout.lines if line.startswith("Created "))
    prefix = line.rsplit(" ", 1)[1]
    own = _own(_kept(shared.path / "captures"), _DEFAULT_PREFIX)
    assert len(own) == 2
    assert all(path.name.startswith(prefix + "-") for path in own)


def test_a_crashed_childs_kept_capture_is_counted_and_named(
    tmp_path_factory: pytest.TempPathFactory, isolated_flag: str
) -> None:
    """The capture a crashed child leaves is kept like the others, and the JSON report names it."""
    shared = _traced_run(tmp_path_factory, isolated_flag)
    assert outcomes_in(shared.result, f"{_CRASHED}.py") == {"failed": 1}
    folder = shared.path / "captures"
    capture = folder / "nightly-test_a_crashed_childs_kept_capture_is_counted_and_named.py-test_crashes.bin"
    assert _own(_kept(folder), _CRASHED) == [capture]
    _created_line(shared, folder, "nightly")
    tests = {test["nodeid"]: test for test in json.loads((shared.path / "out.json").read_text())["tests"]}
    test = tests[f"{_CRASHED}.py::test_crashes"]
    assert test["capture_file"] == str(capture)
    assert Path(test["capture_file"]).exists()


def test_kept_files_have_portable_names_and_memray_reads_them(
    tmp_path_factory: pytest.TempPathFactory, mode_flag: str
) -> None:
    """Long and odd parameter ids give names of at most 255 bytes that memray's own commands open.

    Each memray command takes about a second: ``memray stats`` opens a capture in every
    mode (the test's process writes it); summary, table and flamegraph in fork mode.
    """
    shared = _kept_files_run(tmp_path_factory, mode_flag)
    assert outcomes_in(shared.result, f"{_PORTABLE}.py") == {"passed": 3}
    folder = shared.path / "captures"
    kept = _own(_kept(folder), _PORTABLE)
    assert len(kept) == 3
    for path in kept:
        assert len(path.name.encode()) <= 255
        assert not set(path.name) & set('/:*?<>|" ')
    memray = [sys.executable, "-m", "memray"]
    done = subprocess.run([*memray, "stats", str(kept[0])], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    if mode_flag != MODE_FLAGS["fork"]:
        return
    for command in (["summary"], ["table", "-o", str(folder / "table.html")]):
        done = subprocess.run([*memray, *command, str(kept[0])], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    flamegraph = folder / "flame.html"
    done = subprocess.run(
        [*memray, "flamegraph", "-o", str(flamegraph), str(kept[1])], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "<html" in flamegraph.read_text().lower()


def test_every_file_the_run_keeps_follows_the_umask(
    tmp_path_factory: pytest.TempPathFactory, mode_flag: str
) -> None:
    """Kept captures, flame graphs and the JSON report get the permissions the umask gives,
    as any file pytest writes does (the report used to be readable by its owner only).

    The captures are written where the test runs, so every mode checks them; flame graphs
    and the report are written by pytest's process (and a flame graph costs a second or
    so to draw): fork mode checks those too. The run's umask is 027 (_kept_files_run).
    """
    shared = _kept_files_run(tmp_path_factory, mode_flag)
    assert outcomes_in(shared.result, f"{_UMASK}.py") == {"passed": 2}
    written = _own(_kept(shared.path / "captures"), _UMASK)
    assert len(written) == 2
    if mode_flag == MODE_FLAGS["fork"]:
        written += [*_own(list((shared.path / "graphs").iterdir()), _UMASK), shared.path / "out.json"]
        assert len(written) == 5
    assert {path.name: oct(path.stat().st_mode & 0o777) for path in written} == {
        path.name: oct(0o640) for path in written
    }


def test_a_rerun_replaces_the_kept_file_of_an_earlier_run(pytester: pytest.Pytester, run: Runner) -> None:
    """Reusing --memray-bin-path with the same prefix overwrites each test's file instead of failing."""
    pytester.makepyfile(_ALLOCATES)
    folder = pytester.path / "captures"
    for _ in range(2):
        result = run("--memray-isolate", f"--memray-bin-path={folder}", "--memray-bin-prefix=same")
        assert result.ret == 0
        result.stdout.fnmatch_lines(["Created 2 binary dumps at * with prefix same"])
    assert len(_kept(folder)) == 2


@pytest.mark.parametrize(("where", "mode_flag"), sources_by_mode())
def test_stacks_shows_more_frames(
    tmp_path_factory: pytest.TempPathFactory, mode_flag: str, where: str
) -> None:
    """--stacks N (or stacks = N) lists N frames per allocation in the failure section."""
    if where == "ini":
        shared = _failure_lists_ini_run(tmp_path_factory)
    else:
        shared = _failure_lists_run(tmp_path_factory, mode_flag)
    assert outcomes_in(shared.result, f"{_STACKS}.py") == {"failed": 1}
    _section(shared, "test_over").fnmatch_lines(
        [
            "    - 3.0MiB allocated here:",
            "        helper:*test_stacks_shows_more_frames.py:4",
            "        test_over:*test_stacks_shows_more_frames.py:8",
        ]
    )


@pytest.mark.parametrize(("where", "mode_flag"), sources_by_mode())
def test_native_shows_native_frames(
    tmp_path_factory: pytest.TempPathFactory, mode_flag: str, where: str
) -> None:
    """--native (or native = true) records C frames and shows them in the failure section."""
    shared = _traced_ini_run(tmp_path_factory) if where == "ini" else _traced_run(tmp_path_factory, mode_flag)
    assert outcomes_in(shared.result, f"{_NATIVE}.py") == {"failed": 1}
    _section(shared, "test_over").fnmatch_lines(["    - 3.0MiB allocated here:", "        *:*.c:*"])


@pytest.mark.parametrize(("where", "mode_flag"), sources_by_mode())
def test_trace_python_allocators_counts_small_objects(
    tmp_path_factory: pytest.TempPathFactory, mode_flag: str, where: str
) -> None:
    """--trace-python-allocators records each small object, so the allocation count grows.

    The count is read from captures in the "all" format: the aggregated format merges
    allocations made at one place into one record. Without tracing, the count comes from
    the run of the kept-file tests (also in the "all" format); traced, from the run of
    the native-frame and bin-path tests.
    """
    plain = _kept_files_run(tmp_path_factory, mode_flag)
    traced = _traced_ini_run(tmp_path_factory) if where == "ini" else _traced_run(tmp_path_factory, mode_flag)

    def count(shared: SharedRun) -> int:
        assert outcomes_in(shared.result, f"{_TRACE}.py") == {"passed": 1}
        line = next(line for line in _block(shared, "test_small_objects") if "Total allocations:" in line)
        return int(line.rsplit(" ", 1)[1])

    assert count(plain) < 1000
    assert count(traced) > 10_000


@pytest.mark.parametrize(("where", "mode_flag"), sources_by_mode())
def test_default_limit_applies_to_unmarked_tests(
    tmp_path_factory: pytest.TempPathFactory, mode_flag: str, where: str
) -> None:
    """--memray-limit-memory (or memray_limit_memory) limits every tracked test without its own marker."""
    if where == "ini":
        shared = _failure_lists_ini_run(tmp_path_factory)
    else:
        shared = _failure_lists_run(tmp_path_factory, mode_flag)
    assert outcomes_in(shared.result, f"{_DEFAULT_LIMIT}.py") == {"passed": 3, "failed": 2}
    shared.result.stdout.fnmatch_lines(
        [
            f"MEMORY PROBLEMS {_DEFAULT_LIMIT}.py::test_unmarked*",
            f"MEMORY PROBLEMS {_DEFAULT_LIMIT}.py::test_per_parameter?3?*",
        ]
    )


@pytest.mark.parametrize(
    ("setting", "listed", "mode_flag"),
    [
        pytest.param("-1", 0, MODE_FLAGS["fork"], id="-1-fork"),
        pytest.param("0", 10, MODE_FLAGS["fork"], id="0-fork"),
        *(pytest.param("2", 12, flag, id=f"2-{mode}") for mode, flag in sorted(MODE_FLAGS.items())),
    ],
)
def test_verbosity_memray_ini_key(
    pytester: pytest.Pytester,
    run: Runner,
    tmp_path_factory: pytest.TempPathFactory,
    mode_flag: str,
    setting: str,
    listed: int,
) -> None:
    """verbosity_memray overrides -v/-q for the allocation list of a memory failure.

    pytest's process reads the key and cuts the list, whatever the mode: each setting is
    checked in fork mode, and the whole list (12) in every mode, to show it all arrives.
    In pytest's own process the count is exact only in a run of its own (a fresh arena,
    which depends on what ran before, is one more allocation), so that case runs alone,
    as does -1, whose empty list every shared run here would need (see the shared runs).
    """
    if mode_flag == MODE_FLAGS["in-process"] or setting == "-1":
        pytester.makepyfile(**{_VERBOSITY: _MANY})
        pytester.makeini(f"[pytest]\nverbosity_memray = {setting}\n")
        result = run(mode_flag, "-q")
        result.assert_outcomes(failed=1)
        assert result.stdout.str().count("allocated here:") == listed
        return
    if setting == "0":
        shared = _traced_ini_run(tmp_path_factory)
    else:
        shared = _kept_files_run(tmp_path_factory, mode_flag)
    assert outcomes_in(shared.result, f"{_VERBOSITY}.py") == {"failed": 1}
    assert "\n".join(report_sections(shared.result.outlines)["test_many"]).count("allocated here:") == listed


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any directory")
def test_a_read_only_bin_path_is_a_usage_error(pytester: pytest.Pytester, run: Runner) -> None:
    """A directory the user cannot write to is refused before any test runs."""
    folder = pytester.mkdir("read-only")
    folder.chmod(0o500)
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = run(f"--memray-bin-path={folder}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --memray-bin-path = * the directory {folder} is not writable"])


@pytest.mark.parametrize(
    ("flags", "ini", "named"),
    [
        (["--memray-timeout=5"], "", "--memray-timeout has"),
        (["--memray-max-rss=1 GB"], "", "--memray-max-rss has"),
        ([], "memray_timeout = 5\nmemray_max_rss = 1 GB", "memray_timeout in * and memray_max_rss in * have"),
    ],
)
def test_isolation_limits_without_isolation_warn_once(
    pytester: pytest.Pytester, run_inprocess: Runner, flags: list[str], ini: str, named: str
) -> None:
    """--memray-timeout and --memray-max-rss with --memray alone would do nothing: one warning says so."""
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(_ALLOCATES)
    result = run_inprocess("--memray", *flags)
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(
        [
            f"*IgnoredSettingWarning: {named} no effect: they apply to isolated children only,"
            " and no test in this run is isolated (--memray-isolate, or the memray_isolate marker)."
        ]
    )


def test_isolation_limits_with_an_isolated_test_do_not_warn(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One test isolated by its marker is enough for --memray-timeout to apply: no warning
    (the warning would be the run's, once, whatever else it holds)."""
    shared = _failure_lists_run(tmp_path_factory, MODE_FLAGS["in-process"])
    assert outcomes_in(shared.result, f"{_MARKER_ISOLATED}.py") == {"passed": 1}
    shared.result.stdout.no_fnmatch_line("*IgnoredSettingWarning*")


def test_fail_on_increase_without_the_cache_warns_once(
    pytester: pytest.Pytester, run_inprocess: Runner
) -> None:
    """--fail-on-increase with -p no:cacheprovider has no earlier run to compare with: a warning says so."""
    pytester.makepyfile(_OVER_LIMIT.replace('"1 MB"', '"10 MB"'))
    result = run_inprocess("--memray", "--fail-on-increase")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*IgnoredSettingWarning: --fail-on-increase has no effect: pytest's cache is disabled"
            " (-p no:cacheprovider), so there is no earlier run to compare with."
        ]
    )
