"""Every option of the plugin, declared once: flag, ini keys, help, parser and default.

The table (:data:`OPTIONS`) drives the command line (_cli.py), the ini keys, ``--help``,
the settings' defaults and their resolution (_settings.py), and the docs' settings table.
Each parser takes the text a user gave and raises ``ValueError`` saying what was expected.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import pytest

from ._sizes import SIZE_HINT, parse_size

__all__ = [
    "CAPTURE_FORMATS",
    "DEFAULT_REPETITION",
    "INI_UNIONS",
    "ISOLATION_MODES",
    "OPTIONS",
    "SECONDS_HINT",
    "OptionSpec",
    "Repetition",
    "Tolerance",
    "default_isolation_mode",
    "ini_default",
    "ini_type_argument",
    "ini_types",
    "isolation_mode",
    "parse_isolation_mode",
    "parse_repetition",
    "parse_tolerance",
    "time_limit",
]

#: The isolation modes this version can run.
ISOLATION_MODES: Tuple[str, ...] = ("fork", "forkserver", "spawn")
CAPTURE_FORMATS: Tuple[str, ...] = ("aggregated", "all")
_OFF_WORDS = ("off", "none", "no", "false", "0")
# The words pytest reads as a bool ini value, so that a value means the same whichever
# of pytest or the plugin reads it.
_TRUE_WORDS = ("1", "true", "yes", "on", "y", "t")
_FALSE_WORDS = ("0", "false", "no", "off", "n", "f", "")
#: Whether this pytest's ``addini`` takes a union of types (pytest 9.2 and newer).
INI_UNIONS = pytest.version_tuple >= (9, 2)


def default_isolation_mode() -> str:
    """The mode ``--memray-isolate`` means without a value: fork, but spawn on macOS,
    where forking a process that has used the system's frameworks is not safe."""
    return "spawn" if sys.platform == "darwin" else "fork"


def isolation_mode(text: str) -> Optional[str]:
    """The mode ``text`` names, read alike from the option, the ini key and the marker:
    case and surrounding spaces do not matter. ``None`` if it names none."""
    word = text.strip().lower()
    return word if word in ISOLATION_MODES else None


def parse_isolation_mode(text: str) -> Optional[str]:
    """Turn ``fork`` / ``forkserver`` / ``spawn`` / ``off`` into a mode or ``None``; anything else is an error."""
    mode = isolation_mode(text)
    if mode is not None:
        return mode
    if text.strip().lower() in _OFF_WORDS:
        return None
    raise ValueError(f"expected one of {', '.join(ISOLATION_MODES)} or off")


@dataclass(frozen=True)
class Tolerance:
    """How much more memory than its last passing run a test may use (``--fail-on-increase``)."""

    text: str
    percent: float = 0.0
    bytes: int = 0

    def allowance(self, previous: int) -> int:
        """The most a test that used ``previous`` bytes last time may use now."""
        return previous + self.bytes + int(previous * self.percent / 100)


def parse_tolerance(text: str) -> Tolerance:
    """``""`` (no tolerance), ``"10%"`` or a size such as ``"64 KB"``; zero is ``0%`` or ``0 B``."""
    stripped = text.strip()
    if not stripped:
        return Tolerance(text="none")
    if stripped.endswith("%"):
        try:
            percent = float(stripped[:-1])
        except ValueError:
            percent = -1.0
        if percent < 0:
            raise ValueError(f"expected a percentage such as 10% or {SIZE_HINT}")
        return Tolerance(text=stripped, percent=percent)
    try:
        return Tolerance(text=stripped, bytes=parse_size(stripped))
    except ValueError:
        raise ValueError(f"expected a percentage such as 10% or {SIZE_HINT}") from None


def _parse_increase(text: str) -> Optional[Tolerance]:
    """``--fail-on-increase[=TOLERANCE]`` and its ini key: a tolerance, or a bool as pytest-memray's.

    pytest-memray's ini key is a bool, so ``0`` and ``false`` switch the check off and
    ``1`` and ``true`` switch it on without a tolerance; a tolerance of zero is ``0%`` or ``0 B``.
    """
    word = text.strip().lower()
    if not word or word in _TRUE_WORDS:
        return Tolerance(text="none")
    if word in _FALSE_WORDS:
        return None
    return parse_tolerance(text)


@dataclass(frozen=True)
class Repetition:
    """How often a repeated ``limit_leaks`` test is called: untracked first, then each call tracked alone."""

    warmups: int
    repeats: int


#: What ``--memray-repeat-leaks`` means without a value.
DEFAULT_REPETITION = Repetition(warmups=1, repeats=3)
_REPETITION_HINT = "expected WARMUPS,REPEATS such as 1,3 (warm-ups 0 or more, repetitions 1 or more), or off"


def parse_repetition(text: str) -> Optional[Repetition]:
    """``WARMUPS,REPEATS`` (``1,3``), ``on`` for the default, or ``off``."""
    word = text.strip().lower()
    if word in _OFF_WORDS:
        return None
    if word in ("true", "yes", "on"):
        return DEFAULT_REPETITION
    parts = word.split(",")
    try:
        warmups, repeats = (int(part.strip()) for part in parts)
    except ValueError:
        raise ValueError(_REPETITION_HINT) from None
    if warmups < 0 or repeats < 1:
        raise ValueError(_REPETITION_HINT)
    return Repetition(warmups, repeats)


def _parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ValueError("expected true or false")


def _whole_number_at_least(minimum: int) -> Callable[[str], int]:
    """A parser for a whole number of ``minimum`` or more."""

    def parse(text: str) -> int:
        try:
            number = int(text.strip())
        except ValueError:
            number = minimum - 1
        if number < minimum:
            raise ValueError(f"expected a whole number, {minimum} or more")
        return number

    return parse


_parse_count = _whole_number_at_least(0)
_parse_positive = _whole_number_at_least(1)


def _parse_size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError:
        raise ValueError(f"expected {SIZE_HINT}") from None


#: What a time limit may be, from the command line, the ini file or a marker.
SECONDS_HINT = "a number of seconds, 0 (no limit) or more"


def time_limit(seconds: float) -> Optional[float]:
    """The one rule for a child's time limit: a finite number of seconds, 0 for none.

    ``nan`` and ``inf`` are refused wherever they come from: neither is a deadline, and
    a limit that quietly meant "none" would hide a typo.
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(SECONDS_HINT)
    return seconds or None


def _parse_ceiling(text: str) -> Optional[int]:
    """``--memray-max-rss``: a size, or 0 (with or without a unit) for no ceiling, as
    ``--memray-timeout=0`` is no deadline: a ceiling of nothing would kill every child."""
    if text.strip() == "0":
        return None
    return _parse_size(text) or None


def _parse_seconds(text: str) -> Optional[float]:
    """``--memray-timeout`` / ``memray_timeout``: see :func:`time_limit`."""
    try:
        seconds = float(text.strip())
    except ValueError:
        seconds = -1.0
    try:
        return time_limit(seconds)
    except ValueError:
        raise ValueError(f"expected {SECONDS_HINT}") from None


def _parse_capture_format(text: str) -> str:
    word = text.strip().lower()
    if word not in CAPTURE_FORMATS:
        raise ValueError(f"expected one of {', '.join(CAPTURE_FORMATS)}")
    return word


def _parse_verbosity(text: str) -> Optional[int]:
    word = text.strip().lower()
    if word in ("", "auto"):
        return None
    try:
        return int(word)
    except ValueError:
        raise ValueError("expected a whole number (negative for less, positive for more) or auto") from None


def _parse_prefix(text: str) -> str:
    if not text or os.sep in text or "\0" in text:
        raise ValueError("expected a non-empty file name prefix without path separators")
    return text


def _parse_output_file(text: str) -> Path:
    """A file to write a report to: not a directory, in a directory that can be written.

    The report is written once the tests have run; a place it cannot go is better told
    before they run than after.
    """
    path = Path(text).expanduser().absolute()
    if path.is_dir():
        raise ValueError(f"{path} is a directory; expected a file name")
    _parse_directory(str(path.parent))
    return path


def _parse_directory(text: str) -> Path:
    """A directory to keep capture files in: created if missing, and writable."""
    folder = Path(text).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is not a directory")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot create the directory {folder}: {error.strerror or error}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"the directory {folder} is not writable")
    return folder


def _unchanged(value: Any) -> Any:
    return value


def _is_set(value: Any) -> bool:
    return value is not None


def _warmups_and_repeats(value: Optional[Repetition]) -> Optional[Tuple[int, int]]:
    return None if value is None else (value.warmups, value.repeats)


@dataclass(frozen=True)
class OptionSpec:
    """One user-facing setting: its command-line flag, ini keys, parser and default.

    ``metavar`` is ``None`` for a flag without a value; ``bare`` is the value a flag that
    takes an optional value means when given alone. ``ini_types`` are the types pytest
    checks the ini keys against, most fitting first (pytest-memray's where it has the
    key); ``as_option`` turns the resolved value into what ``config.getoption`` returns,
    as pytest-memray returns it for its options.
    """

    name: str
    flag: Optional[str]
    ini: str
    help: str
    parse: Callable[[str], Any]
    default: Any
    metavar: Optional[str] = None
    bare: Optional[str] = None
    ini_aliases: Tuple[str, ...] = ()
    ini_types: Tuple[str, ...] = ("string",)
    #: What ``getini`` returns for a key that is not set; ``None``: pytest's for the first type.
    ini_default: Any = None
    as_option: Callable[[Any], Any] = _unchanged

    @property
    def dest(self) -> str:
        """The option's name in ``config.getoption``: argparse's for the flag (pytest-memray's too)."""
        assert self.flag is not None
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def given_attribute(self) -> str:
        """Where the parser keeps the text the command line gave, if it gave one."""
        return "_memray_isolate_given_" + self.dest

    @property
    def takes_value(self) -> bool:
        return self.metavar is not None


_INI_TYPE_DEFAULTS: Dict[str, Any] = {"bool": False, "string": "", "int": 0, "float": 0.0}
_INI_PYTHON_TYPES: Dict[str, type] = {"bool": bool, "string": str, "int": int, "float": float}


def ini_types(spec: OptionSpec) -> Tuple[str, ...]:
    """The types this pytest can check ``spec``'s ini keys against: a union only from pytest
    9.2, which added them; before it, the string member, whose text the plugin parses."""
    if len(spec.ini_types) > 1 and not INI_UNIONS:
        return ("string",)
    return spec.ini_types


def ini_default(spec: OptionSpec) -> Any:
    """What ``getini`` returns for ``spec``'s key when the ini file does not set it."""
    types = ini_types(spec)
    if spec.ini_default is not None and isinstance(spec.ini_default, _INI_PYTHON_TYPES[types[0]]):
        return spec.ini_default
    return _INI_TYPE_DEFAULTS[types[0]]


def ini_type_argument(spec: OptionSpec) -> Any:
    """The ``type`` argument of ``parser.addini``: a tag, or a union of Python types."""
    types = ini_types(spec)
    if len(types) == 1:
        return types[0]
    return Union[tuple(_INI_PYTHON_TYPES[name] for name in types)]


OPTIONS: Tuple[OptionSpec, ...] = (
    OptionSpec(
        name="memray",
        flag="--memray",
        ini="memray",
        help="Activate memray tracking: measure the memory of every test's call phase.",
        parse=_parse_bool,
        default=False,
        ini_types=("bool",),
    ),
    OptionSpec(
        name="isolate",
        flag="--memray-isolate",
        ini="memray_isolate",
        help=(
            "Run each tracked test's call phase in its own child process "
            "(implies --memray). MODE: fork (the default; spawn on macOS), forkserver, spawn, or off."
        ),
        parse=parse_isolation_mode,
        default=None,
        metavar="MODE",
        bare=default_isolation_mode(),
    ),
    OptionSpec(
        name="bin_path",
        flag="--memray-bin-path",
        ini="memray_bin_path",
        help="Keep each test's memray capture file in DIR (created if missing); by default they are deleted.",
        parse=_parse_directory,
        default=None,
        metavar="DIR",
    ),
    OptionSpec(
        name="bin_prefix",
        flag="--memray-bin-prefix",
        ini="memray_bin_prefix",
        help="Start kept capture file names with PREFIX (default: a random hex string).",
        parse=_parse_prefix,
        default=None,
        metavar="PREFIX",
    ),
    OptionSpec(
        name="capture_format",
        flag="--memray-capture-format",
        ini="memray_capture_format",
        help=(
            "memray file format of the captures: aggregated (small and fast) or all (every "
            "allocation, needed by 'memray stats'). By default in-process tests are captured "
            "aggregated and isolated tests in full, which spares their children stopping memray; "
            "a format given here applies to every test."
        ),
        parse=_parse_capture_format,
        default="aggregated",
        metavar="FORMAT",
    ),
    OptionSpec(
        name="most_allocations",
        flag="--most-allocations",
        ini="most_allocations",
        help="Show the N tests that allocate most memory in the report (0 for all; default 5).",
        parse=_parse_count,
        default=5,
        metavar="N",
        ini_types=("string", "int"),
    ),
    OptionSpec(
        name="hide_summary",
        flag="--hide-memray-summary",
        ini="hide_memray_summary",
        help="Do not print the MEMRAY REPORT at the end of the run.",
        parse=_parse_bool,
        default=False,
        ini_types=("bool",),
    ),
    OptionSpec(
        name="stacks",
        flag="--stacks",
        ini="stacks",
        help="Show N frames of each allocation's stack in failure reports (default 1).",
        parse=_parse_positive,
        default=1,
        metavar="N",
        ini_types=("string", "int"),
    ),
    OptionSpec(
        name="native",
        flag="--native",
        ini="native",
        help="Record native (C/C++) frames too and show them in failure reports (slower).",
        parse=_parse_bool,
        default=False,
        ini_types=("bool",),
    ),
    OptionSpec(
        name="trace_python_allocators",
        flag="--trace-python-allocators",
        ini="trace_python_allocators",
        help="Record each allocation of Python's small-object allocator, not its arenas (slower).",
        parse=_parse_bool,
        default=False,
        ini_types=("bool",),
    ),
    OptionSpec(
        name="repeat_leaks",
        flag="--memray-repeat-leaks",
        ini="memray_repeat_leaks",
        help=(
            "Call every limit_leaks test WARMUPS times untracked, then REPEATS times each under a "
            "Tracker of its own, and fail it only for places whose leaks grow on every repetition "
            "(default 1,3; a marker's warmups= and repeats= win; off to switch it off)."
        ),
        parse=parse_repetition,
        default=None,
        metavar="WARMUPS,REPEATS",
        bare="1,3",
        ini_types=("string", "bool"),
        as_option=_warmups_and_repeats,
    ),
    OptionSpec(
        name="follow_fork",
        flag="--memray-follow-fork",
        ini="memray_follow_fork",
        help=(
            "Also track the processes a test forks (os.fork, multiprocessing's fork context); "
            "limit_memory applies to the sum of their peaks and the test's own."
        ),
        parse=_parse_bool,
        default=False,
        ini_types=("bool",),
    ),
    OptionSpec(
        name="limit_memory",
        flag="--memray-limit-memory",
        ini="memray_limit_memory",
        help="A limit_memory for every tracked test without a memray limit marker of its own, e.g. '64 MB'.",
        parse=_parse_size,
        default=None,
        metavar="SIZE",
    ),
    OptionSpec(
        name="limit_rss",
        flag="--memray-limit-rss",
        ini="memray_limit_rss",
        help=(
            "A limit_rss for every tracked test without a limit_rss marker of its own: fail a test "
            "whose peak resident memory grows by SIZE (e.g. '512 MB') or more during its call."
        ),
        parse=_parse_size,
        default=None,
        metavar="SIZE",
    ),
    OptionSpec(
        name="fail_on_increase",
        flag="--fail-on-increase",
        ini="fail_on_increase",
        help=(
            "Fail a test with a memory limit that uses more memory than its last passing run "
            "(kept in pytest's cache), beyond TOLERANCE (e.g. 10%% or 64 KB; none by default)."
        ),
        parse=_parse_increase,
        default=None,
        metavar="TOLERANCE",
        bare="",
        ini_aliases=("fail-on-increase",),
        ini_types=("bool", "string"),
        as_option=_is_set,
    ),
    OptionSpec(
        name="timeout",
        flag="--memray-timeout",
        ini="memray_timeout",
        help=(
            "Kill an isolated test's child after SECONDS and fail the test with its stack "
            "(0: no limit, the default). A timeout marker of pytest-timeout wins over it."
        ),
        parse=_parse_seconds,
        default=None,
        metavar="SECONDS",
        ini_types=("string", "float"),
    ),
    OptionSpec(
        name="max_rss",
        flag="--memray-max-rss",
        ini="memray_max_rss",
        help=(
            "Kill an isolated test's child whose resident memory grows by SIZE (e.g. '2 GB') beyond "
            "its size at the test's start, failing the test (0: no ceiling, the default)."
        ),
        parse=_parse_ceiling,
        default=None,
        metavar="SIZE",
    ),
    OptionSpec(
        name="json_path",
        flag="--memray-json",
        ini="memray_json",
        help="Write every tracked test's memory figures to PATH as JSON (schema: docs/reports.rst).",
        parse=_parse_output_file,
        default=None,
        metavar="PATH",
    ),
    OptionSpec(
        name="html_path",
        flag="--memray-html",
        ini="memray_html",
        help=(
            "Write a self-contained HTML page of every tracked test's memory figures to PATH: "
            "a chart of the peaks and a table to sort and filter (docs/reports.rst)."
        ),
        parse=_parse_output_file,
        default=None,
        metavar="PATH",
    ),
    OptionSpec(
        name="flamegraph_dir",
        flag="--memray-flamegraph",
        ini="memray_flamegraph",
        help="Write an HTML flame graph (memray's) to DIR for every test that fails a memory limit.",
        parse=_parse_directory,
        default=None,
        metavar="DIR",
    ),
    OptionSpec(
        name="flamegraph_all",
        flag="--memray-flamegraph-all",
        ini="memray_flamegraph_all",
        help="With --memray-flamegraph, write a flame graph for every tracked test, not only failures.",
        parse=_parse_bool,
        default=False,
        ini_types=("bool",),
    ),
    OptionSpec(
        name="verbosity",
        flag=None,
        ini="verbosity_memray",
        help=(
            "How much memory failure reports list: negative for the message only, 0 or 1 for the "
            "10 biggest allocations, 2 or more for all; auto (default) follows -q/-v."
        ),
        parse=_parse_verbosity,
        default=None,
        ini_types=("string", "int"),
        ini_default="auto",
    ),
)
