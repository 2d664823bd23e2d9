"""The console's view of the backends: typed Protocols, so tui/ depends on shapes, not classes.

tui/ imports these (and model, config, errors), never the collector or a client module:
the concrete Collector and Operations satisfy them structurally, and a test double or a
future remote collector (the SSH front door) can too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from dapper.backends.config import Config
from dapper.backends.model import ClusterSnapshot

Progress = Callable[[str], None] | None


class ClusterOperations(Protocol):
    """The console's writes on the cluster (only a read-write collector has them)."""

    async def reconcile(
        self, namespace: str, name: str, *, with_source: bool = False, progress: Progress = None
    ) -> str: ...

    async def suspend(self, namespace: str, name: str) -> None: ...

    async def resume(self, namespace: str, name: str) -> None: ...

    async def cordon(self, node: str) -> None: ...

    async def uncordon(self, node: str) -> None: ...

    async def drain(self, node: str, *, progress: Progress = None) -> str: ...

    async def vm_start(self, vmid: int, *, progress: Progress = None) -> None: ...

    async def vm_shutdown(self, vmid: int, *, progress: Progress = None) -> None: ...


class SnapshotFeed(Protocol):
    """What the console reads: snapshots per source, refreshes, watches and operations."""

    config: Config
    snapshot: ClusterSnapshot
    operations: ClusterOperations | None

    @property
    def source_names(self) -> tuple[str, ...]:
        """Every registered source, in the order they are shown."""
        ...

    def interval(self, source: str) -> float: ...

    async def refresh(self, source: str, *, fresh: bool = False) -> ClusterSnapshot: ...

    async def refresh_all(self) -> ClusterSnapshot: ...

    def start_watches(self, **options: Any) -> None: ...

    def on_change(self, callback: Callable[[str], None]) -> None: ...

    def watching(self, source: str) -> bool: ...

    def watchable(self, source: str) -> bool:
        """Whether start_watches() serves `source` by watches (its first refresh waits for
        them: a refresh before would list what the watches are listing)."""
        ...

    async def close(self) -> None: ...
