"""Command-line and ini registration, built from the single list of settings."""

from __future__ import annotations

import argparse
import os
from typing import Any, Optional, Sequence, Type, Union

import pytest

from ._options import OPTIONS, OptionSpec, ini_default, ini_type_argument
from ._settings import Settings, option_values

__all__ = [
    "GROUP",
    "adopt_changed_options",
    "optional_value_action",
    "publish_settings",
    "refuse_ambiguous_values",
    "register_options",
    "restore_path_order",
]

#: The options' group in ``pytest --help``: pytest-memray's, so its heading reads ``memray:``.
GROUP = "memray"

# argparse collects values an action hands back here and returns them as unrecognized
# arguments; pytest then treats those as the files or directories to test.
_UNRECOGNIZED = "_unrecognized_args"
#: Set on pytest's option namespace when an optional value was handed back as a path.
_HANDED_BACK = "_memray_isolate_handed_back_a_path"


def _looks_like_a_path(value: str) -> bool:
    return os.path.exists(value) or "::" in value or value.endswith(".py") or os.sep in value


class _RecordingAction(argparse.Action):
    """An action that also keeps aside the text the command line gave: the option's own
    value has a default (pytest-memray's), so it cannot tell a value given from none."""

    spec: OptionSpec

    def _store(self, namespace: argparse.Namespace, value: object, text: str) -> None:
        setattr(namespace, self.dest, value)
        setattr(namespace, self.spec.given_attribute, text)


def _flag_action(spec: OptionSpec) -> Type[argparse.Action]:
    """A flag without a value: true when given, as pytest-memray's ``store_true``."""

    class FlagAction(_RecordingAction):
        def __call__(
            self,
            parser: argparse.ArgumentParser,
            namespace: argparse.Namespace,
            values: Union[str, Sequence[Any], None],
            option_string: Optional[str] = None,
        ) -> None:
            self._store(namespace, True, "true")

    FlagAction.spec = spec
    return FlagAction


def _value_action(spec: OptionSpec) -> Type[argparse.Action]:
    """An option with a value, parsed (and checked) with the ini file's value, later."""

    class ValueAction(_RecordingAction):
        def __call__(
            self,
            parser: argparse.ArgumentParser,
            namespace: argparse.Namespace,
            values: Union[str, Sequence[Any], None],
            option_string: Optional[str] = None,
        ) -> None:
            self._store(namespace, values, str(values))

    ValueAction.spec = spec
    return ValueAction


def optional_value_action(spec: OptionSpec) -> Type[argparse.Action]:
    """An action for ``--flag[=VALUE]`` whose optional value never swallows a test path.

    argparse gives an optional value the next word, so ``--memray-isolate tests/`` would
    read ``tests/`` as the mode. A word that ``spec.parse`` refuses but that names a path is
    handed back to pytest as a positional argument, and the flag takes its bare value.
    """

    class OptionalValueAction(_RecordingAction):
        def __call__(
            self,
            parser: argparse.ArgumentParser,
            namespace: argparse.Namespace,
            values: Union[str, Sequence[Any], None],
            option_string: Optional[str] = None,
        ) -> None:
            if values is None:
                self._store(namespace, self.const, str(self.const))
                return
            text = str(values)
            try:
                spec.parse(text)
            except ValueError:
                if _looks_like_a_path(text):
                    self._store(namespace, self.const, str(self.const))
                    leftovers = list(getattr(namespace, _UNRECOGNIZED, []))
                    setattr(namespace, _UNRECOGNIZED, [*leftovers, text])
                    setattr(namespace, _HANDED_BACK, True)
                    return
            self._store(namespace, text, text)

    OptionalValueAction.spec = spec
    return OptionalValueAction


def restore_path_order(config: pytest.Config) -> None:
    """Put paths handed back by :func:`optional_value_action` where the command line had them.

    argparse appends words it hands back after the other paths, so ``--memray-isolate
    a.py b.py`` would collect ``b.py`` first; the command line's own order is restored.
    """
    if not getattr(config.option, _HANDED_BACK, False):
        return
    given = [str(word) for word in config.invocation_params.args]

    def position(argument: str) -> int:
        return given.index(argument) if argument in given else len(given)

    config.args[:] = sorted(config.args, key=position)


def _parses(spec: OptionSpec, word: str) -> bool:
    try:
        spec.parse(word)
    except ValueError:
        return False
    return True


def refuse_ambiguous_values(config: pytest.Config) -> None:
    """Refuse ``--memray-isolate spawn`` where ``spawn`` is also a file or directory.

    argparse reads the word after a flag with an optional value the same whether it is
    meant as the value or names a path to test; either guess surprises someone, so the
    user is asked to write the one they mean (``--flag=word``, or ``./word``).
    """
    flags = {spec.flag: spec for spec in OPTIONS if spec.bare is not None}
    given = [str(word) for word in config.invocation_params.args]
    for flag, word in zip(given, given[1:]):
        spec = flags.get(flag)
        if spec is None or not _parses(spec, word):
            continue
        if (config.invocation_params.dir / word).exists():
            raise pytest.UsageError(
                f"{flag} {word}: {word!r} is both a value of {flag} and a path here;"
                f" write {flag}={word} for the value, or .{os.sep}{word} for the path"
            )


def _add_flag(group: pytest.OptionGroup, spec: OptionSpec) -> None:
    assert spec.flag is not None
    # Until the settings are resolved, an option not given shows pytest-memray's default.
    default = spec.as_option(spec.default)
    if spec.bare is not None:
        action = optional_value_action(spec)
        group.addoption(
            spec.flag,
            action=action,
            nargs="?",
            const=spec.bare,
            default=default,
            dest=spec.dest,
            metavar=spec.metavar,
            help=spec.help,
        )
    elif spec.takes_value:
        group.addoption(
            spec.flag,
            action=_value_action(spec),
            default=default,
            dest=spec.dest,
            metavar=spec.metavar,
            help=spec.help,
        )
    else:
        group.addoption(
            spec.flag, action=_flag_action(spec), nargs=0, default=default, dest=spec.dest, help=spec.help
        )


def register_options(parser: pytest.Parser) -> None:
    """Add every setting's flag and ini keys to pytest's parser, under pytest-memray's group."""
    group = parser.getgroup(GROUP)
    for spec in OPTIONS:
        if spec.flag is not None:
            _add_flag(group, spec)
        for key in (spec.ini, *spec.ini_aliases):
            parser.addini(
                key,
                help=spec.help.replace("%%", "%"),
                type=ini_type_argument(spec),
                default=ini_default(spec),
            )


def publish_settings(config: pytest.Config, settings: Settings) -> None:
    """Let ``config.getoption`` give the resolved value of each option, the ini file's included.

    A conftest that reads ``config.getoption("memray")`` sees what pytest-memray would
    show for the same command line, and also what the ini file or ``--memray-isolate``
    switched on.
    """
    for dest, value in option_values(settings).items():
        setattr(config.option, dest, value)


def _as_given(value: Any) -> Optional[str]:
    """An option's value as the command line would have given it."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(part) for part in value)
    return str(value)


def adopt_changed_options(config: pytest.Config, settings: Settings) -> bool:
    """Take each option a hook set on ``config.option`` as given on the command line.

    pytest-memray reads ``config.option`` while the tests run, so a conftest whose
    ``pytest_configure`` sets ``config.option.memray = True`` switches tracking on; such a
    hook runs after the settings were resolved, before the plugin's ``pytest_configure``,
    which calls this. Whether anything changed is returned: the settings are then resolved
    again.
    """
    published = option_values(settings)
    changed = False
    for spec in OPTIONS:
        if spec.flag is None:
            continue
        value = getattr(config.option, spec.dest, None)
        if value == published[spec.dest]:
            continue
        changed = True
        text = _as_given(value)
        if text is None:
            if hasattr(config.option, spec.given_attribute):
                delattr(config.option, spec.given_attribute)
        else:
            setattr(config.option, spec.given_attribute, text)
    return changed
