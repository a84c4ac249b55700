"""The tests docs/usage.rst shows for resident memory: what memray counts and what the
process really took from the operating system can differ, both ways."""

import mmap

import pytest

SIZE = 64 * 1024 * 1024


def touch_every_page(mapping):
    for offset in range(0, len(mapping), mmap.PAGESIZE):
        mapping[offset] = 1


@pytest.mark.limit_rss("96 MB")  # fail if the process's peak resident size grows by 96 MiB or more
def test_fills_a_buffer():
    with mmap.mmap(-1, SIZE) as buffer:
        touch_every_page(buffer)


def test_reserves_without_touching():
    with mmap.mmap(-1, 2 * SIZE) as buffer:  # memray counts the mapping; no page becomes resident
        assert len(buffer) == 2 * SIZE


@pytest.mark.limit_rss("32 MB")
def test_fills_too_much():
    with mmap.mmap(-1, SIZE * 3 // 4) as buffer:
        touch_every_page(buffer)


def test_fills_a_smaller_buffer():  # no marker: the default limit applies (--memray-limit-rss)
    with mmap.mmap(-1, SIZE // 4) as buffer:
        touch_every_page(buffer)
