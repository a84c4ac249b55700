"""``pytest --help`` and ``pytest --markers`` show every setting and marker as the code defines them.

The expectations come from the code's single lists (``settings.OPTIONS``,
``markers.MARKER_SIGNATURES``), so a new option or marker is checked without editing
this file, and a help text that pytest does not show fails here.
"""

from __future__ import annotations

import inspect
import re
from typing import Dict, List

import pytest

from conftest import Runner
from pytest_memray_isolate._options import OPTIONS, OptionSpec, ini_types
from pytest_memray_isolate._plan import MARKER_SIGNATURES

#: The heading of the plugin's group in ``pytest --help``.
GROUP = "memray:"
#: The start of the heading of pytest's ini section in ``pytest --help`` (pytest 8 goes on
#: "ini-options in the first ...", pytest 9 "configuration options in the first ...").
INI_SECTION = "[pytest] "
#: The markers the documentation describes.
DOCUMENTED_MARKERS = [
    "limit_memory",
    "limit_leaks",
    "limit_leaked_objects",
    "limit_allocations",
    "limit_rss",
    "memray_isolate",
]


#: The start of an entry: an option (``--flag=VALUE``) or an ini key with its type
#: (``memray_json (string):``), then its help, if it fits on the line.
_ENTRY = re.compile(r"^  (\S+(?: \([^)]*\):)?)\s*(.*)$")


def _entries(lines: List[str], heading: str) -> Dict[str, str]:
    """The entries of one ``--help`` section, each unwrapped: name -> help text.

    The section ends at the first blank line after its entries. An entry starts on a line
    indented by two spaces; its help follows on that line or on the next ones, indented
    further. Lines are broken at spaces and after the hyphens of hyphenated words;
    joining undoes both.
    """
    start = next(index for index, line in enumerate(lines) if line.startswith(heading)) + 1
    entries: Dict[str, List[str]] = {}
    for line in lines[start:]:
        if not line.strip():
            if entries:
                break
            continue
        entry = _ENTRY.match(line)
        if entry:
            name, text = entry.groups()
            entries[name] = [text] if text else []
        else:
            entries[list(entries)[-1]].append(line.strip())
    return {name: re.sub(r"(?<=[a-z]-) (?=[a-z])", "", " ".join(parts)) for name, parts in entries.items()}


def _shown_flag(spec: OptionSpec) -> str:
    """How argparse shows an option: ``--flag``, ``--flag=VALUE`` or ``--flag=[VALUE]``."""
    assert spec.flag is not None
    if spec.bare is not None:
        return f"{spec.flag}=[{spec.metavar}]"
    return f"{spec.flag}={spec.metavar}" if spec.takes_value else spec.flag


def _help_text(spec: OptionSpec) -> str:
    return " ".join(spec.help.replace("%%", "%").split())


@pytest.fixture
def help_output(run_inprocess: Runner) -> List[str]:
    """What ``pytest --help`` prints, at pytest's default width of 80 columns."""
    result = run_inprocess("--help")
    assert result.ret == 0
    return result.outlines


def test_help_shows_every_option_with_its_help(help_output: List[str]) -> None:
    """Each setting with a command-line flag is in the plugin's group, with its help text."""
    shown = _entries(help_output, GROUP)
    expected = {_shown_flag(spec): _help_text(spec) for spec in OPTIONS if spec.flag is not None}
    assert shown == expected


def test_help_shows_every_ini_key_with_its_help(help_output: List[str]) -> None:
    """Each ini key, aliases included, is in pytest's ini section with its type and the same help text."""
    shown = _entries(help_output, INI_SECTION)
    expected = {
        f"{key} ({' | '.join(ini_types(spec))}):": _help_text(spec)
        for spec in OPTIONS
        for key in (spec.ini, *spec.ini_aliases)
    }
    assert {name: text for name, text in shown.items() if name in expected} == expected


def _unqualified(text: str) -> str:
    """``Optional[pytest_memray_isolate.LeaksFilterFunction]`` as users write it."""
    return re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", text)


def test_markers_shows_each_marker_with_its_signature_and_purpose(run_inprocess: Runner) -> None:
    """``pytest --markers`` lists every memray marker as its function in markers.py defines it."""
    assert list(MARKER_SIGNATURES) == DOCUMENTED_MARKERS
    result = run_inprocess("--markers")
    assert result.ret == 0
    for name, function in MARKER_SIGNATURES.items():
        signature = inspect.signature(function).replace(return_annotation=inspect.Signature.empty)
        purpose = inspect.getdoc(function)
        assert purpose
        prefix = f"@pytest.mark.{name}("
        shown = [line for line in result.outlines if line.startswith(prefix)]
        assert len(shown) == 1, f"{name}: {shown}"
        head, separator, text = shown[0].partition("): ")
        assert separator, shown[0]
        assert text == purpose
        assert _unqualified(f"{head})") == _unqualified(f"@pytest.mark.{name}{signature}")
