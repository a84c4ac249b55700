"""The tests whose reports docs/reports.rst shows: within its limit, over it, a crash, a region."""

import os

import pytest


def load_file(size):
    """Stands in for the code under test: reads a file of ``size`` bytes into memory."""
    return bytearray(size)


@pytest.mark.limit_memory("100 MB")
def test_big_file():
    assert len(load_file(48 * 1024 * 1024)) == 48 * 1024 * 1024


@pytest.mark.limit_memory("1 MB")
def test_over_its_limit():
    data = bytearray(3 * 1024 * 1024)
    assert len(data) == 3 * 1024 * 1024


def test_crash():
    rows = bytearray(8 * 1024 * 1024)
    assert rows is not None
    os._exit(3)


def test_second_file_only(memray_region):
    first = load_file(16 * 1024 * 1024)  # what the measured part needs: not counted
    with memray_region() as region:
        second = load_file(2 * 1024 * 1024)
    assert region.peak_memory < 4 * 1024 * 1024
    assert len(first) > len(second)
