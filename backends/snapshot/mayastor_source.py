"""The Mayastor source: volumes that lost replicas, as faults of the pools they were on.

Mayastor keeps volumes in its control plane, not in Kubernetes objects: they are read from
its REST API through the API server's service proxy (one call), and named by the claim of
their PersistentVolume (one list). A source that only reports (see sources.Source): a
Faulted volume (no healthy replica: its data is gone unless restored) is an error of the
pool its replica was on, a Degraded one a warning there, so the Pools pane's detail and
the fault line name the claims a dead node takes with it. A cluster without Mayastor's
api-rest (404) has no such faults, nor has an identity that may not use the proxy (the
`view` role, the read-only console's): both show pools without their volumes, the source
itself healthy. When the Kubernetes API does not answer, the Kubernetes source says so and
this one keeps the faults it last saw; an api-rest that fails behind a working API server
(a 503 through the proxy) degrades this source.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dapper.backends.errors import BackendError
from dapper.backends.model import Fault, SourceName
from dapper.backends.snapshot.join import SnapshotParts
from dapper.backends.snapshot.sources import IMPORTS, SingleFlight, SourceContext

if TYPE_CHECKING:
    from dapper.backends.clients.kube_reader import VolumeReads

log = logging.getLogger(__name__)

NAME = SourceName.MAYASTOR
DRIVER = "io.openebs.csi-mayastor"
# Where the openebs chart's api-rest Service is (the tree's HelmRelease `openebs`).
NAMESPACE = "openebs-system"
SERVICE = "http:openebs-api-rest:http"
# The Kubernetes API itself does not answer: that is the Kubernetes source's fault to tell.
API_DOWN = frozenset({"REFUSED", "TLS", "DNS", "TIMEOUT", "UNAVAILABLE", "UNAUTHORIZED"})


@dataclass(frozen=True)
class MayastorData:
    faults: tuple[Fault, ...] = ()


class MayastorSource:
    name = NAME
    interval = 15.0

    def __init__(self, context: SourceContext) -> None:
        self.context = context
        self._client: VolumeReads | None = None
        self._flight = SingleFlight()
        self._last = MayastorData()
        self._unreadable = ""  # why volumes could not be read, as last logged

    def client(self) -> VolumeReads:
        """The lean GET-only reader when the kubeconfig allows it (see kube_reader), else
        the full client, read-only either way."""
        with IMPORTS:
            if self._client is None:
                from dapper.backends.clients.kube_reader import open_reader

                config = self.context.config
                path, context = config.kubeconfig or None, config.kube_context or None
                lean = open_reader(path, context, timeout=self.context.timeout)
                if lean is not None:
                    self._client = lean
                else:
                    from dapper.backends.clients.kube import KubeBackend

                    self._client = KubeBackend.from_kubeconfig(
                        path, context=context, read_only=True, timeout=self.context.timeout
                    )
            return self._client

    def refresh_after(self) -> tuple[str, ...]:
        return ()

    async def fetch(self, *, fresh: bool = False) -> MayastorData:
        return await self._flight.run(self._read)

    def _note_unreadable(self, why: str) -> None:
        """Logged when it starts or its reason changes, not at every refresh: a read-only
        console left on a wall screen asked every 15 s and logged each answer."""
        if why != self._unreadable:
            log.info("%s", why)
            self._unreadable = why

    def _read(self) -> MayastorData:
        data = self._volumes()
        self._last = data
        return data

    def _volumes(self) -> MayastorData:
        k = self.client()
        try:
            volumes = k.mayastor_volumes(NAMESPACE, SERVICE)
        except BackendError as exc:
            if exc.code in API_DOWN:
                # the Kubernetes source reports its API down; keep what was last seen
                self._note_unreadable(f"Mayastor volumes not read: {exc.reason}")
                return self._last
            if exc.code == "NOT_FOUND":
                return MayastorData()  # no Mayastor api-rest here
            if exc.code == "FORBIDDEN":
                # the `view` role has no services/proxy: a read-only console (a wall
                # screen) shows pools without their volumes rather than a standing warning
                self._note_unreadable(f"Mayastor volumes not readable: {exc.reason}")
                return MayastorData()
            raise
        if self._unreadable:
            log.info("Mayastor volumes readable again")
            self._unreadable = ""
        if not any(_status(v) not in ("Online", "") for v in volumes):
            return MayastorData()
        return MayastorData(tuple(volume_faults(volumes, k.volume_claims(DRIVER))))

    def feed(self, parts: SnapshotParts, data: object) -> None:
        assert isinstance(data, MayastorData)
        parts.faults.extend(data.faults)

    async def close(self) -> None:
        self._flight.cancel()
        if self._client is not None:
            self._client.close()


def _status(volume: dict[str, Any]) -> str:
    return str((volume.get("state") or {}).get("status") or "")


def volume_faults(volumes: list[dict[str, Any]], claims: dict[str, str]) -> list[Fault]:
    """One fault per pool holding a lost or unhealthy replica of a volume that is not
    Online: an error when the volume is Faulted, a warning when Degraded."""
    faults: list[Fault] = []
    for v in volumes:
        status = _status(v)
        if status in ("Online", ""):
            continue
        state = v.get("state") or {}
        uuid = str(state.get("uuid") or (v.get("spec") or {}).get("uuid") or "")
        claim = claims.get(uuid, f"volume {uuid}")
        replicas = (state.get("replica_topology") or {}).values()
        healthy = [r for r in replicas if r.get("state") == "Online"]
        rebuilding = [r for r in replicas if "rebuild-progress" in r]
        for r in replicas:
            if r.get("state") == "Online" or r in rebuilding:
                continue
            if status == "Faulted":
                message = f"{claim} Faulted: no healthy replica (this one {r.get('state')})"
            else:
                where = ", ".join(str(h.get("node", "?")) for h in healthy) or "-"
                extra = "".join(
                    f"; rebuilding on {b.get('node', '?')} ({b['rebuild-progress']}%)"
                    for b in rebuilding
                )
                message = (
                    f"{claim} Degraded: this replica {r.get('state')}, healthy on {where}{extra}"
                )
            severity = "error" if status == "Faulted" else "warning"
            faults.append(Fault(severity, "pools", str(r.get("pool", "")), message))
    return faults
