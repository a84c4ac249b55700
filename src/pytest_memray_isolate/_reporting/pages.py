"""What the HTML pages (--memray-html, the comparison of two runs) share: the jinja2
templates shipped in ``templates/``, links relative to the page, the charts' scales.

The pages are self-contained: the templates inline their styles, scripts and SVG, so a
page opens from disk with no network. The charts are plain SVG written by the templates
from the geometry computed here (see docs/reports.rst for why no charting library).
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, List, Optional, Tuple
from urllib.parse import quote

from .._sizes import format_size

if TYPE_CHECKING:
    from jinja2.environment import Environment

__all__ = ["Scale", "chart_pitch", "href", "render", "size_text"]

#: How tall a chart's plot area is, in SVG units (pixels at 100 %).
CHART_HEIGHT = 220.0


def _environment() -> Environment:
    # Here, not at the top: only a run that writes a page pays for importing jinja2. From
    # its modules: jinja2 3.0's package does not re-export the names for type checkers.
    from jinja2.environment import Environment
    from jinja2.loaders import PackageLoader

    # PackageLoader reads the templates through the package, so an installed wheel finds
    # them as an editable install does (they are package data, see pyproject.toml).
    return Environment(
        loader=PackageLoader("pytest_memray_isolate._reporting", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


_ENVIRONMENT: Optional[Environment] = None


def render(template: str, **context: Any) -> str:
    """The page ``template`` makes of ``context`` (the environment is made once, on first use)."""
    global _ENVIRONMENT
    if _ENVIRONMENT is None:
        _ENVIRONMENT = _environment()
    page: str = _ENVIRONMENT.get_template(template).render(**context)
    return page


#: What a link's path may hold unquoted (kept files' names are made of these, see
#: _capture_files.py): quoting each of thousands of links costs more than the check.
_URL_SAFE = re.compile(r"[A-Za-z0-9_.~/=+,@-]*")


@functools.lru_cache(maxsize=64)
def _relative_folder(folder: str, page_dir: str) -> str:
    """``folder`` relative to ``page_dir``, worked out once for all the files in it."""
    return Path(os.path.relpath(folder, page_dir)).as_posix()


def href(target: str, page_dir: Path) -> str:
    """A link from a page in ``page_dir`` to the file ``target``: relative, so that the page
    and its files can be moved or archived together."""
    folder, name = os.path.split(os.path.abspath(target))
    try:
        relative_folder = _relative_folder(folder, str(page_dir))
        relative = name if relative_folder == "." else f"{relative_folder}/{name}"
    except ValueError:  # another drive (Windows): no relative path exists
        return Path(target).absolute().as_uri()
    if _URL_SAFE.fullmatch(relative):
        return relative
    bracketed = relative.replace("[", "%5B").replace("]", "%5D")  # a parametrized test's name
    return (
        bracketed if _URL_SAFE.fullmatch(bracketed.replace("%5B", "").replace("%5D", "")) else quote(relative)
    )


def size_text(value: Optional[int]) -> str:
    """A size as the MEMRAY REPORT prints it, or a dash where there is none."""
    return "—" if value is None else format_size(value)


def chart_pitch(count: int) -> float:
    """The distance between two bars: wide for a few tests, 3 units at least for thousands
    (the chart then scrolls sideways)."""
    return max(3.0, min(48.0, 960.0 / max(count, 1)))


@dataclass(frozen=True)
class Scale:
    """Maps values (bytes) to bar heights, linear or logarithmic, within :data:`CHART_HEIGHT`."""

    top: float
    bottom: float

    @classmethod
    def over(cls, values: Iterable[Optional[int]]) -> Scale:
        """The scale that fits ``values`` (``None`` and zero are left out of the log's bottom)."""
        positive = [value for value in values if value is not None and value > 0]
        if not positive:
            return cls(top=1.0, bottom=0.5)
        top = float(max(positive))
        return cls(top=top, bottom=min(float(min(positive)) / 2, top / 2))

    def linear(self, value: Optional[float]) -> float:
        if value is None or value <= 0:
            return 0.0
        return min(value, self.top) / self.top * CHART_HEIGHT

    def log(self, value: Optional[float]) -> float:
        if value is None or value <= self.bottom:
            return 0.0
        low, high = math.log(self.bottom), math.log(self.top)
        return (math.log(min(value, self.top)) - low) / (high - low) * CHART_HEIGHT

    def linear_ticks(self) -> List[Tuple[float, str]]:
        """Four lines up the linear scale: (height, label)."""
        return [(self.linear(self.top * part / 4), format_size(self.top * part / 4)) for part in (1, 2, 3, 4)]

    def log_ticks(self) -> List[Tuple[float, str]]:
        """Powers of two within the log scale, at most six of them: (height, label)."""
        first = math.ceil(math.log2(self.bottom))
        last = math.floor(math.log2(self.top))
        for step in (1, 2, 5, 10, 20):
            exponents = [power for power in range(first, last + 1) if power % step == 0]
            if len(exponents) <= 6:
                break
        return [(self.log(2.0**power), format_size(2.0**power)) for power in exponents]
