"""Tests that misbehave, for docs/crashes.rst: under --memray-isolate each fails alone."""

import ctypes
import os
import time


def test_segfault():
    data = b"x" * (48 * 1024 * 1024)  # 48 MiB alive when the process dies
    print(f"about to crash holding {len(data)} bytes")
    ctypes.string_at(0)  # reads address 0: SIGSEGV


def test_exits():
    os._exit(3)


def test_hangs():
    time.sleep(3600)


def test_runs_away():
    chunks = []
    for _ in range(64):  # 1 GiB, then it waits: --memray-max-rss stops it long before
        chunks.append(b"x" * (16 * 1024 * 1024))
    time.sleep(3600)
