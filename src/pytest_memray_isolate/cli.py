"""Command-line and ini registration, built from the single list of settings."""

from __future__ import annotations

import argparse
import os
from typing import Any, Callable, Optional, Sequence, Type, Union

import pytest

from .settings import OPTIONS, OptionSpec

__all__ = ["optional_value_action", "refuse_ambiguous_values", "register_options", "restore_path_order"]

# argparse collects values an action hands back here and returns them as unrecognized
# arguments; pytest then treats those as the files or directories to test.
_UNRECOGNIZED = "_unrecognized_args"
#: Set on pytest's option namespace when an optional value was handed back as a path.
_HANDED_BACK = "_memray_isolate_handed_back_a_path"


def _looks_like_a_path(value: str) -> bool:
    return os.path.exists(value) or "::" in value or value.endswith(".py") or os.sep in value


def optional_value_action(parse: Callable[[str], object]) -> Type[argparse.Action]:
    """An action for ``--flag[=VALUE]`` whose optional value never swallows a test path.

    argparse gives an optional value the next word, so ``--memray-isolate tests/`` would
    read ``tests/`` as the mode. A word that ``parse`` refuses but that names a path is
    handed back to pytest as a positional argument, and the flag takes its bare value.
    """

    class OptionalValueAction(argparse.Action):
        def __call__(
            self,
            parser: argparse.ArgumentParser,
            namespace: argparse.Namespace,
            values: Union[str, Sequence[Any], None],
            option_string: Optional[str] = None,
        ) -> None:
            if values is None:
                setattr(namespace, self.dest, self.const)
                return
            text = str(values)
            try:
                parse(text)
            except ValueError:
                if _looks_like_a_path(text):
                    setattr(namespace, self.dest, self.const)
                    leftovers = list(getattr(namespace, _UNRECOGNIZED, []))
                    setattr(namespace, _UNRECOGNIZED, [*leftovers, text])
                    setattr(namespace, _HANDED_BACK, True)
                    return
            setattr(namespace, self.dest, text)

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
    if spec.bare is not None:
        group.addoption(
            spec.flag,
            action=optional_value_action(spec.parse),
            nargs="?",
            const=spec.bare,
            default=None,
            dest=spec.dest,
            metavar=spec.metavar,
            help=spec.help,
        )
    elif spec.takes_value:
        group.addoption(
            spec.flag, action="store", default=None, dest=spec.dest, metavar=spec.metavar, help=spec.help
        )
    else:
        group.addoption(
            spec.flag, action="store_const", const=True, default=None, dest=spec.dest, help=spec.help
        )


def register_options(parser: pytest.Parser) -> None:
    """Add every setting's flag and ini keys to pytest's parser."""
    group = parser.getgroup("memray", "memory tracking with memray (pytest-memray-isolate)")
    for spec in OPTIONS:
        if spec.flag is not None:
            _add_flag(group, spec)
        for key in (spec.ini, *spec.ini_aliases):
            parser.addini(key, help=spec.help.replace("%%", "%"), type="string", default="")
