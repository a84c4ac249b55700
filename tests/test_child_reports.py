"""A call report rebuilt from an isolated child's data shares what it has in common with
the report made here (pytest keeps every report until the run ends)."""

from __future__ import annotations

import sys
from typing import Any, Dict

import pytest

from pytest_memray_isolate._parent import _share_identity


def _report(**changes: Any) -> pytest.TestReport:
    fields: Dict[str, Any] = {
        "nodeid": "".join(["test_a.py::", "test_one"]),  # a fresh string each time
        "location": ("test_a.py", 3, "".join(["test_", "one"])),
        "keywords": {"".join(["test_", "one"]): 1, "test_a.py": 1},
        "outcome": "passed",
        "longrepr": None,
        "when": "call",
    }
    fields.update(changes)
    return pytest.TestReport(**fields)


def test_the_childs_report_takes_this_processs_node_id_location_and_keywords() -> None:
    here, from_child = _report(), _report(outcome="failed")
    assert from_child.nodeid is not here.nodeid
    _share_identity(from_child, here)
    assert from_child.nodeid is here.nodeid
    assert from_child.location is here.location
    assert from_child.keywords is here.keywords
    assert from_child.outcome == "failed"


def test_what_the_child_changed_stays_the_childs() -> None:
    """A marker added in the child, say, shows in its keywords: those are kept."""
    here = _report()
    from_child = _report(keywords={**here.keywords, "added_in_child": 1})
    _share_identity(from_child, here)
    assert "added_in_child" in from_child.keywords
    assert from_child.nodeid is here.nodeid


def test_a_rebuilt_reports_type_name_and_node_identity_are_shared() -> None:
    """A report rebuilt from serialized data keeps ``$report_type`` (pytest sets every
    unknown field as an attribute); pytest 9 reports also carry a node identity, ``_id``."""
    here = _report()
    data = here._to_json()
    from_child = pytest.TestReport._from_json({**data, "$report_type": "".join(["Test", "Report"])})
    kind = vars(from_child)["$report_type"]
    assert kind == "TestReport"
    assert kind is not sys.intern("TestReport")
    _share_identity(from_child, here)
    assert vars(from_child)["$report_type"] is sys.intern("TestReport")
    if "_id" in vars(here):
        assert vars(from_child)["_id"] is vars(here)["_id"]
