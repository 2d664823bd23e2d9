"""A dropped SSH session sends SIGHUP: a runbook then stops at its next safe point.

The engine polls `stopping()` between steps and during waits (never between a side effect
and its journal entry), so the run ends aborted and resumable instead of dying wherever
it stood. SIGTERM is treated alike.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

SIGNALS = (signal.SIGHUP, signal.SIGTERM)


class StopOnHangup:
    """While entered, SIGHUP and SIGTERM only set a flag the engine polls."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.signal_name = ""
        self._previous: dict[int, Any] = {}

    def stopping(self) -> bool:
        return self._stop.is_set()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name
        self._stop.set()

    def __enter__(self) -> StopOnHangup:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
