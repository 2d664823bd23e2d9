"""Talos machine API client: grpclib over stdlib ssl (Ed25519 mTLS), one node per call.

Every call names its target with the `node` metadata key, as talosctl does since the
deprecation of `nodes`; many nodes are reached by running calls concurrently. Errors
become BackendError with a one-line reason; a client built read-only has no writer and
refuses every mutating call with ReadOnlyError before touching the network.

Maintenance mode (a fresh machine before its config is applied) speaks TLS without a
client certificate and without server verification (talosctl --insecure), and answers
only Disks and ApplyConfiguration to such a caller (Version is Unimplemented there). The
client dials the node's own address on `maintenance_port` (50000; a new VM's address
comes from the Proxmox guest agent), or, when `maintenance_endpoint` is given, that
endpoint with `node` metadata.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import io
import logging
import re
import ssl
import tarfile
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from dapper.backends.clients.talos_pb import common_pb2, machine_grpc, machine_pb2, storage_grpc
from dapper.backends.clients.talosconfig import (
    DEFAULT_PORT,
    TalosContext,
    certificate_roles,
    client_ssl_context,
    insecure_ssl_context,
    join_endpoint,
    load_talosconfig,
    split_endpoint,
)
from dapper.backends.errors import BackendError, ReadOnlyError
from dapper.backends.model import EtcdMember, TalosMachine, TalosService
from dapper.backends.safe_text import clean
from google.protobuf import empty_pb2
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

log = logging.getLogger("dapper.backends.clients.talos")

T = TypeVar("T")
# machines read at once: ~7 calls each over one HTTP/2 connection; thousands of streams
# at once make h2 rescan its open streams on every new one (quadratic at 300 nodes)
MACHINES_AT_ONCE = 32
# Hostname, CPU count and disks change only with a reconfiguration or a reboot; a
# refresh re-reads them this often, and re-reads them at once when the version changes.
STATIC_TTL = 600.0

# What a node may be named in the `node` header: a hostname or an IP address.
_NODE_ADDRESS = re.compile(r"[A-Za-z0-9.:_\[\]-]{1,253}")

# The RPCs that change nothing on a machine; a read-only client refuses every other name.
READ_METHODS = frozenset(
    {
        "Version",
        "Hostname",
        "ServiceList",
        "Memory",
        "LoadAvg",
        "SystemStat",
        "EtcdMemberList",
        "EtcdStatus",
        "Disks",
        "Logs",
        "Dmesg",
    }
)

APPLY_MODES = {
    "reboot": machine_pb2.ApplyConfigurationRequest.REBOOT,
    "auto": machine_pb2.ApplyConfigurationRequest.AUTO,
    "no-reboot": machine_pb2.ApplyConfigurationRequest.NO_REBOOT,
    "staged": machine_pb2.ApplyConfigurationRequest.STAGED,
    "try": machine_pb2.ApplyConfigurationRequest.TRY,
}
WIPE_MODES = {
    "all": machine_pb2.ResetRequest.ALL,
    "system-disk": machine_pb2.ResetRequest.SYSTEM_DISK,
    "user-disks": machine_pb2.ResetRequest.USER_DISKS,
}
REBOOT_MODES = {
    "default": machine_pb2.RebootRequest.DEFAULT,
    "powercycle": machine_pb2.RebootRequest.POWERCYCLE,
    "force": machine_pb2.RebootRequest.FORCE,
}


@dataclass(frozen=True)
class TalosVersion:
    tag: str
    sha: str = ""
    arch: str = ""
    os: str = ""
    platform: str = ""
    mode: str = ""


@dataclass(frozen=True)
class TalosMemory:
    """Bytes (Talos reports /proc/meminfo kB; converted here)."""

    total: int
    free: int
    available: int

    @property
    def used(self) -> int:
        return max(self.total - self.available, 0)


@dataclass(frozen=True)
class TalosSystemStat:
    boot_time: int
    cpu_count: int
    cpu_busy_seconds: float
    cpu_total_seconds: float


@dataclass(frozen=True)
class TalosEtcdStatus:
    member_id: int
    leader: int
    db_size: int
    raft_index: int
    is_learner: bool = False
    errors: tuple[str, ...] = ()

    @property
    def is_leader(self) -> bool:
        """This member leads (node replace shows the leader before removing a member)."""
        return self.member_id == self.leader != 0


@dataclass(frozen=True)
class TalosDisk:
    device: str
    size: int
    model: str = ""
    serial: str = ""
    system_disk: bool = False


@dataclass(frozen=True)
class ApplyResult:
    mode: str
    details: str = ""
    warnings: tuple[str, ...] = ()


# (hostname, system stat, disks) of a machine; a part that failed is its exception.
StaticFacts = tuple[
    str | BaseException, TalosSystemStat | BaseException, tuple[TalosDisk, ...] | BaseException
]


def _value(read: T | BaseException) -> T | None:
    """A read gathered with return_exceptions: its value, or None when it failed."""
    return None if isinstance(read, BaseException) else read


class TalosChannel(Channel):
    """A grpclib Channel that can close its connection completely before its loop ends.

    Channel.close() starts a TLS shutdown that needs further loop turns; a loop that ends
    right after leaves the socket open. aclose() aborts the transport and lets the loop
    run the socket close.
    """

    def __init__(self, host: str, port: int, *, ssl: ssl.SSLContext) -> None:
        super().__init__(host, port, ssl=ssl)
        self._transports: weakref.WeakSet[asyncio.Transport] = weakref.WeakSet()

    def _protocol_factory(self) -> Any:
        proto: Any = super()._protocol_factory()
        made = proto.connection_made

        def connection_made(transport: asyncio.BaseTransport) -> None:
            if isinstance(transport, asyncio.Transport):
                self._transports.add(transport)
            made(transport)

        proto.connection_made = connection_made
        return proto

    async def aclose(self) -> None:
        self.close()
        for transport in list(self._transports):
            transport.abort()
        for _ in range(2):  # connection_lost, then the socket close, run on later turns
            await asyncio.sleep(0)


def _mode_name(mode: int) -> str:
    return next((k for k, v in APPLY_MODES.items() if v == mode), str(mode))


class _Writer:
    """The mutating half of the API; a read-only client never builds one."""

    def __init__(self, client: TalosClient) -> None:
        self._c = client

    async def apply_configuration(
        self,
        node: str,
        data: bytes,
        mode: str,
        maintenance: bool,
        dry_run: bool,
        try_timeout: float | None = None,
    ) -> ApplyResult:
        if mode not in APPLY_MODES:
            raise BackendError(f"unknown apply mode {mode!r}; one of {', '.join(APPLY_MODES)}")
        req = machine_pb2.ApplyConfigurationRequest(
            data=data, mode=APPLY_MODES[mode], dry_run=dry_run
        )
        if try_timeout is not None:
            req.try_mode_timeout.FromTimedelta(datetime.timedelta(seconds=try_timeout))
        msg = await self._c._unary(
            node, "machine", "ApplyConfiguration", req, maintenance=maintenance
        )
        return ApplyResult(_mode_name(msg.mode), msg.mode_details, tuple(msg.warnings))

    async def unary(self, node: str, method: str, req: Any) -> Any:
        return await self._c._unary(node, "machine", method, req)

    async def kubeconfig(self, node: str) -> bytes:
        chunks = [c async for c in self._c._stream(node, "Kubeconfig", empty_pb2.Empty())]
        return b"".join(chunks)


class TalosClient:
    """Async client for one talosconfig context. Use `async with` or call `close()`."""

    def __init__(
        self,
        context: TalosContext,
        *,
        read_only: bool = False,
        timeout: float = 5.0,
        maintenance_endpoint: str | None = None,
        maintenance_port: int = DEFAULT_PORT,
    ) -> None:
        self.context = context
        self.read_only = read_only
        self.timeout = timeout
        self.maintenance_endpoint = maintenance_endpoint
        self.maintenance_port = maintenance_port
        self._ssl = client_ssl_context(context)
        self._insecure = insecure_ssl_context()
        self._channels: dict[tuple[asyncio.AbstractEventLoop, str, bool], TalosChannel] = {}
        self._next_endpoint = 0
        self._writer: _Writer | None = None if read_only else _Writer(self)
        # node -> (when read, Talos version, facts)
        self._static: dict[str, tuple[float, str, StaticFacts]] = {}

    @classmethod
    def from_config(
        cls,
        path: str | None = None,
        context: str | None = None,
        read_only: bool = False,
        *,
        timeout: float = 5.0,
        maintenance_endpoint: str | None = None,
        maintenance_port: int = DEFAULT_PORT,
    ) -> TalosClient:
        return cls(
            load_talosconfig(path, context),
            read_only=read_only,
            timeout=timeout,
            maintenance_endpoint=maintenance_endpoint,
            maintenance_port=maintenance_port,
        )

    @functools.cached_property
    def roles(self) -> tuple[str, ...]:
        """The certificate's Talos roles, read only to explain a denial (parsing X.509
        costs the one-shot `status` an import it otherwise never needs)."""
        return certificate_roles(self.context.crt_pem)

    async def __aenter__(self) -> TalosClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection of the running loop completely (prefer over close())."""
        loop = asyncio.get_running_loop()
        mine = [ch for (lp, _, _), ch in self._channels.items() if lp is loop]
        self.close()
        for ch in mine:
            await ch.aclose()

    def close(self) -> None:
        for (loop, _, _), ch in self._channels.items():
            if not loop.is_closed():
                ch.close()
        self._channels.clear()

    # -- plumbing --------------------------------------------------------------------------

    def _drop_channel(self, endpoint: str, insecure: bool) -> None:
        ch = self._channels.pop((asyncio.get_running_loop(), endpoint, insecure), None)
        if ch is not None:
            ch.close()

    def _channel(self, endpoint: str, insecure: bool) -> TalosChannel:
        """One channel per (event loop, endpoint, mode); channels of closed loops are dropped."""
        loop = asyncio.get_running_loop()
        for key in [k for k in self._channels if k[0].is_closed()]:
            del self._channels[key]
        ch = self._channels.get((loop, endpoint, insecure))
        if ch is None:
            host, port = split_endpoint(endpoint)
            ch = TalosChannel(host, port, ssl=self._insecure if insecure else self._ssl)
            self._channels[(loop, endpoint, insecure)] = ch
        return ch

    def _routes(self, node: str | None, maintenance: bool) -> list[tuple[str, dict[str, str]]]:
        """(endpoint, metadata) pairs to try in order; later ones are failovers."""
        if maintenance:
            if self.maintenance_endpoint:
                return [(self.maintenance_endpoint, {"node": node} if node else {})]
            if not node:
                raise BackendError("maintenance mode needs a node to dial")
            return [(join_endpoint(*split_endpoint(node, self.maintenance_port)), {})]
        eps = list(self.context.endpoints)
        start = self._next_endpoint % len(eps)
        self._next_endpoint += 1
        meta = {"node": node} if node else {}
        return [(ep, meta) for ep in eps[start:] + eps[:start]]

    def _error(self, exc: BaseException, endpoint: str, node: str | None) -> BackendError:
        where = node or endpoint
        if isinstance(exc, GRPCError):
            msg = _one_line(exc.message or "")
            if exc.status is Status.PERMISSION_DENIED:
                roles = ",".join(self.roles) or "no role"
                return BackendError(f"not authorized ({roles})", code=exc.status.name)
            if exc.status is Status.DEADLINE_EXCEEDED:
                return BackendError(f"{where}: timeout after {self.timeout:g}s", code="TIMEOUT")
            label = exc.status.name.lower().replace("_", " ")
            return BackendError(f"{where}: {label}: {msg}".rstrip(": "), code=exc.status.name)
        if isinstance(exc, TimeoutError):
            return BackendError(f"{where}: timeout after {self.timeout:g}s", code="TIMEOUT")
        if isinstance(exc, ssl.SSLCertVerificationError):
            why = exc.verify_message or exc.reason or "certificate rejected"
            return BackendError(f"TLS verify failed for {endpoint}: {why}", code="TLS")
        if isinstance(exc, ssl.SSLError):
            return BackendError(
                f"TLS handshake with {endpoint} failed: {exc.reason or exc}", code="TLS"
            )
        if isinstance(exc, ConnectionRefusedError):
            return BackendError(f"connection refused: {endpoint}", code="REFUSED")
        if isinstance(exc, (StreamTerminatedError, ProtocolError, ConnectionError)):
            return BackendError(
                f"connection to {endpoint} lost (client certificate rejected?)", code="LOST"
            )
        if isinstance(exc, OSError):
            return BackendError(
                f"cannot connect to {endpoint}: {exc.strerror or exc}", code="CONNECT"
            )
        return BackendError(f"{where}: {type(exc).__name__}: {exc}")

    async def _call(
        self,
        node: str | None,
        maintenance: bool,
        fn: Callable[[Channel, dict[str, str]], Awaitable[T]],
    ) -> T:
        if node is not None and not _NODE_ADDRESS.fullmatch(node):
            # a name from the cluster (untrusted) that no gRPC header may carry
            raise BackendError(f"{node}: not a node address Talos can be asked about")
        last: BackendError | None = None
        for endpoint, meta in self._routes(node, maintenance):
            try:
                async with asyncio.timeout(self.timeout):
                    try:
                        return await fn(self._channel(endpoint, maintenance), meta)
                    except (StreamTerminatedError, ProtocolError, ConnectionResetError):
                        # A cached connection the server dropped (restart, API down): one
                        # fresh connection tells refused from rejected from working again.
                        self._drop_channel(endpoint, maintenance)
                        return await fn(self._channel(endpoint, maintenance), meta)
            except (ssl.SSLError, TimeoutError) as exc:
                log.debug("talos %s via %s failed", node, endpoint, exc_info=True)
                raise self._error(exc, endpoint, node) from exc
            except OSError as exc:  # the endpoint itself cannot be reached: try the next
                log.debug("talos %s via %s failed", node, endpoint, exc_info=True)
                last = self._error(exc, endpoint, node)
            except (GRPCError, StreamTerminatedError, ProtocolError) as exc:
                log.debug("talos %s via %s failed", node, endpoint, exc_info=True)
                raise self._error(exc, endpoint, node) from exc
        assert last is not None
        raise last

    @staticmethod
    def _first(resp: Any, node: str | None) -> Any:
        if not resp.messages:
            raise BackendError(f"{node or 'endpoint'}: empty response")
        msg = _cleaned(resp.messages[0])
        if msg.HasField("metadata") and msg.metadata.error:
            raise BackendError(f"{node or msg.metadata.hostname}: {msg.metadata.error}")
        return msg

    def _allowed(self, method: str) -> None:
        """Every RPC passes here: a read-only client sends only reads, by method name."""
        if self.read_only and method not in READ_METHODS:
            raise ReadOnlyError(f"talos {method}")

    async def _unary(
        self, node: str | None, service: str, method: str, req: Any, *, maintenance: bool = False
    ) -> Any:
        self._allowed(method)

        async def go(ch: Channel, meta: dict[str, str]) -> Any:
            stub = (
                storage_grpc.StorageServiceStub(ch)
                if service == "storage"
                else machine_grpc.MachineServiceStub(ch)
            )
            return await getattr(stub, method)(req, metadata=meta, timeout=self.timeout)

        return self._first(await self._call(node, maintenance, go), node)

    async def _stream(self, node: str | None, method: str, req: Any) -> AsyncIterator[bytes]:
        """Chunks of a server stream of common.Data (whole stream bounded by the timeout)."""
        self._allowed(method)

        async def go(ch: Channel, meta: dict[str, str]) -> list[bytes]:
            stub = machine_grpc.MachineServiceStub(ch)
            out: list[bytes] = []
            async with getattr(stub, method).open(metadata=meta, timeout=self.timeout) as st:
                await st.send_message(req, end=True)
                async for data in st:
                    if data.HasField("metadata") and data.metadata.error:
                        raise BackendError(f"{node}: {data.metadata.error}")
                    out.append(data.bytes)
            return out

        for chunk in await self._call(node, False, go):
            yield chunk

    def _w(self, op: str) -> _Writer:
        if self._writer is None:
            raise ReadOnlyError(f"talos {op}")
        return self._writer

    # -- reads -----------------------------------------------------------------------------

    async def version(self, node: str | None = None, *, maintenance: bool = False) -> TalosVersion:
        m = await self._unary(
            node, "machine", "Version", empty_pb2.Empty(), maintenance=maintenance
        )
        return TalosVersion(
            m.version.tag,
            m.version.sha,
            m.version.arch,
            m.version.os,
            m.platform.name,
            m.platform.mode,
        )

    async def hostname(self, node: str | None = None) -> str:
        return (await self._unary(node, "machine", "Hostname", empty_pb2.Empty())).hostname

    async def services(self, node: str | None = None) -> tuple[TalosService, ...]:
        m = await self._unary(node, "machine", "ServiceList", empty_pb2.Empty())
        return tuple(
            TalosService(
                id=s.id,
                state=s.state,
                healthy=None if s.health.unknown else s.health.healthy,
                message=s.health.last_message,
            )
            for s in m.services
        )

    async def memory(self, node: str | None = None) -> TalosMemory:
        mi = (await self._unary(node, "machine", "Memory", empty_pb2.Empty())).meminfo
        return TalosMemory(mi.memtotal * 1024, mi.memfree * 1024, mi.memavailable * 1024)

    async def load_avg(self, node: str | None = None) -> tuple[float, float, float]:
        m = await self._unary(node, "machine", "LoadAvg", empty_pb2.Empty())
        return (m.load1, m.load5, m.load15)

    async def system_stat(self, node: str | None = None) -> TalosSystemStat:
        m = await self._unary(node, "machine", "SystemStat", empty_pb2.Empty())
        t = m.cpu_total
        busy = t.user + t.nice + t.system + t.irq + t.soft_irq + t.steal
        return TalosSystemStat(m.boot_time, len(m.cpu), busy, busy + t.idle + t.iowait)

    async def etcd_members(self, node: str | None = None) -> tuple[EtcdMember, ...]:
        req = machine_pb2.EtcdMemberListRequest()
        m = await self._unary(node, "machine", "EtcdMemberList", req)
        return tuple(
            EtcdMember(id=e.id, hostname=e.hostname, is_learner=e.is_learner) for e in m.members
        )

    async def etcd_health(self, node: str) -> tuple[EtcdMember, ...]:
        """The members as `node` lists them, each with its health and the leader (every
        member asked for its own status, as `talosctl etcd status` does)."""
        return await self._etcd_view(node)

    async def etcd_status(self, node: str | None = None) -> TalosEtcdStatus:
        s = (await self._unary(node, "machine", "EtcdStatus", empty_pb2.Empty())).member_status
        return TalosEtcdStatus(
            s.member_id, s.leader, s.db_size, s.raft_index, s.is_learner, tuple(s.errors)
        )

    async def disks(
        self, node: str | None = None, *, maintenance: bool = False
    ) -> tuple[TalosDisk, ...]:
        m = await self._unary(node, "storage", "Disks", empty_pb2.Empty(), maintenance=maintenance)
        return tuple(
            TalosDisk(d.device_name, d.size, d.model, d.serial, d.system_disk) for d in m.disks
        )

    def logs(
        self, node: str | None, service: str, tail_lines: int = -1, *, kubernetes: bool = False
    ) -> AsyncIterator[bytes]:
        """Raw log chunks of a Talos service (namespace system) or a CRI container."""
        req = machine_pb2.LogsRequest(
            namespace="k8s.io" if kubernetes else "system",
            id=service,
            driver=common_pb2.CRI if kubernetes else common_pb2.CONTAINERD,
            tail_lines=tail_lines,
        )
        return self._stream(node, "Logs", req)

    async def logs_text(self, node: str | None, service: str, tail_lines: int = -1) -> str:
        chunks = [c async for c in self.logs(node, service, tail_lines)]
        return b"".join(chunks).decode("utf-8", "replace")

    def dmesg(self, node: str | None = None) -> AsyncIterator[bytes]:
        return self._stream(node, "Dmesg", machine_pb2.DmesgRequest())

    async def dmesg_text(self, node: str | None = None) -> str:
        lines = [c.decode("utf-8", "replace").rstrip("\n") async for c in self.dmesg(node)]
        return "\n".join(lines)

    async def machine(
        self,
        node: str,
        *,
        timeout: float | None = None,
        etcd: Callable[[str], Awaitable[tuple[EtcdMember, ...]]] | None = None,
    ) -> TalosMachine:
        """Everything the console shows about one machine, gathered concurrently.

        Bounded as a whole by `timeout` (default: three call timeouts); a machine that
        does not answer in time is reported unreachable rather than raised.
        """
        limit = timeout if timeout is not None else 3 * self.timeout
        try:
            async with asyncio.timeout(limit):
                return await self._machine(node, etcd or self._etcd_view)
        except TimeoutError:
            reason = f"{node}: timeout after {limit:g}s"
            return TalosMachine(node=node, stage="unreachable", error=reason)

    async def _machine(
        self, node: str, etcd: Callable[[str], Awaitable[tuple[EtcdMember, ...]]]
    ) -> TalosMachine:
        # Version tells a running machine from one that is not; asked beside the dynamic
        # reads, not before them, a running machine costs one round trip, not two (at
        # 500 nodes the sweep's wall time). A machine that is not running fails them all.
        first = await asyncio.gather(
            self.version(node),
            self.services(node),
            self.memory(node),
            self.load_avg(node),
            return_exceptions=True,
        )
        version, dynamic = first[0], first[1:]
        if isinstance(version, BackendError):
            return await self._not_running(node, version)
        if isinstance(version, BaseException):
            raise version
        facts = await self._static_facts(node, version.tag)
        reads = (*dynamic, *facts)
        errors = [r.reason for r in reads if isinstance(r, BackendError)]
        for r in reads:
            if isinstance(r, BaseException) and not isinstance(r, BackendError):
                raise r
        services, memory, load = _value(dynamic[0]), _value(dynamic[1]), _value(dynamic[2])
        hostname, stat, disks = _value(facts[0]), _value(facts[1]), _value(facts[2])
        members: tuple[EtcdMember, ...] = ()
        if services and any(s.id == "etcd" for s in services):
            try:
                members = await etcd(node)
            except BackendError as exc:
                errors.append(exc.reason)
        return TalosMachine(
            node=node,
            hostname=hostname or "",
            version=version.tag,
            stage="running",
            services=services or (),
            memory_total=memory.total if memory else 0,
            memory_used=memory.used if memory else 0,
            load1=load[0] if load else 0.0,
            cpu_count=stat.cpu_count if stat else 0,
            disks=tuple(d.device for d in disks or ()),
            etcd_members=members,
            error=errors[0] if errors else "",
        )

    async def _static_facts(self, node: str, version: str) -> StaticFacts:
        """(hostname, system stat, disks), re-read after STATIC_TTL or a version change.
        A part that fails comes back as its BackendError and is not cached."""
        cached = self._static.get(node)
        if (
            cached is not None
            and cached[1] == version
            and time.monotonic() - cached[0] < STATIC_TTL
        ):
            return cached[2]
        facts: StaticFacts = await asyncio.gather(
            self.hostname(node),
            self.system_stat(node),
            self.disks(node),
            return_exceptions=True,
        )
        for r in facts:
            if isinstance(r, BaseException) and not isinstance(r, BackendError):
                raise r
        if not any(isinstance(r, BaseException) for r in facts):
            self._static[node] = (time.monotonic(), version, facts)
        return facts

    async def _etcd_view(self, node: str) -> tuple[EtcdMember, ...]:
        """The member list as `node` sees it, each member's health from its own EtcdStatus
        (as `talosctl etcd status` does): a member that cannot answer is unhealthy."""
        listing = await self._unary(
            node, "machine", "EtcdMemberList", machine_pb2.EtcdMemberListRequest()
        )
        members = list(listing.members)

        def address(m: Any) -> str:
            for url in list(m.client_urls) + list(m.peer_urls):
                host = url.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
                if host:
                    return host
            return m.hostname

        statuses = await asyncio.gather(
            *(self.etcd_status(address(m)) for m in members), return_exceptions=True
        )
        leader = next(
            (st.leader for st in statuses if isinstance(st, TalosEtcdStatus) and st.leader), 0
        )
        out = []
        for m, st in zip(members, statuses, strict=True):
            if isinstance(st, TalosEtcdStatus):
                healthy, errors, db_size = not st.errors, st.errors, st.db_size
            elif isinstance(st, BackendError):
                healthy, errors, db_size = False, (st.reason,), 0
            else:
                raise st
            out.append(
                EtcdMember(
                    m.id,
                    m.hostname,
                    m.is_learner,
                    healthy=healthy,
                    leader=m.id == leader,
                    db_size=db_size,
                    errors=errors,
                )
            )
        return tuple(out)

    async def _not_running(self, node: str, exc: BackendError) -> TalosMachine:
        """A machine the secure path cannot reach: in maintenance mode, or unreachable.

        Maintenance mode serves Disks and ApplyConfiguration to a caller without a client
        certificate, and nothing that tells its version (Version needs the admin role,
        which such a caller never has: Unimplemented). A machine that lists its disks
        over the insecure path is in maintenance mode. Through apid the configured path
        fails with Unavailable; dialled directly, with the TLS verification of the
        maintenance server's self-signed certificate.
        """
        if exc.code in {"UNAVAILABLE", "TLS"}:
            try:
                disks = await self.disks(node, maintenance=True)
            except BackendError:
                log.debug("maintenance probe of %s failed", node, exc_info=True)
            else:
                return TalosMachine(
                    node=node,
                    stage="maintenance",
                    maintenance=True,
                    disks=tuple(d.device for d in disks),
                )
        return TalosMachine(node=node, stage="unreachable", error=exc.reason)

    async def machines(
        self,
        nodes: Iterable[str] | None = None,
        *,
        timeout: float | None = None,
        on_answer: Callable[[TalosMachine], None] | None = None,
    ) -> tuple[TalosMachine, ...]:
        """machine() for each node (default: the context's nodes), concurrently; each is
        bounded by `timeout`, so one slow machine cannot hold up the others. `on_answer`
        hears each machine as it answers, so a caller that stops waiting keeps those."""
        targets = list(nodes if nodes is not None else self.context.nodes)
        gate = asyncio.Semaphore(MACHINES_AT_ONCE)
        # etcd membership is cluster-wide: ask the first control plane that answers, once
        # per sweep, instead of every member asking every member for its status.
        view: asyncio.Task[tuple[EtcdMember, ...]] | None = None

        async def shared_etcd(node: str) -> tuple[EtcdMember, ...]:
            nonlocal view
            if view is None or (view.done() and (view.cancelled() or view.exception())):
                view = asyncio.ensure_future(self._etcd_view(node))
            return await asyncio.shield(view)

        async def one(node: str) -> TalosMachine:
            async with gate:  # outside machine()'s timeout: waiting is not the node's fault
                answer = await self.machine(node, timeout=timeout, etcd=shared_etcd)
            if on_answer is not None:
                on_answer(answer)
            return answer

        return tuple(await asyncio.gather(*(one(n) for n in targets)))

    # -- writes ----------------------------------------------------------------------------

    async def apply_configuration(
        self,
        node: str,
        data: bytes,
        mode: str = "auto",
        *,
        maintenance: bool = False,
        dry_run: bool = False,
        try_timeout: float | None = None,
    ) -> ApplyResult:
        """Apply a machine config. In maintenance mode (no client certificate) Talos
        takes only auto, reboot and try; `try_timeout` is how long a `try` stays."""
        return await self._w("apply-config").apply_configuration(
            node, data, mode, maintenance, dry_run, try_timeout
        )

    async def bootstrap(self, node: str) -> None:
        await self._w("bootstrap").unary(node, "Bootstrap", machine_pb2.BootstrapRequest())

    async def reset(
        self,
        node: str,
        *,
        graceful: bool = True,
        reboot: bool = False,
        wipe: str = "all",
        partitions: Iterable[tuple[str, bool]] = (),
        user_disks: Iterable[str] = (),
    ) -> None:
        """Talos answers once the input is checked and resets afterwards; `reboot=False`
        powers the machine off. `partitions` (label, wipe) limits the system-disk wipe
        (only EPHEMERAL keeps STATE: the machine boots configured)."""
        if wipe not in WIPE_MODES:
            raise BackendError(f"unknown wipe mode {wipe!r}; one of {', '.join(WIPE_MODES)}")
        req = machine_pb2.ResetRequest(
            graceful=graceful,
            reboot=reboot,
            mode=WIPE_MODES[wipe],
            user_disks_to_wipe=list(user_disks),
        )
        for label, wiped in partitions:
            req.system_partitions_to_wipe.add(label=label, wipe=wiped)
        await self._w("reset").unary(node, "Reset", req)

    async def reboot(self, node: str, mode: str = "default") -> None:
        if mode not in REBOOT_MODES:
            raise BackendError(f"unknown reboot mode {mode!r}; one of {', '.join(REBOOT_MODES)}")
        await self._w("reboot").unary(
            node, "Reboot", machine_pb2.RebootRequest(mode=REBOOT_MODES[mode])
        )

    async def shutdown(self, node: str, *, force: bool = False) -> None:
        await self._w("shutdown").unary(node, "Shutdown", machine_pb2.ShutdownRequest(force=force))

    async def etcd_remove_member(self, node: str, member_id: int) -> None:
        req = machine_pb2.EtcdRemoveMemberByIDRequest(member_id=member_id)
        await self._w("etcd remove-member").unary(node, "EtcdRemoveMemberByID", req)

    async def etcd_forfeit_leadership(self, node: str) -> str:
        """Hand etcd leadership away from `node`; the new leader's name ("" when `node`
        was not the leader)."""
        req = machine_pb2.EtcdForfeitLeadershipRequest()
        msg = await self._w("etcd forfeit-leadership").unary(node, "EtcdForfeitLeadership", req)
        return str(msg.member)

    async def etcd_leave_cluster(self, node: str) -> None:
        req = machine_pb2.EtcdLeaveClusterRequest()
        await self._w("etcd leave").unary(node, "EtcdLeaveCluster", req)

    async def service_restart(self, node: str, service_id: str) -> str:
        req = machine_pb2.ServiceRestartRequest(id=service_id)
        return (await self._w("service restart").unary(node, "ServiceRestart", req)).resp

    async def kubeconfig(self, node: str) -> bytes:
        """The admin kubeconfig: Talos streams a tar.gz holding one file, `kubeconfig`."""
        raw = await self._w("kubeconfig").kubeconfig(node)
        try:
            with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
                for member in tar.getmembers():
                    if member.isfile() and member.name.rsplit("/", 1)[-1] == "kubeconfig":
                        fh = tar.extractfile(member)
                        if fh is not None:
                            return fh.read()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise BackendError(f"{node}: kubeconfig stream is not a tar.gz") from exc
        raise BackendError(f"{node}: kubeconfig stream holds no kubeconfig file")


def _one_line(message: str) -> str:
    """A Talos error message on one line. Talos's texts span lines: go-multierror lists
    each validation problem on a line of its own after '1 error occurred:', and a change
    that cannot apply live appends its diff; the problems are kept, the diff is not."""
    kept: list[str] = []
    for line in message.splitlines():
        if line.strip() == "diff:":
            break
        if line.strip():
            kept.append(line.strip().removeprefix("* "))
    return " ".join(kept)


def _cleaned(message: Any) -> Any:
    """Every string field of a response (nested and repeated too) made safe, in place: a
    machine's hostname, service messages and errors are untrusted text."""
    for field, value in message.ListFields():
        repeated = _repeated(field)
        if field.type == field.TYPE_STRING:
            if repeated:
                value[:] = [clean(v) for v in value]
            else:
                setattr(message, field.name, clean(value))
        elif field.type == field.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                continue
            for item in value if repeated else (value,):
                _cleaned(item)
    return message


def _repeated(field: Any) -> bool:
    """protobuf 7 has `is_repeated`; older releases only `label`."""
    flag = getattr(field, "is_repeated", None)
    return bool(flag) if flag is not None else field.label == field.LABEL_REPEATED
