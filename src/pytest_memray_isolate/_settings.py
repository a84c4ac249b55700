"""The run's settings, resolved in one place: command line > ini file > default.

Each bad value is reported as a ``pytest.UsageError`` naming the option, where the value
came from, and what was expected. What each option is lives in _options.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Set, Tuple

import pytest

from ._options import OPTIONS, OptionSpec, Repetition, Tolerance, ini_default, ini_types

__all__ = [
    "IgnoredSettingWarning",
    "Settings",
    "default_settings",
    "option_values",
    "resolve_settings",
    "unused_without_cache",
    "unused_without_isolation",
]


@dataclass(frozen=True)
class Settings:
    """What the user asked for, after resolving command line, ini file and defaults.

    Each default is written once, in :data:`OPTIONS`; :func:`default_settings` gives them all.
    """

    memray: bool
    isolate: Optional[str]
    bin_path: Optional[Path]
    bin_prefix: Optional[str]
    capture_format: str
    most_allocations: int
    hide_summary: bool
    stacks: int
    native: bool
    trace_python_allocators: bool
    repeat_leaks: Optional[Repetition]
    follow_fork: bool
    limit_memory: Optional[int]
    limit_rss: Optional[int]
    fail_on_increase: Optional[Tolerance]
    timeout: Optional[float]
    max_rss: Optional[int]
    json_path: Optional[Path]
    html_path: Optional[Path]
    flamegraph_dir: Optional[Path]
    flamegraph_all: bool
    verbosity: Optional[int]
    #: Where each setting's value came from, for messages: "--flag", "-o key" or "key in the ini file FILE".
    sources: Tuple[Tuple[str, str], ...] = ()

    @property
    def tracking_all(self) -> bool:
        """Whether every test is tracked (not only those with a memray marker)."""
        return self.memray or self.isolate is not None

    def source_of(self, name: str) -> str:
        """Where the value of setting ``name`` came from (``"default"`` if nowhere)."""
        return dict(self.sources).get(name, "default")


def default_settings() -> Settings:
    """The settings of a run that sets nothing: every option's default."""
    return Settings(**{spec.name: spec.default for spec in OPTIONS})


def _ini_text(value: Any) -> str:
    """An ini value as text for the option's parser: TOML gives bools and numbers too."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _is_unset(value: Any, default: Any) -> bool:
    """Whether ``getini`` returned the value of a key the ini file does not set.

    A key set to its default (``memray = false``) means the same as no key.
    """
    return value is None or value == "" or (type(value) is type(default) and value == default)


def _raw_ini(
    config: pytest.Config, spec: OptionSpec, ini_file: str, overridden: Set[str]
) -> Tuple[Optional[str], str]:
    """The text of the first of ``spec``'s ini keys that is set, and that key.

    pytest checks each value against the key's type first; what it refuses is a usage
    error naming the key and where it was set.
    """
    default = ini_default(spec)
    for key in (spec.ini, *spec.ini_aliases):
        try:
            value = config.getini(key)
        except (pytest.UsageError, TypeError, ValueError) as error:
            # pytest 9 starts its message with the ini file's path, which ``where`` names.
            reason = str(error).replace(f"{config.inipath}: ", "")
            hint = "; expected true or false" if ini_types(spec) == ("bool",) else ""
            raise pytest.UsageError(
                f"{key} (from {_ini_origin(key, ini_file, overridden)}): {reason}{hint}"
            ) from None
        if not _is_unset(value, default):
            return _ini_text(value), key
    return None, spec.ini


def _ini_origin(key: str, ini_file: str, overridden: Set[str]) -> str:
    return "-o on the command line" if key in overridden else ini_file


def _overridden_keys(config: pytest.Config) -> Set[str]:
    """The ini keys given with ``-o KEY=VALUE``: their values come from the command line."""
    overrides = config.getoption("override_ini", None) or []
    return {str(override).partition("=")[0].strip() for override in overrides}


def resolve_settings(config: pytest.Config) -> Settings:
    """Resolve every option once: command line, then ini file (or ``-o``), then default.

    The command line's text is the one the parser kept aside (see ``given_attribute``):
    the option's own value is what ``config.getoption`` shows, which has a default.
    """
    values: Dict[str, Any] = {}
    sources = []
    ini_file = f"the ini file {config.inipath}" if config.inipath is not None else "the ini file"
    overridden = _overridden_keys(config)
    for spec in OPTIONS:
        raw = getattr(config.option, spec.given_attribute, None) if spec.flag is not None else None
        if raw is not None and spec.flag is not None:
            if not spec.takes_value:  # a flag: "true" from the command line, or a hook's bool
                values[spec.name] = spec.parse(str(raw))
                sources.append((spec.name, spec.flag))
                continue
            text, key, where, source = str(raw), spec.flag, "the command line", spec.flag
        else:
            ini_text, key = _raw_ini(config, spec, ini_file, overridden)
            if ini_text is None:
                values[spec.name] = spec.default
                continue
            where = _ini_origin(key, ini_file, overridden)
            text = ini_text
            source = f"-o {key}" if key in overridden else f"{key} in {ini_file}"
        try:
            values[spec.name] = spec.parse(text)
        except ValueError as error:
            raise pytest.UsageError(f"{key} = {text!r} (from {where}): {error}") from None
        sources.append((spec.name, source))
    return Settings(**values, sources=tuple(sources))


def option_values(settings: Settings) -> Dict[str, Any]:
    """What ``config.getoption`` returns for each option once the settings are resolved.

    pytest-memray's options give what pytest-memray gives for the same command line, and
    take the ini file into account as well; ``memray`` is true whenever every test is
    tracked, ``--memray-isolate`` included.
    """
    values = {
        spec.dest: spec.as_option(getattr(settings, spec.name)) for spec in OPTIONS if spec.flag is not None
    }
    values["memray"] = settings.tracking_all
    return values


class IgnoredSettingWarning(pytest.PytestWarning):
    """A setting the user gave that cannot take effect in this run."""


def unused_without_isolation(settings: Settings) -> Optional[str]:
    """Why ``--memray-timeout`` and ``--memray-max-rss`` do nothing when no test is isolated."""
    given = [settings.source_of(name) for name in ("timeout", "max_rss") if getattr(settings, name)]
    if not given:
        return None
    return (
        f"{' and '.join(given)} {'have' if len(given) > 1 else 'has'} no effect: they apply to"
        " isolated children only, and no test in this run is isolated"
        " (--memray-isolate, or the memray_isolate marker)."
    )


def unused_without_cache(settings: Settings) -> Optional[str]:
    """Why ``--fail-on-increase`` does nothing without pytest's cache."""
    if settings.fail_on_increase is None:
        return None
    return (
        f"{settings.source_of('fail_on_increase')} has no effect: pytest's cache is disabled"
        " (-p no:cacheprovider), so there is no earlier run to compare with."
    )
