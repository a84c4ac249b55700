"""The tests docs/usage.rst shows for limit_leaks with warm-ups and repetitions.

A cache filled on the first call keeps nothing new afterwards; a list that grows on
every call leaks every time. Only the second fails.
"""

import functools

import pytest

LEAKED = []


@functools.lru_cache(maxsize=None)
def squares(n):
    return [bytearray(64) for _ in range(n)]


@pytest.mark.limit_leaks("1 KB", warmups=1, repeats=3)
def test_fills_a_cache():  # passes: the warm-up filled the cache
    assert len(squares(500)) == 500


@pytest.mark.limit_leaks("1 KB", warmups=1, repeats=3)
def test_appends_to_a_module_list():  # fails: 4 KiB more on every call
    LEAKED.append(bytearray(4096))
