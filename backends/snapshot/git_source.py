"""The Git source: which files of the Flux tree each Kustomization's path holds."""

from __future__ import annotations

from dapper.backends.model import SourceName
from dapper.backends.snapshot.join import GitData, SnapshotParts
from dapper.backends.snapshot.sources import IMPORTS, SingleFlight, SourceContext


class GitSource:
    name = SourceName.GIT
    interval = 10.0

    def __init__(self, context: SourceContext) -> None:
        self.context = context
        self._cache: tuple[str, GitData] | None = None  # the tree at the last HEAD read
        self._flight = SingleFlight()

    def refresh_after(self) -> tuple[str, ...]:
        return ()

    async def fetch(self, *, fresh: bool = False) -> GitData:
        return await self._flight.run(self._read)

    def _read(self) -> GitData:
        with IMPORTS:
            from dapper.backends.clients.gitdata import tree_view

        repo = self.context.config.repo_path or "."
        head, data = tree_view(repo, self._cache)
        self._cache = (head, data)
        return data

    def feed(self, parts: SnapshotParts, data: object) -> None:
        assert isinstance(data, GitData)
        parts.git = data

    async def close(self) -> None:
        self._flight.cancel()
