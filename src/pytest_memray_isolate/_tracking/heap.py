"""Bring a forked child's small-object allocator to the same state before every test.

A forked child inherits its parent's pymalloc arenas. Without
``trace_python_allocators`` memray sees arenas (1 MiB each), not objects, so a test's
peak moves by whole arenas with the free space the parent happened to leave behind:
the same test measures 1 MiB more or less depending on what ran before it.

``settle`` fills that free space with objects the child keeps until it exits, then opens
one fresh arena on purpose. When the Tracker starts, the only free pools are that
arena's and the pools in use have (almost) no free block, whatever the parent did before
the fork, so a test's figure depends on the test alone.

Most of the free space a child finds is the parent's leftovers from collection, the same
for every test. Each page a child fills there is a copy of the parent's page (a
copy-on-write fault, several microseconds each on a virtual machine), so the process that
forks fills that space once, for good (``fill_free_space``), and each child settles only
what the parent freed since.

Filling must not overshoot: one pool too many maps a new arena whose 63 free pools
would hide the test's own first megabyte. The objects this code itself allocates while
it works (parsing the statistics, iterators) therefore live in a reserve of free blocks
kept in their size classes, and the free pools are filled last, exactly.
"""

from __future__ import annotations

import gc
import os
import re
import sys
from itertools import repeat
from typing import Dict, List, Tuple

__all__ = ["fill_free_space", "free_space", "settle"]

_CLASS_LINE = re.compile(rb"^\s*\d+\s+(\d+)\s+\d+\s+\d+\s+(\d+)\s*$", re.MULTILINE)
_FREE_POOLS = re.compile(rb"^(\d+) unused pools \* (\d+) bytes", re.MULTILINE)
_POOL_HEADER = 48  # bytes of each pool spent on its header on 64-bit builds
_BYTES_HEADER = sys.getsizeof(b"")
#: Block sizes of the objects this module allocates while it works (ints and floats,
#: iterators, small tuples and lists, regex matches), and how many free blocks each keeps.
_RESERVED_BLOCK_SIZES = (32, 48, 64, 128)
_RESERVE = 256
_FILL_ROUNDS = 2
#: Free pools ``fill_free_space`` leaves, so that its own reading cannot make it overshoot.
_POOLS_LEFT = 2

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


def _new_objects(block_size: int, count: int, into: List[object]) -> None:
    """Append ``count`` new objects whose pymalloc request falls in the class of ``block_size``."""
    if count <= 0:
        return
    if block_size <= 16:  # a one-item list's item array is 8 bytes
        into.extend(map(list, repeat((None,), count)))
    elif block_size <= 32:  # a float is 24 bytes
        into.extend(map(float, repeat("0.5", count)))
    else:
        into.extend(map(bytes, repeat(block_size - _BYTES_HEADER, count)))


def _holder() -> List[object]:
    """An empty list whose item array is already larger than pymalloc serves, so growing it
    never takes a small block."""
    holder: List[object] = [None] * 80
    holder.clear()
    holder.extend(repeat(None, 80))
    return holder


def _fill_pools(free_blocks: Dict[int, int], free_pools: int, pool_size: int, into: List[object]) -> int:
    """Fill ``free_pools`` whole pools with objects of the largest block size; return that size."""
    largest = max(free_blocks, default=512)
    _new_objects(largest, free_pools * ((pool_size - _POOL_HEADER) // largest), into)
    return largest


def _pymalloc_in_use() -> bool:
    return hasattr(sys, "_debugmallocstats") and os.environ.get("PYTHONMALLOC", "") in ("", "pymalloc")


def settle() -> List[object]:
    """Fill the allocator's free space; keep the returned objects alive until the process ends.

    Does nothing where pymalloc is not in use (``PYTHONMALLOC=malloc``, debug builds).
    """
    keep: List[object] = []
    if not _pymalloc_in_use():
        return keep
    # Objects the parent left for the cyclic collector must not be freed during the test,
    # and the collector's counters must start from zero: freeze what exists, then collect
    # the (now empty) young generations.
    gc.freeze()
    gc.collect()
    for _ in range(_FILL_ROUNDS):
        free_blocks, _, _ = free_space()
        holder = _holder()
        for size in sorted(free_blocks):
            spare = _RESERVE if size in _RESERVED_BLOCK_SIZES else 0
            count = free_blocks[size] - spare
            if count < 0:  # make the reserve: take a pool, then free all but one block
                extra: List[object] = _holder()
                _new_objects(size, spare + 1, extra)
                holder.append(extra.pop())
                del extra
            else:
                _new_objects(size, count, holder)
        keep.append(holder)
    # Last, and exactly, from one reading: the free blocks of every size class outside the
    # reserve (so that what runs next finds the same classes full every time), then every
    # free pool. One-item lists, the only 16-byte objects at hand, would eat the reserve.
    holder = _holder()
    free_blocks, free_pools, pool_size = free_space()
    for size, count in sorted(free_blocks.items()):
        if size > 16 and size not in _RESERVED_BLOCK_SIZES:
            _new_objects(size, count, holder)
    largest = _fill_pools(free_blocks, free_pools, pool_size, holder)
    # Then open one fresh arena on purpose. Whatever runs before the test (the Tracker
    # starting) takes its pools from that arena, instead of mapping a new arena or not
    # depending on a stray free block, so every test starts with the same free pools.
    _new_objects(largest, 1, holder)
    keep.append(holder)
    return keep


#: What ``fill_free_space`` filled in this process: kept until the process ends.
_filled: List[object] = []


def fill_free_space() -> None:
    """Fill the free space this process has now, and keep it filled; for a process that forks.

    Its children then copy none of these pages when they settle. The process's resident
    size does not grow (the pages are already its own); what it allocates later takes new
    pools instead of these, once. Unlike ``settle`` this need not be exact: each child
    still settles whatever is free when it starts.
    """
    if not _pymalloc_in_use():
        return
    # Garbage freed later would leave free space behind again: free it first. And no
    # collection may free more while filling, or the last count would be out of date.
    gc.collect()
    collecting = gc.isenabled()
    gc.disable()
    try:
        _fill(_filled)
    finally:
        if collecting:
            gc.enable()


def _fill(keep: List[object]) -> None:
    holder = _holder()
    free_blocks, _, _ = free_space()
    for size, count in free_blocks.items():
        _new_objects(size, count, holder)
    # Filling blocks may have taken pools (a list's own block for each 16-byte item array):
    # count the free pools afresh. Reading them may take a pool or two more; filling one
    # too many would map a new arena, so two are left.
    free_blocks, free_pools, pool_size = free_space()
    _fill_pools(free_blocks, max(0, free_pools - _POOLS_LEFT), pool_size, holder)
    keep.append(holder)
