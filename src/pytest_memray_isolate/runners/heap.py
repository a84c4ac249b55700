"""Bring a forked child's small-object allocator to the same state before every test.

A forked child inherits its parent's pymalloc arenas. Without
``trace_python_allocators`` memray sees arenas (1 MiB each), not objects, so a test's
peak moves by whole arenas with the free space the parent happened to leave behind:
the same test measures 1 MiB more or less depending on what ran before it.

``settle`` fills every free block of every size class and every free pool with small
objects that the child keeps until it exits. Afterwards a test's first small
allocation of each size class needs a new pool, and its first new pool needs a new
arena, whatever the parent did before the fork, so the figure depends on the test
alone. The cost grows with the parent's free space (about 0.3 ms per round plus
about 0.1 ms per 1,000 free blocks).
"""

from __future__ import annotations

import gc
import os
import re
import sys
from itertools import repeat
from typing import Dict, List, Tuple

__all__ = ["free_space", "settle"]

_CLASS_LINE = re.compile(rb"^\s*\d+\s+(\d+)\s+\d+\s+\d+\s+(\d+)\s*$", re.MULTILINE)
_FREE_POOLS = re.compile(rb"^(\d+) unused pools \* (\d+) bytes", re.MULTILINE)
_POOL_HEADER = 48  # bytes of each pool spent on its header on 64-bit builds
_BYTES_HEADER = sys.getsizeof(b"")
_MAX_ROUNDS = 6

FreeSpace = Tuple[Dict[int, int], int, int]


def _allocator_statistics() -> bytes:
    """What ``sys._debugmallocstats`` prints (to the C stderr), captured through a pipe."""
    read_end, write_end = os.pipe()
    saved_stderr = os.dup(2)
    try:
        sys.stderr.flush()
        os.dup2(write_end, 2)
        sys._debugmallocstats()
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(write_end)
    chunks = []
    while True:
        chunk = os.read(read_end, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_end)
    return b"".join(chunks)


def free_space() -> FreeSpace:
    """Free blocks per block size, free pools, and the pool size of this interpreter's pymalloc."""
    text = _allocator_statistics()
    free_blocks = {int(size): int(avail) for size, avail in _CLASS_LINE.findall(text)}
    pools = _FREE_POOLS.search(text)
    free_pools, pool_size = (int(pools[1]), int(pools[2])) if pools else (0, 16384)
    return free_blocks, free_pools, pool_size


def _objects_of_block_size(block_size: int, count: int) -> List[object]:
    """``count`` new objects whose pymalloc request falls in the class of ``block_size``."""
    if block_size <= 16:  # a one-item list's item array is 8 bytes
        return list(map(list, repeat((None,), count)))
    if block_size <= 32:  # a float is 24 bytes
        return list(map(float, repeat("0.5", count)))
    return list(map(bytes, repeat(block_size - _BYTES_HEADER, count)))


def settle() -> List[object]:
    """Fill the allocator's free space; keep the returned objects alive until the process ends.

    Does nothing where pymalloc is not in use (``PYTHONMALLOC=malloc``, debug builds).
    """
    keep: List[object] = []
    if not hasattr(sys, "_debugmallocstats") or os.environ.get("PYTHONMALLOC", "pymalloc") not in (
        "pymalloc",
        "",
    ):
        return keep
    # Objects the parent left for the cyclic collector must not be freed during the test,
    # and the collector's counters must start from zero: freeze what exists, then collect
    # the (now empty) young generations.
    gc.freeze()
    gc.collect()
    residue: Dict[int, int] = {}
    for _ in range(_MAX_ROUNDS):
        free_blocks, free_pools, pool_size = free_space()
        to_fill = {size: count for size, count in free_blocks.items() if count and count != residue.get(size)}
        if not to_fill and not free_pools:
            break
        for size in sorted(to_fill):
            keep.append(_objects_of_block_size(size, to_fill[size]))
        if free_pools:
            largest = max(free_blocks) if free_blocks else 512
            per_pool = (pool_size - _POOL_HEADER) // largest
            keep.append(_objects_of_block_size(largest, free_pools * per_pool))
        residue = free_blocks
    return keep
