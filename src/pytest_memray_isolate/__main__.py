"""``python -m pytest_memray_isolate compare BASE.json NEW.json``: two runs' reports compared.

Exit status: 0, or 1 when ``--threshold`` is given and a test grew beyond it (for CI), or
2 for a usage error or a file that cannot be read as a report (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from ._reporting.compare import (
    METRICS,
    ReportError,
    compare,
    load_report,
    page_text,
    parse_threshold,
    terminal_lines,
)
from ._reporting.json_report import write_text_atomically

__all__ = ["main"]


def _count(text: str) -> int:
    """``--top``: a whole number, 1 or more."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number, 1 or more, not {text!r}")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_memray_isolate",
        description="Tools for the reports pytest-memray-isolate writes.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command = commands.add_parser(
        "compare",
        help="compare two --memray-json reports",
        description=(
            "Compare two runs' --memray-json reports: the tests whose figure changed most, "
            "new and removed tests, and the total."
        ),
    )
    command.add_argument("base", type=Path, metavar="BASE.json", help="the earlier run's report")
    command.add_argument("new", type=Path, metavar="NEW.json", help="the later run's report")
    command.add_argument(
        "--metric", choices=sorted(METRICS), default="peak", help="the figure to compare (default: peak)"
    )
    command.add_argument(
        "--threshold",
        metavar="LIMIT",
        help="exit with status 1 when a test grew by more than LIMIT: a percentage (10%%), a size (1 MB), "
        "or for --metric allocations a number",
    )
    command.add_argument(
        "--top", type=_count, default=10, metavar="N", help="list the N biggest changes (default 10)"
    )
    command.add_argument(
        "--html", type=Path, metavar="OUT", help="also write the comparison as a page to OUT"
    )
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line ``argv`` (``sys.argv[1:]`` by default); return the exit status."""
    parser = _parser()
    arguments = parser.parse_args(argv)
    metric = METRICS[arguments.metric]
    threshold = None
    if arguments.threshold is not None:
        try:
            threshold = parse_threshold(arguments.threshold, metric)
        except ValueError as error:
            parser.error(f"--threshold {arguments.threshold!r}: {error}")
    try:
        base, new = load_report(arguments.base), load_report(arguments.new)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    comparison = compare(base, new, metric)
    names = (arguments.base.name, arguments.new.name)
    if names[0] == names[1]:
        names = (str(arguments.base), str(arguments.new))
    for line in terminal_lines(comparison, top=arguments.top, threshold=threshold, names=names):
        print(line)
    if arguments.html is not None:
        try:
            write_text_atomically(arguments.html, page_text(comparison, names=names, threshold=threshold))
        except OSError as error:
            print(f"error: could not write {arguments.html}: {error}", file=sys.stderr)
            return 2
        print(f"Comparison page: {arguments.html}")
    return 1 if threshold is not None and comparison.grown_beyond(threshold) else 0


if __name__ == "__main__":
    sys.exit(main())
