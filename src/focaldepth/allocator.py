"""Keep freed memory in the process (glibc malloc), so that PyTorch on the CPU does not fault
in fresh pages for every large tensor.

glibc serves an allocation above its mmap threshold (128 KiB at start, then adapting) with a
fresh ``mmap`` and returns it to the kernel when freed; the heap is trimmed back to the kernel
when more than 128 KiB is free at its top. A forward pass allocates and frees the same few-MB
feature maps every frame, so every frame pays the kernel to zero and map the same pages again
(page faults, single-threaded). Measured on the default vote at 320x180 x 5 frames, one thread,
alternating runs on the shared 2-core machine: median 73-96 ms with the settings below against
108-145 ms without, 57-59 k page faults against 146-308 k (session 12). Memory stays at the
peak the process reached, which a streaming predictor reaches on its first frame anyway.

``FOCALDEPTH_KEEP_FREED_MEMORY=0`` leaves the allocator alone. On a C library other than glibc
(macOS, Windows, musl) nothing happens.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Allocations below this come from the heap and are reused (glibc's largest allowed value,
#: 32 MiB on 64-bit: a 1080p RGB float frame is 24 MiB).
MMAP_THRESHOLD_BYTES = 32 * 2**20
#: Free memory at the top of the heap kept rather than returned to the kernel.
TRIM_THRESHOLD_BYTES = 1024 * 2**20

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the settings once per process; True when they are in effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("FOCALDEPTH_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return _applied


def applied() -> bool:
    """Whether :func:`keep_freed_memory` is in effect in this process (for run summaries)."""
    return bool(_applied)
