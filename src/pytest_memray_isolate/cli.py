"""Command-line and ini registration, built from the single list of settings."""

from __future__ import annotations

import argparse
import os
from typing import Any, Optional, Sequence, Union

import pytest

from .settings import OPTIONS, default_isolation_mode, parse_isolation_mode

__all__ = ["OptionalModeAction", "register_options"]

# argparse collects values an action hands back here and returns them as unrecognized
# arguments; pytest then treats those as the files or directories to test.
_UNRECOGNIZED = "_unrecognized_args"


def _looks_like_a_path(value: str) -> bool:
    return os.path.exists(value) or "::" in value or value.endswith(".py") or os.sep in value


class OptionalModeAction(argparse.Action):
    """``--memray-isolate[=MODE]``: an optional value that never swallows a test path.

    argparse gives an optional value the next word, so ``--memray-isolate tests/``
    would read ``tests/`` as the mode. A word that is not a mode but names a path is
    handed back to pytest as a positional argument, and the default mode is used.
    """

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
            parse_isolation_mode(text)
        except ValueError:
            if _looks_like_a_path(text):
                setattr(namespace, self.dest, self.const)
                leftovers = list(getattr(namespace, _UNRECOGNIZED, []))
                setattr(namespace, _UNRECOGNIZED, [*leftovers, text])
                return
        setattr(namespace, self.dest, text)


def register_options(parser: pytest.Parser) -> None:
    """Add every setting's flag and ini key to pytest's parser."""
    group = parser.getgroup("memray", "memory tracking with memray (pytest-memray-isolate)")
    for spec in OPTIONS:
        if spec.name == "isolate":
            group.addoption(
                spec.flag,
                action=OptionalModeAction,
                nargs="?",
                const=default_isolation_mode(),
                default=None,
                dest=spec.dest,
                metavar=spec.metavar,
                help=spec.help,
            )
        elif spec.metavar is None:
            group.addoption(
                spec.flag, action="store_const", const=True, default=None, dest=spec.dest, help=spec.help
            )
        else:
            group.addoption(
                spec.flag, action="store", default=None, dest=spec.dest, metavar=spec.metavar, help=spec.help
            )
        parser.addini(spec.ini, help=spec.help, type="string", default="")
