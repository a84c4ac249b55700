"""The plugin's settings: every option is declared once here and resolved in one place.

Precedence is command line > ini file > default. Each bad value is reported as a
``pytest.UsageError`` naming the option, where the value came from, and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import pytest

__all__ = [
    "ISOLATION_MODES",
    "OPTIONS",
    "OptionSpec",
    "Settings",
    "default_isolation_mode",
    "parse_isolation_mode",
    "resolve_settings",
]

#: The isolation modes this version can run.
ISOLATION_MODES: Tuple[str, ...] = ("fork",)
#: Values that switch isolation off (useful to override an ini file from the command line).
_OFF_WORDS = ("off", "none", "no", "false", "0")
_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off", "")


def default_isolation_mode() -> str:
    """The mode ``--memray-isolate`` means without a value."""
    return "fork"


def parse_isolation_mode(text: str) -> Optional[str]:
    """Turn ``fork`` / ``off`` into a mode or ``None``; anything else is an error."""
    word = text.strip().lower()
    if word in ISOLATION_MODES:
        return word
    if word in _OFF_WORDS:
        return None
    raise ValueError(f"expected one of {', '.join(ISOLATION_MODES)} or off")


def _parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ValueError("expected true or false")


def _parse_count(text: str) -> int:
    try:
        number = int(text.strip())
    except ValueError:
        raise ValueError("expected a whole number, 0 or more") from None
    if number < 0:
        raise ValueError("expected a whole number, 0 or more")
    return number


@dataclass(frozen=True)
class OptionSpec:
    """One user-facing setting: its command-line flag, ini key, parser and default."""

    name: str
    flag: str
    ini: str
    help: str
    parse: Callable[[str], object]
    default: object
    metavar: Optional[str] = None  # None: a flag that takes no value

    @property
    def dest(self) -> str:
        return "memray_isolate_opt_" + self.name


OPTIONS: Tuple[OptionSpec, ...] = (
    OptionSpec(
        name="memray",
        flag="--memray",
        ini="memray",
        help="Track the memory of every test's call phase with memray.",
        parse=_parse_bool,
        default=False,
    ),
    OptionSpec(
        name="isolate",
        flag="--memray-isolate",
        ini="memray_isolate",
        help=(
            "Run each tracked test's call phase in its own child process "
            "(implies --memray). MODE: fork (default) or off."
        ),
        parse=parse_isolation_mode,
        default=None,
        metavar="MODE",
    ),
    OptionSpec(
        name="most_allocations",
        flag="--most-allocations",
        ini="most_allocations",
        help="Show the N tests that allocate most memory in the report (0 for all; default 5).",
        parse=_parse_count,
        default=5,
        metavar="N",
    ),
    OptionSpec(
        name="hide_summary",
        flag="--hide-memray-summary",
        ini="hide_memray_summary",
        help="Do not print the MEMRAY REPORT at the end of the run.",
        parse=_parse_bool,
        default=False,
    ),
)


@dataclass(frozen=True)
class Settings:
    """What the user asked for, after resolving command line, ini file and defaults."""

    memray: bool
    isolate: Optional[str]
    most_allocations: int
    hide_summary: bool

    @property
    def tracking_all(self) -> bool:
        """Whether every test is tracked (not only those with a memray marker)."""
        return self.memray or self.isolate is not None


def _source_of_ini(config: pytest.Config) -> str:
    inipath = config.inipath
    return f"ini file {inipath}" if inipath is not None else "ini file"


def resolve_settings(config: pytest.Config) -> Settings:
    """Resolve every option once: command line, then ini file, then default."""
    values: dict[str, object] = {}
    for spec in OPTIONS:
        raw = config.getoption(spec.dest)
        if raw is not None:
            if spec.metavar is None:  # a flag given on the command line
                values[spec.name] = True
                continue
            text, source, key = str(raw), "command line", spec.flag
        else:
            ini_value = config.getini(spec.ini)
            if ini_value in ("", None):
                values[spec.name] = spec.default
                continue
            text, source, key = str(ini_value), _source_of_ini(config), spec.ini
        try:
            values[spec.name] = spec.parse(text)
        except ValueError as error:
            raise pytest.UsageError(f"{key} = {text!r} (from the {source}): {error}") from None
    return Settings(**values)  # type: ignore[arg-type]
