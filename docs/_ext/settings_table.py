"""A ``memray-settings`` directive: the option table, generated from the code's single list."""

from __future__ import annotations

from typing import Any, Dict, List

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from pytest_memray_isolate._options import OPTIONS


def _rows() -> List[str]:
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 25 20 15 40", ""]
    lines += [
        "   * - Command line (``getoption`` name)",
        "     - ini key (type)",
        "     - Default",
        "     - Meaning",
    ]
    for spec in OPTIONS:
        if spec.flag is None:
            flag = "(ini only)"
        elif spec.bare is not None:
            flag = f"``{spec.flag}[={spec.metavar}]`` (``{spec.dest}``)"
        elif spec.takes_value:
            flag = f"``{spec.flag}={spec.metavar}`` (``{spec.dest}``)"
        else:
            flag = f"``{spec.flag}`` (``{spec.dest}``)"
        kinds = " or ".join(spec.ini_types)
        keys = ", ".join(f"``{key}``" for key in (spec.ini, *spec.ini_aliases)) + f" ({kinds})"
        default = "off" if spec.default in (None, False) else str(spec.default)
        meaning = spec.help.replace("%%", "%")
        lines += [
            f"   * - {flag}",
            f"     - {keys}",
            f"     - {default}",
            f"     - {meaning}",
        ]
    return lines


class SettingsTable(SphinxDirective):
    """Insert the table of every option and ini key."""

    def run(self) -> List[nodes.Node]:
        container = nodes.container()
        self.state.nested_parse(StringList(_rows(), source="memray-settings"), self.content_offset, container)
        return [container]


def setup(app: Sphinx) -> Dict[str, Any]:
    app.add_directive("memray-settings", SettingsTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
