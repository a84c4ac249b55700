"""Memory sizes as people write them in markers ("24 MB") and as the reports print them."""

from __future__ import annotations

import re

__all__ = ["SIZE_HINT", "format_size", "parse_size"]

_MULTIPLIERS = {
    "B": 1,
    "KB": 1024,
    "MB": 1024**2,
    "GB": 1024**3,
    "TB": 1024**4,
    "PB": 1024**5,
}
# "KiB" is read as "KB": the reports print binary units with an "i" (format_size), and a
# size copied from them must mean what they meant.
_SIZE = re.compile(
    r"\s*\+?(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>(?:[KMGTP]I?)?B)\s*",
    re.IGNORECASE,
)
SIZE_HINT = (
    'a number and a unit, such as "24 MB" (units B, KB, MB, GB, TB, PB, or KiB to PiB as '
    "reports print them; 1 KB = 1 KiB = 1024 B)"
)


def parse_size(text: str) -> int:
    """Return the number of bytes that ``text`` names, e.g. ``"1.5 KB"`` -> 1536.

    The whole text must be a size: trailing words are an error rather than
    silently ignored, so a typo cannot turn into a different limit.
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a memory size; expected {SIZE_HINT}")
    number = float(match["number"])
    return int(number * _MULTIPLIERS[match["unit"].upper().replace("I", "")])


def format_size(num_bytes: float) -> str:
    """Format a byte count the way pytest-memray prints it: ``24.0MiB``, ``512.0B``."""
    value = float(num_bytes)
    for unit in ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi"):
        if abs(value) < 1024.0:
            return f"{value:3.1f}{unit}B"
        value /= 1024.0
    return f"{value:.1f}YiB"
