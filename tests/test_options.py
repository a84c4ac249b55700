"""End to end: pytest-memray's options and ini keys, each proven from the command line and from the ini alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MODE_FLAGS, Runner, sources_by_mode

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


def _kept(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.bin"))


@pytest.mark.parametrize(("where", "mode_flag"), sources_by_mode())
def test_bin_path_keeps_one_capture_per_test(
    pytester: pytest.Pytester, run: Runner, mode_flag: str, where: str
) -> None:
    """--memray-bin-path (or memray_bin_path) keeps each test's capture and says where, with the real prefix."""
    pytester.makepyfile(_ALLOCATES)
    folder = pytester.path / "captures"
    if where == "ini":
        pytester.makeini(f"[pytest]\nmemray_bin_path = {folder}\nmemray_bin_prefix = nightly\n")
        result = run(mode_flag)
    else:
        result = run(mode_flag, f"--memray-bin-path={folder}", "--memray-bin-prefix=nightly")
    assert result.ret == 0
    names = [path.name for path in _kept(folder)]
    assert names == [
        "nightly-test_bin_path_keeps_one_capture_per_test.py-test_allocates.bin",
        "nightly-test_bin_path_keeps_one_capture_per_test.py-test_allocates_more.bin",
    ]
    result.stdout.fnmatch_lines([f"Created 2 binary dumps at {folder} with prefix nightly"])


def test_the_printed_default_prefix_is_the_one_the_files_carry(
    pytester: pytest.Pytester, run: Runner, mode_flag: str
) -> None:
    """Without --memray-bin-prefix a random prefix is chosen, and the summary names that one."""
    pytester.makepyfile(_ALLOCATES)
    folder = pytester.path / "captures"
    result = run(mode_flag, f"--memray-bin-path={folder}")
    line = next(line for line in result.stdout.lines if line.startswith("Created "))
    prefix = line.rsplit(" ", 1)[1]
    assert len(_kept(folder)) == 2
    assert all(path.name.startswith(prefix + "-") for path in _kept(folder))


def test_a_crashed_childs_kept_capture_is_counted_and_named(
    pytester: pytest.Pytester, run: Runner, isolated_flag: str
) -> None:
    """The capture a crashed child leaves is kept like the others, and the JSON report names it."""
    pytester.makepyfile("import os\n\ndef test_crashes():\n    os._exit(3)\n")
    folder = pytester.path / "captures"
    result = run(
        isolated_flag, f"--memray-bin-path={folder}", "--memray-bin-prefix=run", "--memray-json=out.json"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"Created 1 binary dumps at {folder} with prefix run"])
    (test,) = json.loads((pytester.path / "out.json").read_text())["tests"]
    assert test["capture_file"] == str(
        folder / "run-test_a_crashed_childs_kept_capture_is_counted_and_named.py-test_crashes.bin"
    )
    assert Path(test["capture_file"]).exists()


def test_kept_files_have_portable_names_and_memray_reads_them(
    pytester: pytest.Pytester, run: Runner, mode_flag: str
) -> None:
    """Long and odd parameter ids give names of at most 255 bytes that memray's own commands open.

    Each memray command takes about a second: ``memray stats`` opens a capture in every
    mode (the test's process writes it); summary, table and flamegraph in fork mode.
    """
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("text", ["x" * 400, "a/b:c*d?e<f>|g h", "ünïcödé"])
        def test_named(text):
            data = bytearray(1024 * 1024)
            assert data is not None
        """
    )
    folder = pytester.path / "captures"
    result = run(mode_flag, f"--memray-bin-path={folder}", "--memray-capture-format=all")
    assert result.ret == 0
    kept = _kept(folder)
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
    pytester: pytest.Pytester, run: Runner, mode_flag: str
) -> None:
    """Kept captures, flame graphs and the JSON report get the permissions the umask gives,
    as any file pytest writes does (the report used to be readable by its owner only).

    The captures are written where the test runs, so every mode checks them; flame graphs
    and the report are written by pytest's process (and a flame graph costs a second or
    so to draw): fork mode checks those too.
    """
    pytester.makepyfile(_ALLOCATES)
    folder = pytester.path / "captures"
    everything = mode_flag == MODE_FLAGS["fork"]
    reports = ["--memray-flamegraph=graphs", "--memray-flamegraph-all", "--memray-json=out.json"]
    umask = os.umask(0o027)
    try:
        result = run(mode_flag, f"--memray-bin-path={folder}", *(reports if everything else []))
    finally:
        os.umask(umask)
    assert result.ret == 0
    written = _kept(folder)
    assert len(written) == 2
    if everything:
        written += [*(pytester.path / "graphs").iterdir(), pytester.path / "out.json"]
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
def test_stacks_shows_more_frames(pytester: pytest.Pytester, run: Runner, mode_flag: str, where: str) -> None:
    """--stacks N (or stacks = N) lists N frames per allocation in the failure section."""
    pytester.makepyfile(_OVER_LIMIT)
    if where == "ini":
        pytester.makeini("[pytest]\nstacks = 2\n")
        result = run(mode_flag)
    else:
        result = run(mode_flag, "--stacks=2")
    result.stdout.fnmatch_lines(
        [
            "    - 3.0MiB allocated here:",
            "        helper:*test_stacks_shows_more_frames.py:4",
            "        test_over:*test_stacks_shows_more_frames.py:8",
        ]
    )


@pytest.mark.parametrize(("where", "mode_flag"), sources_by_mode())
def test_native_shows_native_frames(
    pytester: pytest.Pytester, run: Runner, mode_flag: str, where: str
) -> None:
    """--native (or native = true) records C frames and shows them in the failure section."""
    pytester.makepyfile(_OVER_LIMIT)
    if where == "ini":
        pytester.makeini("[pytest]\nnative = true\n")
        result = run(mode_flag)
    else:
        result = run(mode_flag, "--native")
    result.stdout.fnmatch_lines(["    - 3.0MiB allocated here:", "        *:*.c:*"])


@pytest.mark.parametrize(("where", "mode_flag"), sources_by_mode())
def test_trace_python_allocators_counts_small_objects(
    pytester: pytest.Pytester, run: Runner, mode_flag: str, where: str
) -> None:
    """--trace-python-allocators records each small object, so the allocation count grows.

    The count is read from captures in the "all" format: the aggregated format merges
    allocations made at one place into one record.
    """
    pytester.makepyfile(
        """
        def test_small_objects():
            words = [str(n) for n in range(20_000)]
            assert words
        """
    )
    plain = run(mode_flag, "--memray-capture-format=all")
    if where == "ini":
        pytester.makeini("[pytest]\ntrace_python_allocators = true\nmemray_capture_format = all\n")
        traced = run(mode_flag)
    else:
        traced = run(mode_flag, "--trace-python-allocators", "--memray-capture-format=all")

    def count(result: pytest.RunResult) -> int:
        line = next(line for line in result.stdout.lines if "Total allocations:" in line)
        return int(line.rsplit(" ", 1)[1])

    assert count(plain) < 1000
    assert count(traced) > 10_000


@pytest.mark.parametrize(("where", "mode_flag"), sources_by_mode())
def test_default_limit_applies_to_unmarked_tests(
    pytester: pytest.Pytester, run: Runner, mode_flag: str, where: str
) -> None:
    """--memray-limit-memory (or memray_limit_memory) limits every tracked test without its own marker."""
    pytester.makepyfile(
        """
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
    )
    if where == "ini":
        pytester.makeini("[pytest]\nmemray_limit_memory = 2 MB\n")
        result = run(mode_flag, "-rf")
    else:
        result = run(mode_flag, "--memray-limit-memory=2 MB", "-rf")
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines(
        ["MEMORY PROBLEMS *::test_unmarked*", "MEMORY PROBLEMS *::test_per_parameter?3?*"]
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
    pytester: pytest.Pytester, run: Runner, mode_flag: str, setting: str, listed: int
) -> None:
    """verbosity_memray overrides -v/-q for the allocation list of a memory failure.

    pytest's process reads the key and cuts the list, whatever the mode: each setting is
    checked in fork mode, and the whole list (12) in every mode, to show it all arrives.
    """
    body = "\n".join(f"    chunks.append(bytearray({100_000 + n * 1024}))" for n in range(12))
    pytester.makepyfile(
        f'import pytest\n\n@pytest.mark.limit_memory("1 KB")\ndef test_many():\n    chunks = []\n{body}\n'
    )
    pytester.makeini(f"[pytest]\nverbosity_memray = {setting}\n")
    result = run(mode_flag, "-q")
    result.assert_outcomes(failed=1)
    assert result.stdout.str().count("allocated here:") == listed


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


def test_isolation_limits_with_an_isolated_test_do_not_warn(pytester: pytest.Pytester, run: Runner) -> None:
    """One test isolated by its marker is enough for --memray-timeout to apply: no warning."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.memray_isolate
        def test_isolated():
            pass
        """
    )
    result = run("--memray", "--memray-timeout=5")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*IgnoredSettingWarning*")


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
