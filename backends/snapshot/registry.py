"""The sources every collector is built from, registered once, in the order shown."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dapper.backends.model import SourceName
from dapper.backends.snapshot.git_source import GitSource
from dapper.backends.snapshot.kubernetes_source import KubernetesSource
from dapper.backends.snapshot.mayastor_source import MayastorSource
from dapper.backends.snapshot.proxmox_source import ProxmoxSource
from dapper.backends.snapshot.sources import SourceFactory
from dapper.backends.snapshot.talos_source import TalosSource

BUILTIN: tuple[tuple[str, SourceFactory], ...] = (
    (SourceName.KUBERNETES, KubernetesSource),
    (SourceName.TALOS, TalosSource),
    (SourceName.PROXMOX, ProxmoxSource),
    (SourceName.GIT, GitSource),
    (SourceName.MAYASTOR, MayastorSource),
)


class SourceRegistry:
    """Name -> factory of a source; a collector builds one source of each at its start."""

    def __init__(self, entries: tuple[tuple[str, SourceFactory], ...] = ()) -> None:
        self._factories: dict[str, SourceFactory] = dict(entries)

    def register(self, name: str, factory: SourceFactory) -> None:
        if name in self._factories:
            raise ValueError(f"source {name!r} is already registered")
        self._factories[name] = factory

    def unregister(self, name: str) -> None:
        del self._factories[name]

    @contextmanager
    def registered(self, name: str, factory: SourceFactory) -> Iterator[None]:
        """`factory` registered for the duration of a `with` block (tests, experiments)."""
        self.register(name, factory)
        try:
            yield
        finally:
            self.unregister(name)

    def names(self) -> tuple[str, ...]:
        return tuple(self._factories)

    def factories(self) -> dict[str, SourceFactory]:
        return dict(self._factories)


REGISTRY = SourceRegistry(BUILTIN)
