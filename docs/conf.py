"""Sphinx configuration for the pytest-memray-isolate documentation."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent / "src"))

from pytest_memray_isolate import __version__  # noqa: E402

project = "pytest-memray-isolate"
author = "pytest-memray-isolate developers"
release = version = __version__
extensions = ["settings_table"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = ["_static"]
nitpicky = True
