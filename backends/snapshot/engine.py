"""The collector's own event loop, on its own thread: fetching and joining never run on
the console's loop, so a key is handled while a 500-node sweep is parsed and joined.

Coroutines are submitted with `run()` from any loop and awaited there; the work itself
(the Talos client's gRPC, the sources' thread hand-offs, the join) runs here.
"""

from __future__ import annotations

import asyncio
import contextlib
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
        """Cancel the work still running (a refresh whose caller went away), let it unwind,
        then stop the loop and wait for its thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        drained = asyncio.run_coroutine_threadsafe(_cancel_the_rest(), loop)
        with contextlib.suppress(Exception):  # a stuck task must not keep the process
            drained.result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


async def _cancel_the_rest() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=3)
