"""The tests docs/usage.rst shows: each measures only part of itself with memray_region."""

import pytest


def load_fixture_data():
    """Stands in for what a test needs before the part it measures: 40 MiB of rows."""
    return [bytes(1024) for _ in range(40 * 1024)]


def build_index(rows):
    """Stands in for the code under test."""
    index = {}
    for number, row in enumerate(rows):
        index[number] = row[:16]
    return index


def test_build(memray_region):
    data = load_fixture_data()  # not counted
    with memray_region() as region:
        build_index(data)
    assert region.peak_memory < 50 * 1024**2
    assert region.allocations < 10_000


@pytest.mark.limit_memory("16 MB")
def test_each_step_stays_under_the_limit(memray_region):
    rows = load_fixture_data()  # 40 MiB, but in no region: the limit does not see it
    with memray_region():
        index = build_index(rows)
    with memray_region():
        sizes = sorted(len(key) for key in index.values())
    assert sizes


_INDEXES = {}


def cached_index(rows):
    """Builds an index once per number of rows, and keeps it."""
    if len(rows) not in _INDEXES:
        _INDEXES[len(rows)] = build_index(rows)
    return _INDEXES[len(rows)]


def test_a_cached_index_is_built_once(memray_region):
    rows = load_fixture_data()
    cached_index(rows)  # the first call fills the cache
    with memray_region(leaks=True) as again:
        cached_index(rows)
    assert again.leaked_memory < 1024
