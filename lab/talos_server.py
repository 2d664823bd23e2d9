"""The lab's Talos apid: the machine API over gRPC with Ed25519 mutual TLS, on loopback.

One endpoint reaches every machine of the world, as a real apid does: the `node`
metadata key proxies one-to-one (reply passed through verbatim), the deprecated `nodes`
key fans out and tags each reply element with `common.Metadata{hostname}` (a failed node
yields an element carrying only the error metadata). No metadata: the endpoint's own
machine (`local_node`) answers.

Roles come from the client certificate's Subject Organization (os:admin, os:operator,
os:reader) and are checked per method as Talos does; a denial is PermissionDenied
"not authorized".

Maintenance mode is served by a second listener: TLS with the apid certificate but no
client-certificate requirement (talosctl --insecure does not verify it either). As Talos's
maintenance server does, it gives every caller the reader role at most, serves Disks and
ApplyConfiguration (AUTO, REBOOT and TRY only), answers the admin-only calls it has
(Version, Reset, Upgrade) with Unimplemented "API is not implemented in maintenance mode"
and every other MachineService method with Unimplemented "method X not implemented"; the
mTLS listener refuses machines in maintenance with Unavailable, as apid's proxy would fail
its TLS handshake with them. Two listeners, not a per-call decision, because the real
difference is at the TLS layer (client cert or none).

Each machine also answers at its own address, as a real one does on <ip>:50000: a
loopback address per machine (`World.talos.lab_address`, which the Proxmox twin's guest
agent reports) with one insecure listener each, on the shared `machine_port`. There the
machine answers for itself only (`node` metadata routes nothing), so a maintenance
machine is found and configured as talosctl --insecure does it; the shared maintenance
listener, which routes on `node`, stays for the console's collector. A machine that takes
its config's static address after the install answers at a new own address; the one it
left answers for nobody (Unavailable). The Talos CA is the tree's OS CA when the lab opens
its secret bundle (see `dapper.lab.cluster_identity`).

A method path the twin does not serve is answered as Go gRPC answers it: UNIMPLEMENTED
with a gRPC content-type (grpclib's own answer has none, which clients report as a
protocol error instead of the status).

A machine whose VM is stopped (or still booting) fails like a proxied dial: Unavailable.
The fault `api-down:talos` closes every listener (connection refused) until cleared;
`api-slow:talos[:s]` delays every call.

The server runs in its own thread with its own asyncio loop; `start()` returns once the
ports are bound, `stop()` closes them and joins the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dapper.backends.clients.talos_pb import (
    common_pb2,
    machine_grpc,
    machine_pb2,
    rpc_status_pb2,
    storage_grpc,
    storage_pb2,
)
from dapper.backends.clients.talosconfig import join_endpoint, render_talosconfig
from dapper.lab import talos_facts as facts
from dapper.lab.https_server import LabServer
from dapper.lab.pki import Pki, server_ssl_context
from dapper.lab.talos_config import ConfigError
from dapper.lab.world import EtcdError, Machine, World, WorldError
from dapper.lab.world.talos import cluster_machine_config
from google.protobuf import empty_pb2
from grpclib.const import Cardinality, Status
from grpclib.const import Handler as GrpcHandler
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream

log = logging.getLogger("dapper.lab.talos")

ADMIN = frozenset({"os:admin"})
OPERATE = frozenset({"os:admin", "os:operator"})
READ = frozenset({"os:admin", "os:operator", "os:reader"})

# Minimum built-in roles per method (protocols.md §1.4).
METHOD_ROLES: dict[str, frozenset[str]] = {
    "Version": READ,
    "Hostname": READ,
    "ServiceList": READ,
    "Memory": READ,
    "SystemStat": READ,
    "LoadAvg": READ,
    "EtcdMemberList": READ,
    "EtcdStatus": READ,
    "Disks": READ,
    "Logs": READ,
    "Dmesg": READ,
    "ServiceRestart": OPERATE,
    "Reboot": OPERATE,
    "Shutdown": OPERATE,
    "EtcdRemoveMemberByID": ADMIN,
    "EtcdLeaveCluster": ADMIN,
    "EtcdForfeitLeadership": ADMIN,
    "Bootstrap": ADMIN,
    "ApplyConfiguration": ADMIN,
    "Reset": ADMIN,
    "Kubeconfig": ADMIN,
}
WRITES = frozenset(
    {
        "ServiceRestart",
        "Reboot",
        "Shutdown",
        "EtcdRemoveMemberByID",
        "EtcdLeaveCluster",
        "EtcdForfeitLeadership",
        "Bootstrap",
        "ApplyConfiguration",
        "Reset",
    }
)
# What Talos's maintenance server serves to a caller without a client certificate.
MAINTENANCE_METHODS = frozenset({"ApplyConfiguration", "Disks"})
# Implemented there but behind assertAdminRole, which an insecure caller never passes.
MAINTENANCE_ADMIN_ONLY = frozenset({"Version", "Reset", "Upgrade", "MetaWrite", "MetaDelete"})
NOT_IN_MAINTENANCE = "API is not implemented in maintenance mode"
APPLY_MODES_BY_NAME = {
    "reboot": machine_pb2.ApplyConfigurationRequest.REBOOT,
    "auto": machine_pb2.ApplyConfigurationRequest.AUTO,
    "no-reboot": machine_pb2.ApplyConfigurationRequest.NO_REBOOT,
    "staged": machine_pb2.ApplyConfigurationRequest.STAGED,
    "try": machine_pb2.ApplyConfigurationRequest.TRY,
}
APPLY_MODE_NAMES = {
    machine_pb2.ApplyConfigurationRequest.REBOOT: "reboot",
    machine_pb2.ApplyConfigurationRequest.AUTO: "auto",
    machine_pb2.ApplyConfigurationRequest.NO_REBOOT: "no-reboot",
    machine_pb2.ApplyConfigurationRequest.STAGED: "staged",
    machine_pb2.ApplyConfigurationRequest.TRY: "try",
}
_WORLD_CODES = {
    404: Status.NOT_FOUND,
    409: Status.ALREADY_EXISTS,
    412: Status.FAILED_PRECONDITION,
    400: Status.INVALID_ARGUMENT,
    501: Status.UNIMPLEMENTED,
}
# EtcdError kinds: the gRPC code Talos sends (a plain Go error reaches the client as Unknown).
_ETCD_CODES = {
    "notfound": Status.NOT_FOUND,
    "exists": Status.ALREADY_EXISTS,
    "precondition": Status.FAILED_PRECONDITION,
    "unknown": Status.UNKNOWN,
}


def _world_status(exc: WorldError) -> Status:
    if isinstance(exc, EtcdError):
        return _ETCD_CODES.get(exc.kind, Status.UNKNOWN)
    return _WORLD_CODES.get(exc.code, Status.INTERNAL)


Handler = Callable[[Machine, Any], Any]


@dataclass(frozen=True)
class _Call:
    method: str
    identity: str
    targets: tuple[str | None, ...]  # None: the endpoint's own machine
    fan_out: bool  # legacy `nodes`: tag each reply with its hostname
    maintenance: bool
    own_address: str | None = None  # a machine's own listener: whoever holds the address


class _MethodTable(dict[str, GrpcHandler]):
    """The server's method table: a path it does not serve gets a handler that answers
    UNIMPLEMENTED the way Go gRPC does, as a proper gRPC status."""

    def get(self, path: str, default: Any = None) -> GrpcHandler:  # type: ignore[override]
        found = super().get(path)
        if found is not None:
            return found
        service, _, method = path.lstrip("/").partition("/")
        served = {p.lstrip("/").partition("/")[0] for p in self}
        text = (
            f"unknown method {method} for service {service}"
            if service in served
            else f"unknown service {service}"
        )

        async def unimplemented(stream: Stream) -> None:
            raise GRPCError(Status.UNIMPLEMENTED, text)

        return GrpcHandler(unimplemented, Cardinality.UNARY_UNARY, empty_pb2.Empty, empty_pb2.Empty)


class _Server(Server):
    """grpclib's Server, but close() also drops open connections (apid going away does)."""

    def __init__(self, handlers: list[Any]) -> None:
        super().__init__(handlers)
        self._mapping = _MethodTable(self._mapping)
        self._protocols: weakref.WeakSet[Any] = weakref.WeakSet()
        self.transports: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()

    def _protocol_factory(self) -> Any:
        proto = super()._protocol_factory()
        made = proto.connection_made

        def connection_made(transport: asyncio.BaseTransport) -> None:
            self.transports.add(transport)
            made(transport)

        proto.connection_made = connection_made
        self._protocols.add(proto)
        return proto

    def close(self) -> None:
        super().close()
        for proto in list(self._protocols):
            processor = getattr(proto, "processor", None)
            if processor is not None:
                processor.close("apid stopped")

    def abort_connections(self) -> None:
        """Drop what a polite close left half-open (TLS shutdown waiting on the peer)."""
        for transport in list(self.transports):
            transport.abort()


def _go_quote(text: str) -> str:
    """Go's %q for the printable text the lab deals in."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _peer_subject(stream: Stream) -> tuple[tuple[str, ...], str]:
    """(organizations, common name) of the verified client certificate."""
    cert = stream.peer.cert() or {}
    orgs: list[str] = []
    cn = ""
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "organizationName":
                orgs.append(value)
            elif key == "commonName":
                cn = value
    return tuple(orgs), cn


class TalosLabServer(LabServer):
    """apid for every machine of a World, on two loopback ports (mTLS and maintenance)."""

    api_name = "talos"

    def __init__(
        self,
        world: World,
        pki: Pki,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        maintenance_port: int = 0,
        local_node: str | None = None,
        kubeconfig: Callable[[], bytes] | None = None,
    ) -> None:
        super().__init__(world, pki, host=host, port=port)
        self.maintenance_port = maintenance_port
        self.local_node = local_node or next(
            (ip for ip, m in world.machines.items() if m.role == "controlplane"),
            next(iter(world.machines), ""),
        )
        self._kubeconfig = kubeconfig
        with world.lock:  # the cluster's machines trust this OS CA: a config must carry it
            if not world.cluster_os_ca:
                world.cluster_os_ca = pki.talos_ca.cert_pem.decode()
        hosts = [h for m in world.machines.values() for h in (m.ip, m.hostname)]
        pair = pki.talos_server(hosts)
        self._mtls = server_ssl_context(pair, client_ca_pem=pki.talos_ca.cert_pem, alpn=["h2"])
        self._insecure = server_ssl_context(pair, alpn=["h2"])
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[_Server] = []
        self._stopped = False
        self.machine_port = 0  # one port on every machine's own loopback address
        self._port_hold: socket.socket | None = None  # holds machine_port with no machine
        self._own: dict[str, _Server] = {}  # loopback address -> the listener there
        world.talos.on_new_machine.append(self._machine_appeared)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def maintenance_endpoint(self) -> str:
        return join_endpoint(self.host, self.maintenance_port)

    def start(self) -> TalosLabServer:
        if self._thread is not None:
            raise RuntimeError("talos lab server already started")
        self._stopped = False
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(ready, failure), name="lab-talos", daemon=True
        )
        self._thread.start()
        ready.wait(10)
        if failure:
            self._thread.join(2)
            self._thread = None
            raise failure[0]
        return self

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._close_listeners())
            # connections still in their TLS handshake are tasks of their own: end them
            # too, so their sockets close with the loop
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._stopped = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._thread = None
        self._loop = None
        if self._port_hold is not None:
            self._port_hold.close()
            self._port_hold = None

    def _bind(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self.host, port))
        except OSError:
            sock.close()
            raise
        return sock

    def _machine_appeared(self, machine: Machine) -> None:
        """A new machine (a clone booting) or one at a new address (its config's static
        one): open its own address (called under the world's lock)."""
        loop = self._loop
        if self._stopped or loop is None or not self._servers:
            return
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(self._listen_at(machine.ip), loop)

    def address_of(self, node: str) -> str:
        """host:port where `node` (IP or hostname) answers at its own address."""
        with self.world.lock:
            m = self.world.machine(node)
            return join_endpoint(self.world.talos.lab_address(m), self.machine_port)

    async def _listen_at(self, ip: str) -> None:
        """The machine's own address: what talosctl --insecure dials in maintenance mode.
        The listener answers for whichever machine holds that address at call time."""
        with self.world.lock:
            m = self.world.machines.get(ip)
            if m is None:
                return
            host = self.world.talos.lab_address(m)
        if host in self._own:
            return
        family = socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, self.machine_port))
        except OSError:
            sock.close()
            log.warning("cannot listen at %s:%s for %s", host, self.machine_port, ip)
            return
        self.machine_port = sock.getsockname()[1]
        server = _Server(
            [_MachineService(self, True, pinned=host), _StorageService(self, True, pinned=host)]
        )
        await server.start(sock=sock, ssl=self._insecure)
        self._own[host] = server
        self._servers.append(server)

    async def _listen(self) -> None:
        """Open both listeners (again, after api-down, on the same ports), and one at each
        machine's own address."""
        for maintenance in (False, True):
            sock = self._bind(self.maintenance_port if maintenance else self.port)
            if maintenance:
                self.maintenance_port = sock.getsockname()[1]
            else:
                self.port = sock.getsockname()[1]
            server = _Server(
                [_MachineService(self, maintenance), _StorageService(self, maintenance)]
            )
            await server.start(sock=sock, ssl=self._insecure if maintenance else self._mtls)
            self._servers.append(server)
        with self.world.lock:
            ips = list(self.world.machines)
        for ip in ips:
            await self._listen_at(ip)
        if not self.machine_port:
            self._hold_machine_port()

    def _hold_machine_port(self) -> None:
        """No machine yet (a bare host): pick the machines' port now, so the configs
        written at start name it, and hold it on the /24's unused .1 address."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((f"{self.world.loopback_prefix}1", 0))
        self.machine_port = sock.getsockname()[1]
        self._port_hold = sock

    @property
    def listening(self) -> bool:
        return bool(self._servers)

    async def _close_listeners(self) -> None:
        servers = list(self._servers)
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()
        await asyncio.sleep(0.01)  # let closing transports finish their TLS shutdown
        for server in servers:
            server.abort_connections()
        await asyncio.sleep(0)
        self._servers = []
        self._own = {}

    def api_down_changed(self, down: bool) -> None:
        loop = self._loop
        if self._stopped or loop is None:
            return

        async def toggle() -> None:
            if down and self._servers:
                await self._close_listeners()
            elif not down and not self._servers:
                await self._listen()

        with contextlib.suppress(RuntimeError):  # the loop is already closed
            asyncio.run_coroutine_threadsafe(toggle(), loop)

    def talosconfig(
        self, role: str = "os:admin", *, context: str = "lab", nodes: list[str] | None = None
    ) -> str:
        """A talosconfig text for a fresh client certificate carrying `role`."""
        pair = self.pki.talos_client(role)
        return render_talosconfig(
            context,
            [self.endpoint],
            nodes if nodes is not None else list(self.world.machines),
            self.pki.talos_ca.cert_pem,
            pair.cert_pem,
            pair.key_pem,
        )

    def machine_config(self, hostname: str, role: str = "worker", **kw: Any) -> bytes:
        """A valid machine config for this lab's cluster (its OS CA and tokens)."""
        kw.setdefault("os_ca_pem", self.world.cluster_os_ca)
        kw.setdefault("token", self.world.cluster_token)
        kw.setdefault("machine_token", self.world.machine_token)
        return cluster_machine_config(hostname, role, **kw)

    def kubeconfig_bytes(self) -> bytes:
        if self._kubeconfig is not None:
            return self._kubeconfig()
        server = self.world.endpoints.get("kubernetes", "https://10.100.0.40:6443")
        return facts.default_kubeconfig(server)

    # -- dispatch --------------------------------------------------------------------------

    async def _admit(
        self, stream: Stream, method: str, maintenance: bool, pinned: str | None = None
    ) -> _Call:
        """Faults, roles and targets of one call; raises the gRPC error the caller sees."""
        if self.world.api_down("talos"):
            raise GRPCError(Status.UNAVAILABLE, "apid is not running")
        delay = self.world.api_delay("talos")
        if delay:
            await asyncio.sleep(delay)
        orgs, cn = _peer_subject(stream)
        if maintenance:
            if method in MAINTENANCE_ADMIN_ONLY:
                raise GRPCError(Status.UNIMPLEMENTED, NOT_IN_MAINTENANCE)
            if method not in MAINTENANCE_METHODS:
                raise GRPCError(Status.UNIMPLEMENTED, f"method {method} not implemented")
        elif not set(orgs) & METHOD_ROLES[method]:
            raise GRPCError(Status.PERMISSION_DENIED, "not authorized")
        md = stream.metadata
        node = md.getall("node", []) if md is not None else []
        nodes = md.getall("nodes", []) if md is not None else []
        if len(node) > 1:
            raise GRPCError(Status.INVALID_ARGUMENT, "node metadata must be single-valued")
        listed = tuple(n.strip() for v in nodes for n in str(v).split(",") if n.strip())
        if node:
            targets: tuple[str | None, ...] = (str(node[0]),)
        elif listed:
            targets = listed
        else:
            targets = (None,)
        identity = cn or ",".join(orgs) or ("maintenance" if maintenance else "anonymous")
        if pinned is not None:  # a machine's own address: it answers for itself only
            return _Call(method, identity, (None,), False, maintenance, own_address=pinned)
        return _Call(method, identity, targets, bool(listed) and not node, maintenance)

    def _resolve(self, call: _Call, target: str | None) -> Machine:
        if call.own_address is not None:
            held = self.world.talos.machine_at(call.own_address)
            if held is None:  # its machine moved to another address, or is gone
                raise GRPCError(
                    Status.UNAVAILABLE,
                    f"connection error: dial tcp {join_endpoint(call.own_address, 50000)}: "
                    "connect: no route to host",
                )
            return held
        if target is None and call.maintenance:
            waiting = [m for m in self.world.machines.values() if m.maintenance]
            if len(waiting) != 1:
                raise GRPCError(
                    Status.INVALID_ARGUMENT, "maintenance endpoint: name the machine in `node`"
                )
            return waiting[0]
        name = target or self.local_node
        try:
            return self.world.machine(name)
        except WorldError:
            raise GRPCError(
                Status.UNAVAILABLE,
                f"connection error: dial tcp {join_endpoint(name, 50000)}: no such host",
            ) from None

    def _on_machine(self, call: _Call, target: str | None, fn: Handler, req: Any) -> Any:
        """Run `fn` against one machine under the world lock, as its own apid would."""
        with self.world.lock:
            m = self._resolve(call, target)
            addr = join_endpoint(m.ip, 50000)
            if not self.world.reachable(m):
                why = "is not running"
                if m.disk_failed:
                    why = "does not boot: its system disk failed"
                elif m.booted and not m.network:
                    why = "came up without its network: its config selects no NIC of its VM"
                raise GRPCError(
                    Status.UNAVAILABLE,
                    f"connection error: dial tcp {addr}: connect: no route to host "
                    f"({m.hostname} {why})",
                )
            if call.maintenance and not m.maintenance:
                raise GRPCError(
                    Status.UNAVAILABLE,
                    f"{addr}: tls: certificate required ({m.hostname} is not in maintenance mode)",
                )
            if not call.maintenance and m.maintenance:
                raise GRPCError(
                    Status.UNAVAILABLE,
                    f"connection error: {addr}: authentication handshake failed "
                    f"({m.hostname} is in maintenance mode)",
                )
            if not call.maintenance and not m.joins:
                raise GRPCError(
                    Status.UNAVAILABLE,
                    f"connection error: {addr}: authentication handshake failed: tls: failed "
                    "to verify certificate: x509: certificate signed by unknown authority "
                    f"({m.hostname} carries another cluster's OS CA)",
                )
            try:
                result = fn(m, req)
            except WorldError as exc:
                raise GRPCError(_world_status(exc), str(exc)) from None
            if call.method in WRITES:
                self.world.record_write("talos", f"{call.method} {m.ip}", call.identity)
            return result

    @staticmethod
    def _error_metadata(target: str | None, exc: GRPCError) -> common_pb2.Metadata:
        text = exc.message or exc.status.name
        return common_pb2.Metadata(
            hostname=target or "",
            error=text,
            status=rpc_status_pb2.Status(code=exc.status.value, message=text),
        )

    async def unary(
        self,
        stream: Stream,
        method: str,
        maintenance: bool,
        fn: Handler,
        response: type,
        *,
        pinned: str | None = None,
    ) -> None:
        req = await stream.recv_message()
        call = await self._admit(stream, method, maintenance, pinned)
        resp = response()
        for target in call.targets:
            try:
                msg = self._on_machine(call, target, fn, req)
            except GRPCError as exc:
                if not call.fan_out:
                    raise
                resp.messages.add().metadata.CopyFrom(self._error_metadata(target, exc))
                continue
            element = resp.messages.add()
            element.CopyFrom(msg)
            if call.fan_out:
                element.metadata.hostname = target or ""
        await stream.send_message(resp)

    async def data_stream(
        self, stream: Stream, method: str, fn: Callable[[Machine, Any], list[bytes]]
    ) -> None:
        req = await stream.recv_message()
        call = await self._admit(stream, method, False)
        for target in call.targets:
            try:
                chunks = self._on_machine(call, target, fn, req)
            except GRPCError as exc:
                if not call.fan_out:
                    raise
                meta = self._error_metadata(target, exc)
                await stream.send_message(common_pb2.Data(metadata=meta))
                continue
            for chunk in chunks:
                data = common_pb2.Data(bytes=chunk)
                if call.fan_out:
                    data.metadata.hostname = target or ""
                await stream.send_message(data)

    # -- per-machine behaviour (called under the world lock) -------------------------------

    def _vm(self, m: Machine) -> Any:
        return self.world.vms.get(m.vmid)

    def _member(self, m: Machine):
        return next((e for e in self.world.etcd.values() if e.ip == m.ip), None)

    @staticmethod
    def _require_controlplane(m: Machine, api: str) -> None:
        """Talos's checkControlplane: the etcd and kubeconfig calls exist on control planes."""
        if m.role != "controlplane":
            raise GRPCError(Status.UNIMPLEMENTED, f"{api} is only available on control plane nodes")

    def etcd_members(self, m: Machine, _req: Any) -> machine_pb2.EtcdMembers:
        self._require_controlplane(m, "member list")
        cluster = self.world.talos.cluster_of(m)
        if not self.world.talos.members(cluster):
            raise GRPCError(
                Status.UNKNOWN, "failed to create etcd client: no controlplane endpoints"
            )
        return facts.etcd_members(self.world.talos.members(cluster))

    def etcd_status(self, m: Machine, _req: Any) -> machine_pb2.EtcdStatus:
        self._require_controlplane(m, "etcd status")
        me = self._member(m)
        if me is None or m.etcd_service != "Running":
            raise GRPCError(
                Status.UNKNOWN,
                "failed to query etcd status: dial tcp 127.0.0.1:2379: connect: connection refused",
            )
        return facts.etcd_status(me, self.world.talos.leader(me.cluster))

    def etcd_remove(self, m: Machine, req: Any) -> machine_pb2.EtcdRemoveMemberByID:
        self._require_controlplane(m, "etcd remove member")
        self.world.etcd_remove_member(req.member_id)
        return machine_pb2.EtcdRemoveMemberByID()

    def etcd_leave(self, m: Machine, _req: Any) -> machine_pb2.EtcdLeaveCluster:
        self._require_controlplane(m, "etcd leave")
        self.world.etcd_leave(m.ip)
        return machine_pb2.EtcdLeaveCluster()

    def etcd_forfeit(self, m: Machine, _req: Any) -> machine_pb2.EtcdForfeitLeadership:
        self._require_controlplane(m, "etcd forfeit leadership")
        return machine_pb2.EtcdForfeitLeadership(member=self.world.etcd_forfeit_leadership(m.ip))

    def apply(self, m: Machine, req: Any) -> machine_pb2.ApplyConfiguration:
        """ApplyConfiguration with Talos's codes: maintenance mode answers a config that
        does not load with a plain error (Unknown) and one that does not validate with
        InvalidArgument 'configuration validation failed: ...'; a configured machine
        answers both, and a change that cannot apply live in NO_REBOOT/TRY, with
        InvalidArgument and the bare text."""
        mode = APPLY_MODE_NAMES.get(req.mode, "auto")
        timeout = req.try_mode_timeout.ToTimedelta().total_seconds() or None
        try:
            out = self.world.talos_apply_config(
                m.ip, bytes(req.data), mode, dry_run=req.dry_run, try_timeout=timeout
            )
        except ConfigError as exc:
            text = str(exc)
            if m.maintenance and exc.stage == "parse":
                raise GRPCError(Status.UNKNOWN, f"failed to parse config: {text}") from None
            if m.maintenance:
                text = f"configuration validation failed: {text}"
            raise GRPCError(Status.INVALID_ARGUMENT, text) from None
        return machine_pb2.ApplyConfiguration(
            mode=APPLY_MODES_BY_NAME[out.mode], mode_details=out.details, warnings=out.warnings
        )

    def service_restart(self, m: Machine, req: Any) -> machine_pb2.ServiceRestart:
        """Talos's APIRestart: a service not defined, or one that does not allow a restart
        through the API (only kubelet and extension services do), is a plain error
        (gRPC Unknown) with Talos's text; a service not running is started instead (and
        only those two may be started)."""
        states = {sid: state for sid, state, _ in m.services()}
        if req.id not in states:
            raise GRPCError(Status.UNKNOWN, f"service {_go_quote(req.id)} not defined")
        if not facts.restartable(req.id):  # not running: a restart is a start, as strict
            operation = "restart" if states[req.id] == "Running" else "start"
            raise GRPCError(
                Status.UNKNOWN,
                f"service {_go_quote(req.id)} doesn't support {operation} operation via API",
            )
        return machine_pb2.ServiceRestart(resp=f"Service {_go_quote(req.id)} restarted")

    def reset(self, m: Machine, req: Any) -> machine_pb2.Reset:
        """Reset checks its input, answers, and runs a moment later (Talos runs the
        sequence in a goroutine); its input errors are plain errors (Unknown)."""
        wipe = {
            machine_pb2.ResetRequest.ALL: "all",
            machine_pb2.ResetRequest.SYSTEM_DISK: "system-disk",
            machine_pb2.ResetRequest.USER_DISKS: "user-disks",
        }[req.mode]
        try:
            self.world.talos_reset(
                m.ip,
                graceful=req.graceful,
                reboot=req.reboot,
                wipe=wipe,
                partitions=tuple((p.label, p.wipe) for p in req.system_partitions_to_wipe),
                user_disks=tuple(req.user_disks_to_wipe),
            )
        except WorldError as exc:
            raise GRPCError(Status.UNKNOWN, str(exc)) from None
        return machine_pb2.Reset(actor_id=f"reset-{m.hostname}")

    def reboot(self, m: Machine, _req: Any) -> machine_pb2.Reboot:
        self.world.talos_reboot(m.ip)
        return machine_pb2.Reboot(actor_id=f"reboot-{m.hostname}")

    def shutdown(self, m: Machine, _req: Any) -> machine_pb2.Shutdown:
        self.world.talos_shutdown(m.ip)
        return machine_pb2.Shutdown(actor_id=f"shutdown-{m.hostname}")

    def bootstrap(self, m: Machine, _req: Any) -> machine_pb2.Bootstrap:
        self.world.talos_bootstrap(m.ip)
        return machine_pb2.Bootstrap()

    def kubeconfig(self, m: Machine, _req: Any) -> list[bytes]:
        self._require_controlplane(m, "kubeconfig")
        blob = facts.kubeconfig_tar(self.kubeconfig_bytes())
        return [blob[i : i + 16384] for i in range(0, len(blob), 16384)]


class _MachineService(machine_grpc.MachineServiceBase):
    """MachineService methods, each a thin mapping onto TalosLabServer's dispatch.
    `pinned`: the own (loopback) address this listener is at; metadata is ignored and
    whichever machine holds that address answers."""

    def __init__(self, srv: TalosLabServer, maintenance: bool, pinned: str | None = None) -> None:
        self._s = srv
        self._m = maintenance
        self._pinned = pinned

    async def _u(self, stream: Stream, method: str, fn: Handler, response: type) -> None:
        await self._s.unary(stream, method, self._m, fn, response, pinned=self._pinned)

    async def _d(self, stream: Stream, method: str, fn: Handler) -> None:
        if self._m:
            raise GRPCError(Status.UNIMPLEMENTED, f"method {method} not implemented")
        await self._s.data_stream(stream, method, fn)

    async def Version(self, stream: Stream) -> None:
        await self._u(
            stream, "Version", lambda m, _r: facts.version(m), machine_pb2.VersionResponse
        )

    async def Hostname(self, stream: Stream) -> None:
        await self._u(
            stream,
            "Hostname",
            lambda m, _r: machine_pb2.Hostname(hostname=m.hostname),
            machine_pb2.HostnameResponse,
        )

    async def ServiceList(self, stream: Stream) -> None:
        await self._u(
            stream, "ServiceList", lambda m, _r: facts.services(m), machine_pb2.ServiceListResponse
        )

    async def ServiceRestart(self, stream: Stream) -> None:
        await self._u(
            stream, "ServiceRestart", self._s.service_restart, machine_pb2.ServiceRestartResponse
        )

    async def Memory(self, stream: Stream) -> None:
        await self._u(
            stream,
            "Memory",
            lambda m, _r: facts.memory(self._s._vm(m), m),
            machine_pb2.MemoryResponse,
        )

    async def SystemStat(self, stream: Stream) -> None:
        await self._u(
            stream,
            "SystemStat",
            lambda m, _r: facts.system_stat(self._s._vm(m), m),
            machine_pb2.SystemStatResponse,
        )

    async def LoadAvg(self, stream: Stream) -> None:
        await self._u(
            stream, "LoadAvg", lambda m, _r: facts.load_avg(m), machine_pb2.LoadAvgResponse
        )

    async def EtcdMemberList(self, stream: Stream) -> None:
        await self._u(
            stream, "EtcdMemberList", self._s.etcd_members, machine_pb2.EtcdMemberListResponse
        )

    async def EtcdStatus(self, stream: Stream) -> None:
        await self._u(stream, "EtcdStatus", self._s.etcd_status, machine_pb2.EtcdStatusResponse)

    async def EtcdRemoveMemberByID(self, stream: Stream) -> None:
        await self._u(
            stream,
            "EtcdRemoveMemberByID",
            self._s.etcd_remove,
            machine_pb2.EtcdRemoveMemberByIDResponse,
        )

    async def EtcdForfeitLeadership(self, stream: Stream) -> None:
        await self._u(
            stream,
            "EtcdForfeitLeadership",
            self._s.etcd_forfeit,
            machine_pb2.EtcdForfeitLeadershipResponse,
        )

    async def EtcdLeaveCluster(self, stream: Stream) -> None:
        await self._u(
            stream, "EtcdLeaveCluster", self._s.etcd_leave, machine_pb2.EtcdLeaveClusterResponse
        )

    async def Bootstrap(self, stream: Stream) -> None:
        await self._u(stream, "Bootstrap", self._s.bootstrap, machine_pb2.BootstrapResponse)

    async def ApplyConfiguration(self, stream: Stream) -> None:
        await self._u(
            stream, "ApplyConfiguration", self._s.apply, machine_pb2.ApplyConfigurationResponse
        )

    async def Reset(self, stream: Stream) -> None:
        await self._u(stream, "Reset", self._s.reset, machine_pb2.ResetResponse)

    async def Reboot(self, stream: Stream) -> None:
        await self._u(stream, "Reboot", self._s.reboot, machine_pb2.RebootResponse)

    async def Shutdown(self, stream: Stream) -> None:
        await self._u(stream, "Shutdown", self._s.shutdown, machine_pb2.ShutdownResponse)

    async def Kubeconfig(self, stream: Stream) -> None:
        await self._d(stream, "Kubeconfig", self._s.kubeconfig)

    async def Logs(self, stream: Stream) -> None:
        await self._d(stream, "Logs", lambda m, r: facts.log_lines(m, r.id, r.tail_lines))

    async def Dmesg(self, stream: Stream) -> None:
        await self._d(stream, "Dmesg", lambda m, _r: facts.dmesg_lines(m))


class _StorageService(storage_grpc.StorageServiceBase):
    def __init__(self, srv: TalosLabServer, maintenance: bool, pinned: str | None = None) -> None:
        self._s = srv
        self._m = maintenance
        self._pinned = pinned

    async def Disks(self, stream: Stream) -> None:
        await self._s.unary(
            stream,
            "Disks",
            self._m,
            lambda m, _r: facts.disks(m),
            storage_pb2.DisksResponse,
            pinned=self._pinned,
        )
