"""Give freed heap back to the operating system after a burst of allocation.

Listing 20,000 pods allocates their JSON and its parse at once; CPython frees them, but
glibc keeps the pages, so the console's resident size stays at every burst's high-water
mark. `release()` asks glibc to return what it can (malloc_trim); elsewhere it does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)


@functools.cache
def _trim() -> ctypes._NamedFuncPointer | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None


def release() -> None:
    trim = _trim()
    if trim is not None:
        try:
            trim(0)
        except OSError:  # pragma: no cover - a libc that refuses; nothing lost
            log.debug("malloc_trim failed", exc_info=True)
