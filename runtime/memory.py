"""The process heap between calls: keep freed pages for the next call instead of handing them back.

A generated ``value_and_grad`` allocates its activations and adjoints afresh on every call (Numba
arrays come from the C library's ``malloc``). With glibc's defaults, the large ones are handed back
to the kernel when they are freed (the heap is trimmed, or the block was its own ``mmap``), so the
next call takes a page fault on every 4 KiB page it writes again. For a CNN this is a large share
of a training step: LeNet-5 at batch 64, ``value_and_grad`` 10.8 ms with glibc's defaults against
8.8 ms with a 64 MiB top pad (one process, 1 thread, this machine, December 2026:
``benchmarks/results/cnn.md`` and ``cnn_heap_pad.md``); for the digits MLP and CNN, whose arrays
are small, it changes nothing beyond the noise.

:func:`pad_heap` asks glibc to keep ``nbytes`` of freed memory at the top of the heap
(``mallopt(M_TOP_PAD, nbytes)``, glibc's ``malloc.h``; the environment variable
``MALLOC_TOP_PAD_`` does the same for a whole process from its start). It is a setting of the
whole process: the cost is up to ``nbytes`` of memory kept resident after the arrays are freed.
:func:`gradc.runtime.train` calls it; a user's own training loop can call it once.
"""
from __future__ import annotations

import ctypes
import platform

#: glibc's ``M_TOP_PAD`` parameter of ``mallopt`` (``malloc.h``).
M_TOP_PAD = -2
#: What :func:`pad_heap` keeps by default: 64 MiB.
DEFAULT_PAD = 64 << 20

_done: set[int] = set()


def pad_heap(nbytes: int = DEFAULT_PAD) -> bool:
    """Keep up to ``nbytes`` (an int ≥ 0, bytes) of freed memory at the top of the heap for later
    allocations (glibc ``mallopt(M_TOP_PAD, nbytes)``). Returns True when it was set (or had been
    set to that value before), False where the C library is not glibc (nothing is changed there).

    Raises ValueError for a negative or non-integer ``nbytes``."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
        raise ValueError(f"pad_heap: nbytes must be an int >= 0, got {nbytes!r}")
    if nbytes in _done:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        ok = ctypes.CDLL(None).mallopt(ctypes.c_int(M_TOP_PAD), ctypes.c_int(min(nbytes, 2 ** 31 - 1)))
    except (OSError, AttributeError):
        return False
    if ok == 1:
        _done.clear()
        _done.add(nbytes)
    return ok == 1
