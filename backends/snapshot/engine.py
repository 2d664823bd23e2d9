"""The collector's own event loop, on its own thread: fetching and joining never run on
the console's loop, so a key is handled while a 500-node sweep is parsed and joined.

Coroutines are submitted with `run()` from any loop and awaited there; the work itself
(the Talos client's gRPC, the sources' thread hand-offs, the join) runs here.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class Engine:
    """A daemon thread running one event loop until `stop()`; started on first use."""

    def __init__(self, name: str = "collector") -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()
                    loop.close()

                self._thread = threading.Thread(target=serve, name=self.name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the engine's loop and await its result from the caller's loop;
        cancelling the caller cancels the work."""
        future = asyncio.run_coroutine_threadsafe(coro, self._ensure())
        return await asyncio.wrap_future(future)

    def stop(self) -> None:
        """Stop the loop and wait for its thread (pending work is dropped)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
