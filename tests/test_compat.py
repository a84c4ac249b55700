"""pytest-memray 1.11's surface, as its users and their scripts rely on it.

Each expectation here is a behaviour of pytest-memray 1.11.0, observed by running it
(pytest 9.2.0, memray 1.20.0) in a virtualenv of its own, since both plugins register
the pytest plugin ``memray`` and cannot be installed together: its ``--help``, what
``config.getoption`` and ``config.getini`` give a conftest, and the messages of its
markers. A change that breaks a pytest-memray user's conftest, ini file or log filter
fails here. Deliberate differences are listed in docs/migrating.rst and tested as such.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import Runner
from pytest_memray_isolate._options import INI_UNIONS, OPTIONS

#: pytest-memray's options and their dests, in the order its ``--help`` lists them.
PYTEST_MEMRAY_OPTIONS = {
    "--memray": "memray",
    "--memray-bin-path": "memray_bin_path",
    "--memray-bin-prefix": "memray_bin_prefix",
    "--hide-memray-summary": "hide_memray_summary",
    "--most-allocations": "most_allocations",
    "--stacks": "stacks",
    "--native": "native",
    "--trace-python-allocators": "trace_python_allocators",
    "--fail-on-increase": "fail_on_increase",
}
#: pytest-memray's ini keys with the types its ``--help`` shows.
PYTEST_MEMRAY_INI_TYPES = {
    "memray": "bool",
    "hide_memray_summary": "bool",
    "stacks": "string",
    "native": "bool",
    "trace_python_allocators": "bool",
    "fail-on-increase": "bool",
    "verbosity_memray": "string",
    "most_allocations": "string",
}
#: Where this plugin widens a type so that a native TOML value works (pytest 9.2 and newer
#: take a union): the type pytest-memray shows comes first.
WIDENED_INI_TYPES = {
    "stacks": "string | int",
    "most_allocations": "string | int",
    "verbosity_memray": "string | int",
    "fail-on-increase": "bool | string",
}

#: A conftest as pytest-memray users write them: it reads every option of pytest-memray
#: in pytest_configure, and the header shows what it read (values, and their types).
READING_CONFTEST = """
from pathlib import Path

DESTS = ("memray", "memray_bin_path", "memray_bin_prefix", "hide_memray_summary", "most_allocations",
         "stacks", "native", "trace_python_allocators", "fail_on_increase")
INI_KEYS = ("memray", "hide_memray_summary", "stacks", "native", "trace_python_allocators",
            "fail-on-increase", "verbosity_memray", "most_allocations")
seen = []

def shown(config, value):
    if isinstance(value, Path):
        if value.is_absolute():
            return f"Path:{value.relative_to(config.invocation_params.dir)}"
        return f"relative Path:{value}"
    return f"{type(value).__name__}:{value!r}"

def pytest_configure(config):
    seen.append("MEMRAY-OPTIONS " + " ".join(f"{d}={shown(config, config.getoption(d))}" for d in DESTS))
    seen.append("MEMRAY-INI " + " ".join(f"{k}={shown(config, config.getini(k))}" for k in INI_KEYS))

def pytest_report_header(config):
    return seen
"""

_ALL_OPTIONS = [
    "--memray",
    "--memray-bin-path=dumps",
    "--memray-bin-prefix=nightly",
    "--hide-memray-summary",
    "--most-allocations=3",
    "--stacks=4",
    "--native",
    "--trace-python-allocators",
    "--fail-on-increase",
]
#: What READING_CONFTEST printed under pytest-memray 1.11.0 for each command line (run
#: with ``-p no:cacheprovider`` in /work/pm-venv, pytest 9.2.0, 2026-12-02, copied here).
_PYTEST_MEMRAY_INI_LINE = (
    "MEMRAY-INI memray=bool:False hide_memray_summary=bool:False stacks=str:'' native=bool:False"
    " trace_python_allocators=bool:False fail-on-increase=bool:False verbosity_memray=str:'auto'"
    " most_allocations=str:''"
)
PYTEST_MEMRAY_READS = {
    "no options": (
        [],
        "MEMRAY-OPTIONS memray=bool:False memray_bin_path=NoneType:None memray_bin_prefix=NoneType:None"
        " hide_memray_summary=bool:False most_allocations=int:5 stacks=int:1 native=bool:False"
        " trace_python_allocators=bool:False fail_on_increase=bool:False",
    ),
    "--memray": (
        ["--memray"],
        "MEMRAY-OPTIONS memray=bool:True memray_bin_path=NoneType:None memray_bin_prefix=NoneType:None"
        " hide_memray_summary=bool:False most_allocations=int:5 stacks=int:1 native=bool:False"
        " trace_python_allocators=bool:False fail_on_increase=bool:False",
    ),
    "every option": (
        _ALL_OPTIONS,
        "MEMRAY-OPTIONS memray=bool:True memray_bin_path=Path:dumps memray_bin_prefix=str:'nightly'"
        " hide_memray_summary=bool:True most_allocations=int:3 stacks=int:4 native=bool:True"
        " trace_python_allocators=bool:True fail_on_increase=bool:True",
    ),
    "values as separate words": (
        ["--memray-bin-path", "dumps", "--most-allocations", "0", "--stacks", "2"],
        "MEMRAY-OPTIONS memray=bool:False memray_bin_path=Path:dumps memray_bin_prefix=NoneType:None"
        " hide_memray_summary=bool:False most_allocations=int:0 stacks=int:2 native=bool:False"
        " trace_python_allocators=bool:False fail_on_increase=bool:False",
    ),
}


def _pytest_memray_ini() -> Dict[str, str]:
    """What ``getini`` gives for pytest-memray's keys; before pytest 9.2, which cannot register
    ``fail-on-increase`` as bool-or-tolerance, that key is text, unset as ``''``
    (docs/migrating.rst says so)."""
    expected = _expected(_PYTEST_MEMRAY_INI_LINE)
    if not INI_UNIONS:
        expected["fail-on-increase"] = "str:''"
    return expected


def _problem_line(nodeid: str, message: str) -> str:
    """A MEMORY PROBLEMS line of the short summary: pytest 9 adds the failure's first words,
    pytest 8 gives the test alone."""
    return (
        f"MEMORY PROBLEMS {nodeid} - {message}"
        if pytest.version_tuple >= (9,)
        else f"MEMORY PROBLEMS {nodeid}"
    )


def _read(result: pytest.RunResult, what: str) -> Dict[str, str]:
    """One line READING_CONFTEST printed (``MEMRAY-OPTIONS`` or ``MEMRAY-INI``), as name -> value."""
    (line,) = [line for line in result.outlines if line.startswith(what + " ")]
    return dict(part.split("=", 1) for part in line[len(what) + 1 :].split(" "))


def _expected(line: str) -> Dict[str, str]:
    _, _, rest = line.partition(" ")
    return dict(part.split("=", 1) for part in rest.split(" "))


# -- the help surface -------------------------------------------------------------------


@pytest.fixture
def help_lines(run_inprocess: Runner) -> List[str]:
    """What ``pytest --help`` prints, at pytest's default width."""
    result = run_inprocess("--help")
    assert result.ret == 0
    return result.outlines


def _group(lines: List[str], heading: str) -> List[str]:
    start = lines.index(heading) + 1
    end = next(index for index in range(start, len(lines)) if not lines[index].strip())
    return lines[start:end]


def test_help_groups_the_options_under_pytest_memrays_heading(help_lines: List[str]) -> None:
    """The group is headed ``memray:`` and holds every option of pytest-memray."""
    group = _group(help_lines, "memray:")
    flags = {match.group(1) for line in group if (match := re.match(r"^  (--[a-z-]+)", line))}
    assert set(PYTEST_MEMRAY_OPTIONS) <= flags


def test_help_of_memray_starts_with_pytest_memrays_words(help_lines: List[str]) -> None:
    """``--memray`` is described with pytest-memray's "Activate memray tracking", then ours."""
    group = _group(help_lines, "memray:")
    (line,) = [line for line in group if line.startswith("  --memray ")]
    assert line.split(None, 1)[1].startswith("Activate memray tracking")


def test_help_shows_pytest_memrays_ini_keys_with_its_types(help_lines: List[str]) -> None:
    """Each ini key of pytest-memray shows its type; where a TOML value needs more, the
    union starts with pytest-memray's type (pytest 9.2 and newer)."""
    shown = {}
    for line in help_lines:
        match = re.match(r"^  (\S+) \(([^)]*)\):", line)
        if match:
            shown[match.group(1)] = match.group(2)
    for key, kind in PYTEST_MEMRAY_INI_TYPES.items():
        if key in WIDENED_INI_TYPES:
            expected = WIDENED_INI_TYPES[key] if INI_UNIONS else "string"
            assert shown[key] == expected, key
            assert not INI_UNIONS or shown[key].startswith(kind), key
        else:
            assert shown[key] == kind, key


def test_every_pytest_memray_option_has_its_dest() -> None:
    """The code's own list gives each pytest-memray option pytest-memray's dest."""
    dests = {spec.flag: spec.dest for spec in OPTIONS if spec.flag is not None}
    assert {flag: dests[flag] for flag in PYTEST_MEMRAY_OPTIONS} == PYTEST_MEMRAY_OPTIONS


# -- what a conftest reads ----------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(PYTEST_MEMRAY_READS))
def test_a_conftest_reads_what_pytest_memray_gives(
    pytester: pytest.Pytester, run_inprocess: Runner, case: str
) -> None:
    """getoption and getini give a conftest's pytest_configure pytest-memray's values and types."""
    args, options_line = PYTEST_MEMRAY_READS[case]
    pytester.makeconftest(READING_CONFTEST)
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = run_inprocess(*args)
    result.assert_outcomes(passed=1)
    assert _read(result, "MEMRAY-OPTIONS") == _expected(options_line)
    assert _read(result, "MEMRAY-INI") == _pytest_memray_ini()


def test_memray_isolate_reads_as_memray(pytester: pytest.Pytester, run: Runner) -> None:
    """--memray-isolate implies --memray, and getoption("memray") says so."""
    pytester.makeconftest(READING_CONFTEST)
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = run("--memray-isolate")
    result.assert_outcomes(passed=1)
    assert _read(result, "MEMRAY-OPTIONS")["memray"] == "bool:True"
    off = run("--memray-isolate=off")
    assert _read(off, "MEMRAY-OPTIONS")["memray"] == "bool:False"


def test_ini_values_reach_getoption(pytester: pytest.Pytester, run_inprocess: Runner) -> None:
    """Unlike pytest-memray (whose ini keys do nothing), a value from the ini file is in
    effect and getoption gives it; getini gives pytest-memray's types."""
    pytester.makeconftest(READING_CONFTEST)
    pytester.makepyfile("def test_nothing():\n    pass\n")
    pytester.makeini(
        "[pytest]\nmemray = true\nstacks = 3\nmost_allocations = 2\nnative = yes\n"
        "trace_python_allocators = 1\nhide_memray_summary = false\nfail-on-increase = true\n"
        "memray_bin_path = kept\nmemray_bin_prefix = ini\n"
    )
    result = run_inprocess()
    result.assert_outcomes(passed=1)
    assert _read(result, "MEMRAY-OPTIONS") == {
        "memray": "bool:True",
        "memray_bin_path": "Path:kept",
        "memray_bin_prefix": "str:'ini'",
        "hide_memray_summary": "bool:False",
        "most_allocations": "int:2",
        "stacks": "int:3",
        "native": "bool:True",
        "trace_python_allocators": "bool:True",
        "fail_on_increase": "bool:True",
    }
    ini = _read(result, "MEMRAY-INI")
    assert ini["memray"] == "bool:True"
    assert ini["native"] == "bool:True"
    assert ini["stacks"] == "str:'3'"
    result.stdout.fnmatch_lines(["*= MEMRAY REPORT =*", "Created 1 binary dumps at */kept with prefix ini"])


def test_the_command_line_wins_over_the_ini_file_in_getoption(
    pytester: pytest.Pytester, run_inprocess: Runner
) -> None:
    """A value given on the command line equal to the default still wins over the ini file's."""
    pytester.makeconftest(READING_CONFTEST)
    pytester.makepyfile("def test_nothing():\n    pass\n")
    pytester.makeini("[pytest]\nmost_allocations = 2\nstacks = 3\n")
    result = run_inprocess("--most-allocations=5", "-o", "stacks=1")
    assert _read(result, "MEMRAY-OPTIONS")["most_allocations"] == "int:5"
    assert _read(result, "MEMRAY-OPTIONS")["stacks"] == "int:1"


@pytest.mark.parametrize(
    ("conftest", "args", "blocks"),
    [
        ("config.option.memray = True\n    config.option.most_allocations = 1", [], 1),
        ("config.option.memray = False", ["--memray"], 0),
    ],
)
def test_a_conftest_may_set_the_options(
    pytester: pytest.Pytester, run_inprocess: Runner, conftest: str, args: List[str], blocks: int
) -> None:
    """pytest-memray reads config.option as the tests run, so a conftest's pytest_configure
    may switch tracking on or off and choose the report's length (pytest-memray 1.11.0 shows
    the same number of report blocks for these two conftests)."""
    pytester.makeconftest(f"def pytest_configure(config):\n    {conftest}\n")
    pytester.makepyfile(
        "def test_a():\n    data = bytearray(1024 * 1024)\n\n"
        "def test_b():\n    data = bytearray(2 * 1024 * 1024)\n"
    )
    result = run_inprocess(*args)
    result.assert_outcomes(passed=2)
    assert sum(line.startswith("Allocation results for ") for line in result.outlines) == blocks
    assert ("MEMRAY REPORT" in result.stdout.str()) == bool(blocks)


@pytest.mark.parametrize(
    ("value", "on"),
    [("0", False), ("false", False), ("no", False), ("1", True), ("true", True), ("0%", True), ("0 B", True)],
)
def test_fail_on_increase_ini_spellings(
    pytester: pytest.Pytester, run_inprocess: Runner, value: str, on: bool
) -> None:
    """fail-on-increase = 0 / false is off and 1 / true on, as in pytest-memray; a zero
    tolerance is spelled 0% or 0 B."""
    pytester.makeconftest(READING_CONFTEST)
    pytester.makepyfile("def test_nothing():\n    pass\n")
    pytester.makeini(f"[pytest]\nfail-on-increase = {value}\n")
    result = run_inprocess()
    result.assert_outcomes(passed=1)
    assert _read(result, "MEMRAY-OPTIONS")["fail_on_increase"] == f"bool:{on}"


@pytest.mark.parametrize(
    ("text", "tolerance"),
    [
        ("", "none"),
        ("0", None),
        ("false", None),
        ("off", None),
        ("1", "none"),
        ("yes", "none"),
        ("0%", "0%"),
        ("0 B", "0 B"),
        ("10%", "10%"),
    ],
)
def test_fail_on_increase_parses_bools_and_tolerances(text: str, tolerance: object) -> None:
    """The one parser of --fail-on-increase and its ini keys: a bool as pytest-memray's, or a tolerance."""
    (spec,) = [spec for spec in OPTIONS if spec.name == "fail_on_increase"]
    parsed = spec.parse(text)
    assert (None if parsed is None else parsed.text) == tolerance


@pytest.mark.skipif(
    pytest.version_tuple < (9, 2),
    reason=f"pytest {pytest.__version__}: native [tool.pytest] tables need pytest 9.0, numbers for"
    " stacks and most_allocations a union ini type (pytest 9.2)",
)
def test_a_native_toml_table_works(pytester: pytest.Pytester, run: Runner) -> None:
    """pytest 9's [tool.pytest] table gives TOML's own types; each key takes its natural one."""
    pytester.makeconftest(
        READING_CONFTEST
        + """
def pytest_report_collectionfinish(config):
    return "OURS " + " ".join(
        f"{dest}={config.getoption(dest)!r}"
        for dest in ("memray_isolate", "memray_repeat_leaks", "memray_timeout", "memray_follow_fork")
    )
"""
    )
    pytester.makepyfile("def test_nothing():\n    pass\n")
    # configuration.rst shows this file; the test adds keys of every other type.
    shown = (Path(__file__).resolve().parent.parent / "docs" / "examples" / "native-table.toml").read_text()
    pytester.makepyprojecttoml(
        shown
        + "native = true\ntrace_python_allocators = false\nhide_memray_summary = false\n"
        + "verbosity_memray = 1\nmemray_repeat_leaks = true\nmemray_follow_fork = false\n"
    )
    result = run()
    result.assert_outcomes(passed=1)
    options = _read(result, "MEMRAY-OPTIONS")
    assert options["memray"] == "bool:True"
    assert options["stacks"] == "int:3"
    assert options["most_allocations"] == "int:10"
    assert options["native"] == "bool:True"
    assert options["fail_on_increase"] == "bool:True"
    ini = _read(result, "MEMRAY-INI")
    assert ini["stacks"] == "int:3"
    assert ini["verbosity_memray"] == "int:1"
    assert ini["fail-on-increase"] == "str:'10%'"
    result.stdout.fnmatch_lines(
        [
            "OURS memray_isolate='fork' memray_repeat_leaks=(1, 3) memray_timeout=30.0 memray_follow_fork=False",
            "Isolation: fork (each tracked test ran in a child process of its own)",
        ]
    )


@pytest.mark.skipif(
    pytest.version_tuple < (9,), reason=f"pytest {pytest.__version__}: no [tool.pytest] table"
)
def test_a_toml_value_of_the_wrong_type_names_key_and_file(
    pytester: pytest.Pytester, run_inprocess: Runner
) -> None:
    """pytest refuses ``memray = "maybe"`` in a native table; the usage error names the key and file."""
    pytester.makepyfile("def test_nothing():\n    pass\n")
    pytester.makepyprojecttoml('[tool.pytest]\nmemray = "maybe"\n')
    result = run_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: memray (from the ini file *pyproject.toml): *'maybe'*; expected true or false"]
    )


# -- the markers' and the report's messages ---------------------------------------------

_MARKED = """
import os
import pytest

_kept = []

def allocate(size):
    return bytearray(size)

@pytest.mark.limit_memory("1 MB")
def test_over_the_limit():
    data = allocate(3 * 1024 * 1024)
    assert data is not None

@pytest.mark.limit_leaks("1 KB")
def test_leaks():
    _kept.append(allocate(64 * 1024))

@pytest.mark.limit_memory("10 MB")
@pytest.mark.limit_leaks("1 MB")
def test_two_kinds():
    pass

@pytest.mark.limit_memory("100 MB")
def test_grows():
    data = allocate(int(os.environ.get("MIB", "1")) * 1024 * 1024)
    assert data is not None
"""


def test_marker_failures_read_as_pytest_memrays(pytester: pytest.Pytester, run: Runner) -> None:
    """Failure messages, section names, the M status, the MEMRAY REPORT and the dump line
    are pytest-memray's, word for word (observed under pytest-memray 1.11.0 on this file)."""
    pytester.makepyfile(test_marked=_MARKED)
    result = run("--memray", "--memray-bin-path=dumps", "--memray-bin-prefix=p")
    result.stdout.fnmatch_lines(
        [
            "Test was limited to 1.0MiB but allocated 3.0MiB",
            "*- memray-max-memory -*",
            "List of allocations:",
            "    - 3.0MiB allocated here:",
            "        allocate:*test_marked.py:7",
            "        ...",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "Test was allowed to leak 1.0KiB per location but at least one location leaked more",
            "*- memray-leaked-memory -*",
            "List of leaked allocations:",
            "    - 64.0KiB allocated here:",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*= MEMRAY REPORT =*",
            "Allocation results for test_marked.py::test_over_the_limit at the high watermark",
            "",
            "\t 📦 Total memory allocated: 3.0MiB",
            "\t 📏 Total allocations: 1",
            "\t 📊 Histogram of allocation sizes: |█|",
            "\t 🥇 Biggest allocating functions:",
            "\t\t- allocate:*test_marked.py:7 -> 3.0MiB",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            f"Created 3 binary dumps at {pytester.path / 'dumps'} with prefix p",
            "*short test summary info*",
            _problem_line("test_marked.py::test_over_the_limit", "Test was limited to 1.0*"),
            _problem_line("test_marked.py::test_leaks", "Test was allowed to leak 1.0KiB*"),
        ]
    )


def test_two_kinds_of_limit_start_with_pytest_memrays_sentence(
    pytester: pytest.Pytester, run: Runner
) -> None:
    """The error names both markers and where each came from, after pytest-memray's sentence."""
    pytester.makepyfile(test_marked=_MARKED)
    result = run("--memray", "-k", "two_kinds", "-rE")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "Only one Memray marker can be applied to each test. test_marked.py::test_two_kinds:"
            " @pytest.mark.limit_memory('10 MB') (on the test) and @pytest.mark.limit_leaks('1 MB')"
            " (on the test) cannot be combined; a test takes one kind of memray limit",
            "ERROR test_marked.py::test_two_kinds - Failed: Only one Memray marker can be *",
        ]
    )


def test_fail_on_increase_message_is_pytest_memrays(
    pytester: pytest.Pytester, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a tolerance the failure is pytest-memray's line exactly; with one, it names it."""
    pytester.makepyfile(test_marked=_MARKED)
    flags = ["--memray", "-k", "grows"]
    monkeypatch.setenv("MIB", "1")
    run(*flags, keep_cache=True).assert_outcomes(passed=1)  # the cache is what it is compared with
    monkeypatch.setenv("MIB", "2")
    grown = run(*flags, "--fail-on-increase", keep_cache=True)
    grown.assert_outcomes(failed=1)
    grown.stdout.fnmatch_lines(
        [
            "Test previously used 1.0MiB but now uses 2.0MiB",
            "*- memray-max-memory -*",
            "Test uses more memory than previous run",
            _problem_line("test_marked.py::test_grows", "Test previously used 1.0MiB*"),
        ]
    )
    tolerated = run(*flags, "--fail-on-increase=10%", keep_cache=True)
    tolerated.stdout.fnmatch_lines(["Test previously used 1.0MiB but now uses 2.0MiB (tolerance 10%)"])
