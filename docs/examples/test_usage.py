"""The tests docs/usage.rst and the README show: each memray marker on a test that works.

Run them with ``pytest -v test_usage.py``: the markers work without ``--memray``.
"""

import threading

import pytest


@pytest.mark.limit_memory("24 MB")  # fail at 24 MiB or more at the high watermark
def test_parser_stays_small():
    rows = [line.split(",") for line in ["id,name,size"] * 10_000]
    assert len(rows) == 10_000


@pytest.mark.memray_isolate  # isolate this test even without the flag
def test_leaves_threads_behind():
    threading.Thread(target=threading.Event().wait, name="left-behind", daemon=True).start()


def test_no_thread_is_left_behind():
    """The thread started above ended with the child process its test ran in."""
    assert "left-behind" not in [thread.name for thread in threading.enumerate()]


@pytest.mark.memray_isolate("fork", timeout=60)
def test_builds_a_big_index():
    index = {str(number): number for number in range(100_000)}
    assert index["99999"] == 99_999


@pytest.mark.memray_isolate("spawn")  # a fresh interpreter: nothing here is a fork of pytest
def test_runs_in_a_fresh_interpreter():
    table = [str(number) for number in range(10_000)]
    assert len(table) == 10_000


_CACHE = []


def _fill_cache():
    _CACHE.append(bytearray(2 * 1024 * 1024))


def not_the_cache(stack):
    return not any(frame.function == "_fill_cache" for frame in stack.frames)


@pytest.mark.limit_leaks("1 MB", filter_fn=not_the_cache)
def test_parser_does_not_leak():
    _fill_cache()  # 2 MiB kept on purpose: not_the_cache leaves it out
    assert "a,b".split(",") == ["a", "b"]


@pytest.mark.limit_allocations(100)
def test_parse_header_does_not_allocate_per_field():
    header = "id,name,size,owner,created"
    assert header.split(",")[0] == "id"
