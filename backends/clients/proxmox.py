"""Proxmox VE over proxmoxer (https backend, API token): nodes, VMs, GPUs, storage, tasks.

Reads (GET) go over urllib3 with the same token header: the snapshot needs nothing else,
and proxmoxer's `requests` costs a one-shot `status` 50 ms of imports. Writes go through
proxmoxer, imported on the first one.

Every call has a timeout and every failure becomes a `BackendError` with one line for the
operator (token rejected, permission denied, TLS verify failed, connection refused,
timeout, DNS failure); details go to the logger. A client built `read_only=True` never
constructs its writer: every mutating method raises `ReadOnlyError` before any I/O.
proxmoxer sits on a `requests.Session`, which is not promised to be thread-safe, so each
thread gets its own session (the collector calls this from worker threads).
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from dapper.backends.clients.proxmox_parse import (
    HOSTPCI_KEYS,
    agent_addresses,
    hex_id,
    is_pci_id,
    normalize_pci_id,
    parse_hostpci,
    parse_net_mac,
    parse_tags,
    parse_upid,
    pci_matches,
    split_property_string,
)
from dapper.backends.config import Config, ProxmoxConfig
from dapper.backends.errors import BackendError, ReadOnlyError
from dapper.backends.model import Gpu, Vm, VmDevice
from dapper.backends.safe_text import clean_json, clean_tree

if TYPE_CHECKING:
    import urllib3
    from proxmoxer import ProxmoxAPI

CONFIG_READERS = 8  # VM configs read at once (the API answers each in its own worker)
PARALLEL_FROM = 16  # fewer VMs than this are read one after another
# (a cluster/resources row, a function reading that VM's config) -> the VM's config
ConfigOf = Callable[[dict[str, Any], Callable[[], dict[str, str]]], dict[str, str]]
log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
NVIDIA = "10de"


@dataclass(frozen=True)
class PveNode:
    name: str
    status: str  # online, offline, unknown
    cpu: float = 0.0  # 0..1
    maxcpu: int = 0
    mem: int = 0
    maxmem: int = 0
    uptime: int = 0


@dataclass(frozen=True)
class PciDevice:
    """One host PCI function as `nodes/{node}/hardware/pci` lists it."""

    address: str  # 0000:81:00.0
    node: str
    vendor_id: str  # 10de
    device_id: str  # 15f8
    class_id: str  # 030200
    vendor_name: str = ""
    device_name: str = ""
    iommugroup: int = -1

    @property
    def is_gpu(self) -> bool:
        """Display (03xx) class; NVIDIA compute cards like the P100 report 0302 (3D)."""
        return self.class_id.startswith("03")


@dataclass(frozen=True)
class PveStorage:
    name: str
    node: str
    type: str
    content: tuple[str, ...] = ()
    active: bool = False
    enabled: bool = False
    shared: bool = False
    total: int = 0
    used: int = 0
    avail: int = 0


@dataclass(frozen=True)
class PciMapEntry:
    """One node's device in a PCI resource mapping (`node=pve,path=0000:81:00.0,...`)."""

    node: str
    path: str  # one or more PCI ids joined by `;`
    id: str = ""  # vendor:device, e.g. 10de:15f8
    subsystem_id: str = ""
    iommugroup: int = -1


@dataclass(frozen=True)
class PciMapping:
    """A cluster PCI resource mapping: what `hostpciN: mapping=<id>` passes through."""

    id: str
    description: str = ""
    entries: tuple[PciMapEntry, ...] = ()

    def paths(self, node: str) -> tuple[str, ...]:
        """The device paths this mapping offers on `node` (several: a pool)."""
        return tuple(e.path for e in self.entries if e.node == node)


@dataclass(frozen=True)
class StorageVolume:
    """One volume on a storage (`nodes/{node}/storage/{storage}/content`)."""

    volid: str  # local:iso/talos-v1.11.2-metal-amd64.iso
    content: str  # iso, images, ...
    format: str = ""
    size: int = 0
    vmid: int | None = None


@dataclass(frozen=True)
class PveTask:
    upid: str
    node: str
    type: str
    id: str
    user: str
    starttime: int
    status: str  # running / stopped
    exitstatus: str = ""  # "OK", "WARNINGS: n" or the error text once stopped
    endtime: int | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def ok(self) -> bool:
        return not self.running and (
            self.exitstatus == "OK" or self.exitstatus.startswith("WARNINGS")
        )


# -- errors -------------------------------------------------------------------------------


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        linked = (e.__cause__, e.__context__, getattr(e, "reason", None))
        todo.extend(x for x in linked if isinstance(x, BaseException))
        todo.extend(a for a in e.args if isinstance(a, BaseException))


class HttpFailure(Exception):
    """An HTTP error answer to a read, with what proxmoxer's ResourceException carries."""

    def __init__(self, status_code: int, content: str, errors: object = None) -> None:
        super().__init__(f"{status_code} {content}")
        self.status_code = status_code
        self.status_message = http.client.responses.get(status_code, "")
        self.content = content
        self.errors = errors


def error_reason(exc: BaseException, *, where: str, timeout: float) -> tuple[str, str]:
    """(one line for the operator, failure code) from whatever the reads (urllib3) or the
    writes (proxmoxer, requests) raised."""
    core = sys.modules.get("proxmoxer.core")  # loaded only once something was written
    if isinstance(exc, HttpFailure) or (
        core is not None and isinstance(exc, core.ResourceException)
    ):
        code = int(getattr(exc, "status_code", 0))
        content = str(getattr(exc, "content", "") or "").strip()
        if code == 401:
            return f"401 Unauthorized: token rejected by {where}", "UNAUTHENTICATED"
        if code == 403:
            detail = content or "permission check failed"
            return f"403 Forbidden: permission denied ({detail})", "PERMISSION_DENIED"
        errors = getattr(exc, "errors", None)
        detail = f" {errors}" if errors else ""
        text = f"{code} {getattr(exc, 'status_message', '') or ''}: {content}{detail}"
        return " ".join(text.split()), f"HTTP_{code}"
    if core is not None and isinstance(exc, core.AuthenticationError):
        return f"authentication failed at {where}", "UNAUTHENTICATED"
    chain = list(_chain(exc))
    text = " ".join(str(e) for e in chain)
    low = text.lower()
    names = " ".join(type(e).__name__ for e in chain)
    if any(isinstance(e, ssl.SSLError) for e in chain) or "SSLError" in names:
        if "certificate_verify_failed" in low or "certificate verify failed" in low:
            if "hostname" in low or "ip address mismatch" in low:
                return f"TLS verify failed: certificate does not match {where}", "TLS"
            return (
                f"TLS verify failed: {where} presented a certificate not signed by the trusted CA",
                "TLS",
            )
        return f"TLS handshake with {where} failed", "TLS"
    if "Timeout" in names and "NewConnectionError" not in names:
        return f"timeout after {timeout:g}s talking to {where}", "TIMEOUT"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in low:
        return f"connection refused: {where}", "REFUSED"
    if any(s in low for s in _DNS_HINTS):
        return f"DNS failure: cannot resolve {where.rsplit(':', 1)[0]}", "DNS"
    if "timed out" in low or "Timeout" in names:
        return f"timeout after {timeout:g}s talking to {where}", "TIMEOUT"
    if "Connection" in names or "ProtocolError" in names or "RemoteDisconnected" in names:
        return f"connection to {where} failed", "UNAVAILABLE"
    return f"{type(exc).__name__} talking to {where}", "UNAVAILABLE"


_DNS_HINTS = (
    "name or service not known",
    "nodename nor servname",
    "getaddrinfo failed",
    "failed to resolve",
    "name resolution",
    "no address associated",
    "temporary failure in name resolution",
)


# -- the client ---------------------------------------------------------------------------


def _vm_status(raw: Mapping[str, Any]) -> str:
    status = str(raw.get("status") or "unknown")
    qmp = str(raw.get("qmpstatus") or "")
    return "paused" if status == "running" and qmp in ("paused", "suspended") else status


class ProxmoxBackend:
    """Reads (and, unless read-only, writes) one PVE cluster through its API."""

    capabilities: frozenset[str]

    def __init__(
        self,
        url: str,
        token_id: str,
        token_secret: str,
        *,
        node: str = "",
        verify_tls: bool = True,
        ca_file: str = "",
        timeout: float = DEFAULT_TIMEOUT,
        read_only: bool = False,
    ) -> None:
        parts = urlsplit(url if "://" in url else f"https://{url}")
        if parts.scheme != "https" or not parts.hostname:
            raise BackendError(f"proxmox url must be https://host[:port]: {url!r}", code="CONFIG")
        user, bang, token_name = token_id.partition("!")
        if not bang or "@" not in user or not token_name:
            raise BackendError(
                f"proxmox token id must look like user@realm!tokenid: {token_id!r}", code="CONFIG"
            )
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        self.where = f"{host}:{parts.port or 8006}"
        prefix = parts.path.strip("/").removesuffix("api2/json").strip("/")
        if ca_file:
            ca_file = str(Path(ca_file).expanduser())
            if not Path(ca_file).is_file():
                raise BackendError(f"proxmox CA file not found: {ca_file}", code="CONFIG")
        if not verify_tls:
            log.warning("proxmox: TLS verification is disabled for %s", self.where)
        self._kwargs: dict[str, Any] = {
            "host": self.where,
            "backend": "https",
            "user": user,
            "token_name": token_name,
            "token_value": token_secret,
            "verify_ssl": (ca_file or True) if verify_tls else False,
            "timeout": timeout,
            "path_prefix": prefix or None,
        }
        self.token_id = token_id
        self.timeout = timeout
        self._node = node
        self._local = threading.local()
        self._sessions_lock = threading.Lock()
        self._apis: list[ProxmoxAPI] = []  # every thread's client, so close() reaches all
        self._readers: urllib3.PoolManager | None = None
        self._base = f"https://{self.where}" + (f"/{prefix}" if prefix else "") + "/api2/json"
        self._token_header = f"PVEAPIToken={token_id}={token_secret}"
        self.read_only = read_only
        self._writer: _Writer | None = None if read_only else _Writer(self)
        self.capabilities = frozenset({"read"} if read_only else {"read", "write"})

    def __repr__(self) -> str:  # never show the secret
        mode = "read-only" if self.read_only else "read-write"
        return f"ProxmoxBackend({self.where}, {self.token_id}, {mode})"

    @classmethod
    def from_config(
        cls, cfg: Config | ProxmoxConfig, *, read_only: bool | None = None, **kw: Any
    ) -> ProxmoxBackend:
        """Build from the config; the secret is read now from its env var or file."""
        prox = cfg.proxmox if isinstance(cfg, Config) else cfg
        ro = read_only if read_only is not None else bool(getattr(cfg, "read_only", False))
        return cls(
            prox.url,
            prox.token_id,
            prox.token_secret(),
            node=prox.node,
            verify_tls=prox.verify_tls,
            ca_file=prox.ca_file,
            read_only=ro,
            **kw,
        )

    # -- plumbing

    def _api(self) -> ProxmoxAPI:
        api = getattr(self._local, "api", None)
        if api is None:
            from proxmoxer import ProxmoxAPI

            kwargs = dict(self._kwargs)
            api = ProxmoxAPI(kwargs.pop("host"), **kwargs)
            self._local.api = api
            with self._sessions_lock:
                self._apis.append(api)
        return api

    def call(self, method: str, path: str, **params: Any) -> Any:
        """One API call (`path` relative to /api2/json); failures become BackendError.
        Every writer ends here, so a read-only client refuses any method but GET here."""
        if self.read_only and method.lower() != "get":
            raise ReadOnlyError(f"proxmox {method.upper()} /{path.strip('/')}")
        try:
            if method.lower() == "get":
                return self._get(path.strip("/"), params)
            resource = self._api()(path.strip("/"))
            return clean_tree(getattr(resource, method)(**params))
        except BackendError:
            raise
        except Exception as exc:  # HTTP answers, transport failures: one line each
            reason, code = error_reason(exc, where=self.where, timeout=self.timeout)
            log.debug("proxmox %s %s failed: %s", method.upper(), path, exc, exc_info=True)
            raise BackendError(reason, code=code) from exc

    def _pool(self) -> urllib3.PoolManager:
        """The readers' connection pool (thread-safe), built on the first read."""
        with self._sessions_lock:
            if self._readers is None:
                import urllib3

                verify = self._kwargs["verify_ssl"]
                context = ssl.create_default_context(
                    cafile=verify if isinstance(verify, str) else None
                )
                if verify is False:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                    warnings.filterwarnings(
                        "ignore", category=urllib3.exceptions.InsecureRequestWarning
                    )
                self._readers = urllib3.PoolManager(
                    num_pools=1,
                    maxsize=CONFIG_READERS,
                    ssl_context=context,
                    headers={"Authorization": self._token_header},
                    retries=urllib3.Retry(total=0, connect=0, read=0, redirect=0, status=0),
                    timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
                )
            return self._readers

    def _get(self, path: str, params: Mapping[str, Any]) -> Any:
        """One GET of the API, answered as proxmoxer answers: the JSON's `data`, made safe
        as text before it is decoded (one scan of the bytes: walking the decoded answer
        for 500 VMs on every refresh cost more than decoding it)."""
        query = f"?{urlencode(params)}" if params else ""
        resp = self._pool().request("GET", f"{self._base}/{path}{query}")
        if resp.status >= 400:
            try:
                errors = json.loads(resp.data.decode("utf-8")).get("errors")
            except (UnicodeDecodeError, ValueError, AttributeError):
                errors = None
            raise HttpFailure(resp.status, resp.reason or "", errors)
        try:
            return json.loads(clean_json(resp.data))["data"]
        except (UnicodeDecodeError, ValueError, KeyError, TypeError):
            return {"errors": resp.data}

    def close(self) -> None:
        """Close every thread's pooled connections; the backend stays usable (it reconnects)."""
        with self._sessions_lock:
            apis, self._apis = self._apis, []
            readers, self._readers = self._readers, None
        if readers is not None:
            readers.clear()
        for api in apis:
            api._store["session"].close()
        self._local = threading.local()

    def node_names(self) -> list[str]:
        if self._node:
            return [self._node]
        return [n.name for n in self.nodes()]

    def default_node(self) -> str:
        names = self.node_names()
        if not names:
            raise BackendError(f"no PVE nodes visible at {self.where}")
        return names[0]

    # -- reads

    def version(self) -> dict[str, Any]:
        return dict(self.call("get", "version") or {})

    def nodes(self) -> list[PveNode]:
        rows = self.call("get", "nodes") or []
        return sorted(
            (
                PveNode(
                    name=str(r.get("node", "")),
                    status=str(r.get("status", "unknown")),
                    cpu=float(r.get("cpu") or 0.0),
                    maxcpu=int(r.get("maxcpu") or 0),
                    mem=int(r.get("mem") or 0),
                    maxmem=int(r.get("maxmem") or 0),
                    uptime=int(r.get("uptime") or 0),
                )
                for r in rows
            ),
            key=lambda n: n.name,
        )

    def node_status(self, node: str = "") -> dict[str, Any]:
        return dict(self.call("get", f"nodes/{node or self.default_node()}/status") or {})

    def vm_config(self, vmid: int, node: str = "") -> dict[str, str]:
        """The VM's config keys as strings (digest included), in the API's order."""
        raw = self.call("get", f"nodes/{node or self._vm_node(vmid)}/qemu/{vmid}/config") or {}
        return {str(k): str(v) for k, v in raw.items()}

    def vms(
        self,
        *,
        with_config: bool = True,
        config_of: ConfigOf | None = None,
    ) -> list[Vm]:
        """Every QEMU VM of the cluster with status and usage; with config: devices and MACs.
        `config_of(row, read)` gives a VM's config, from a cache or by calling `read()`."""
        rows = [r for r in self.call("get", "cluster/resources", type="vm") or []]
        rows = [r for r in rows if r.get("type", "qemu") == "qemu"]
        if self._node:
            rows = [r for r in rows if r.get("node") == self._node]
        pci: dict[str, list[PciDevice]] = {}
        mappings: dict[str, PciMapping] | None = None
        out: list[Vm] = []
        configs = self._configs(rows, config_of) if with_config else [{} for _ in rows]
        for r, config in zip(rows, configs, strict=True):
            node = str(r.get("node", ""))
            if with_config:
                if node not in pci and any(k in config for k in HOSTPCI_KEYS):
                    pci[node] = self.pci_devices(node)
                if mappings is None and _uses_mapping(config):
                    mappings = {m.id: m for m in self.mappings_pci()}
            out.append(vm_from_api(r, config, pci.get(node, []), mappings))
        return sorted(out, key=lambda v: v.vmid)

    def _configs(
        self, rows: list[dict[str, Any]], config_of: ConfigOf | None
    ) -> list[dict[str, str]]:
        """Each row's VM config, CONFIG_READERS at a time: 500 one after another took
        longer than a refresh may."""

        def one(row: dict[str, Any]) -> dict[str, str]:
            read = partial(self.vm_config, int(row["vmid"]), str(row.get("node", "")))
            return config_of(row, read) if config_of is not None else read()

        if len(rows) <= PARALLEL_FROM:  # a thread's own session (TLS) costs more than it saves
            return [one(r) for r in rows]
        with ThreadPoolExecutor(CONFIG_READERS, thread_name_prefix="pve-config") as pool:
            return list(pool.map(one, rows))

    def vm(self, vmid: int) -> Vm:
        node = self._vm_node(vmid)
        status = self.call("get", f"nodes/{node}/qemu/{vmid}/status/current") or {}
        config = self.vm_config(vmid, node)
        devices = self.pci_devices(node) if any(k in config for k in HOSTPCI_KEYS) else []
        mappings = {m.id: m for m in self.mappings_pci()} if _uses_mapping(config) else None
        return vm_from_api({**status, "node": node, "vmid": vmid}, config, devices, mappings)

    def guest_addresses(self, vmid: int, node: str = "") -> tuple[str, ...]:
        """The VM's IPv4 addresses as its QEMU guest agent reports them: how a new Talos
        machine in maintenance mode is found (it answers at its own address). A VM that
        is not running, or whose agent does not answer yet, raises BackendError."""
        node = node or self._vm_node(vmid)
        payload = self.call("get", f"nodes/{node}/qemu/{vmid}/agent/network-get-interfaces")
        return agent_addresses(payload)

    def _vm_node(self, vmid: int) -> str:
        if self._node:
            return self._node
        for r in self.call("get", "cluster/resources", type="vm") or []:
            if int(r.get("vmid", -1)) == int(vmid):
                return str(r["node"])
        raise BackendError(f"VM {vmid} not found at {self.where}")

    def pci_devices(self, node: str = "") -> list[PciDevice]:
        node = node or self.default_node()
        rows = self.call("get", f"nodes/{node}/hardware/pci") or []
        return [
            PciDevice(
                address=normalize_pci_id(str(r.get("id", ""))),
                node=node,
                vendor_id=hex_id(r.get("vendor")),
                device_id=hex_id(r.get("device")),
                class_id=hex_id(r.get("class")),
                vendor_name=str(r.get("vendor_name") or ""),
                device_name=str(r.get("device_name") or ""),
                iommugroup=int(r.get("iommugroup", -1)),
            )
            for r in rows
        ]

    def gpus(self, vms: Iterable[Vm] | None = None) -> list[Gpu]:
        """NVIDIA display/3D functions of every node, joined to the VM passing each through."""
        vms = list(vms) if vms is not None else self.vms()
        out: list[Gpu] = []
        for node in self.node_names():
            for dev in self.pci_devices(node):
                if dev.vendor_id != NVIDIA or not dev.is_gpu:
                    continue
                owner = next(
                    (
                        v
                        for v in vms
                        if v.host == node
                        and any(
                            pci_matches(d.address, dev.address)
                            for d in v.devices
                            if is_pci_id(d.address.split(";")[0])
                        )
                    ),
                    None,
                )
                out.append(
                    Gpu(
                        address=dev.address,
                        model=dev.device_name or f"{dev.vendor_id}:{dev.device_id}",
                        host=node,
                        vendor_id=dev.vendor_id,
                        device_id=dev.device_id,
                        vmid=owner.vmid if owner else None,
                        vm_name=owner.name if owner else "",
                    )
                )
        return out

    def storage(self, node: str = "") -> list[PveStorage]:
        out: list[PveStorage] = []
        for n in [node] if node else self.node_names():
            for r in self.call("get", f"nodes/{n}/storage") or []:
                out.append(
                    PveStorage(
                        name=str(r.get("storage", "")),
                        node=n,
                        type=str(r.get("type", "")),
                        content=tuple(c for c in str(r.get("content", "")).split(",") if c),
                        active=bool(int(r.get("active") or 0)),
                        enabled=bool(int(r.get("enabled", 1) or 0)),
                        shared=bool(int(r.get("shared") or 0)),
                        total=int(r.get("total") or 0),
                        used=int(r.get("used") or 0),
                        avail=int(r.get("avail") or 0),
                    )
                )
        return out

    def tasks(self, node: str = "", *, limit: int = 50) -> list[PveTask]:
        out: list[PveTask] = []
        for n in [node] if node else self.node_names():
            for r in self.call("get", f"nodes/{n}/tasks", limit=limit) or []:
                finished = "endtime" in r or ("status" in r and r["status"] != "running")
                out.append(
                    PveTask(
                        upid=str(r.get("upid", "")),
                        node=str(r.get("node", n)),
                        type=str(r.get("type", "")),
                        id=str(r.get("id", "")),
                        user=str(r.get("user", "")),
                        starttime=int(r.get("starttime") or 0),
                        status="stopped" if finished else "running",
                        exitstatus=str(r.get("status", "")) if finished else "",
                        endtime=int(r["endtime"]) if r.get("endtime") is not None else None,
                    )
                )
        return sorted(out, key=lambda t: t.starttime, reverse=True)

    def task_status(self, upid: str) -> PveTask:
        node = _upid_node(upid)
        r = self.call("get", f"nodes/{node}/tasks/{upid}/status") or {}
        return PveTask(
            upid=upid,
            node=str(r.get("node", node)),
            type=str(r.get("type", "")),
            id=str(r.get("id", "")),
            user=str(r.get("user", "")),
            starttime=int(r.get("starttime") or 0),
            status=str(r.get("status", "running")),
            exitstatus=str(r.get("exitstatus", "") or ""),
        )

    def task_log(self, upid: str, *, start: int = 0, limit: int = 500) -> list[str]:
        node = _upid_node(upid)
        rows = self.call("get", f"nodes/{node}/tasks/{upid}/log", start=start, limit=limit) or []
        return [str(r.get("t", "")) for r in sorted(rows, key=lambda r: int(r.get("n", 0)))]

    def mappings_pci(self) -> list[PciMapping]:
        """The cluster's PCI resource mappings, sorted by id."""
        out = []
        for r in self.call("get", "cluster/mapping/pci") or []:
            entries = []
            for line in r.get("map") or []:
                fields = dict(split_property_string(str(line)))
                group = str(fields.get("iommugroup", ""))
                entries.append(
                    PciMapEntry(
                        node=fields.get("node", ""),
                        path=fields.get("path", ""),
                        id=fields.get("id", ""),
                        subsystem_id=fields.get("subsystem-id", ""),
                        iommugroup=int(group) if group.isdigit() else -1,
                    )
                )
            out.append(
                PciMapping(str(r.get("id", "")), str(r.get("description") or ""), tuple(entries))
            )
        return sorted(out, key=lambda m: m.id)

    def storage_content(
        self, storage: str, content: str = "iso", node: str = ""
    ) -> list[StorageVolume]:
        """The volumes of `content` type on `storage` (ISOs by default), sorted by volid."""
        node = node or self.default_node()
        params = {"content": content} if content else {}
        rows = self.call("get", f"nodes/{node}/storage/{storage}/content", **params) or []
        return sorted(
            (
                StorageVolume(
                    volid=str(r.get("volid", "")),
                    content=str(r.get("content", "")),
                    format=str(r.get("format", "")),
                    size=int(r.get("size") or 0),
                    vmid=int(r["vmid"]) if r.get("vmid") is not None else None,
                )
                for r in rows
            ),
            key=lambda v: v.volid,
        )

    def next_vmid(self) -> int:
        """`/cluster/nextid`; PVE documents an integer but often sends a string."""
        return int(self.call("get", "cluster/nextid"))

    def wait_task(
        self,
        upid: str,
        *,
        timeout: float = 120.0,
        on_progress: Callable[[str], None] | None = None,
        poll: float = 1.0,
    ) -> PveTask:
        """Poll a task until it stops; feed new log lines to `on_progress`; raise on failure."""
        deadline = time.monotonic() + timeout
        seen = 0
        interval = min(poll, 0.05)  # most tasks end quickly: poll fast first, then back off
        while True:
            status = self.task_status(upid)
            if on_progress is not None:
                lines = self.task_log(upid, start=seen)
                seen += len(lines)
                for line in lines:
                    on_progress(line)
            if not status.running:
                if status.ok:
                    return status
                what = f"{status.type} {status.id}".strip()
                raise BackendError(
                    f"PVE task {what} failed: {status.exitstatus or 'unknown error'}"
                )
            if time.monotonic() >= deadline:
                raise BackendError(
                    f"PVE task {status.type} {status.id} still running after {timeout:g}s"
                )
            time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
            interval = min(poll, interval * 2)

    # -- writes (refused before any I/O when read-only)

    def _w(self, what: str) -> _Writer:
        if self._writer is None:
            raise ReadOnlyError(f"to {what} (proxmox)")
        return self._writer

    def start(self, vmid: int, node: str = "") -> str:
        return self._w(f"start VM {vmid}").power(vmid, "start", node)

    def stop(self, vmid: int, node: str = "") -> str:
        return self._w(f"stop VM {vmid}").power(vmid, "stop", node)

    def shutdown(
        self, vmid: int, node: str = "", *, timeout: int | None = None, force_stop: bool = False
    ) -> str:
        return self._w(f"shut down VM {vmid}").power(
            vmid, "shutdown", node, timeout=timeout, forceStop=1 if force_stop else None
        )

    def reboot(self, vmid: int, node: str = "") -> str:
        return self._w(f"reboot VM {vmid}").power(vmid, "reboot", node)

    def clone(
        self,
        vmid: int,
        newid: int,
        name: str = "",
        *,
        full: bool | None = True,
        node: str = "",
        target: str = "",
        storage: str = "",
        description: str = "",
    ) -> str:
        """Clone `vmid` to `newid`; returns the UPID. `full=None` leaves PVE's default (a
        linked clone of a template, a full copy of any other VM); `storage` only for full."""
        extra = {"target": target, "storage": storage, "description": description}
        return self._w(f"clone VM {vmid}").clone(vmid, newid, name, full, node, extra)

    def create_vm(self, vmid: int, *, node: str = "", **config: str | int) -> str:
        """POST /nodes/{node}/qemu: a new VM from config keys (`net0`, `virtio0=local-zfs:32`,
        `ide2=local:iso/...,media=cdrom`, `hostpci0=mapping=<id>,pcie=1`, `start=1`...);
        returns the UPID of the qmcreate task."""
        return self._w(f"create VM {vmid}").create(vmid, node, config)

    def destroy(self, vmid: int, node: str = "", *, purge: bool = True) -> str:
        return self._w(f"destroy VM {vmid}").destroy(vmid, node, purge)

    def resize(self, vmid: int, disk: str, size: str, node: str = "") -> str | None:
        """Grow a disk (`128G` or `+8G`); PVE 8 returns the task's UPID, 7 returned null."""
        return self._w(f"resize a disk of VM {vmid}").resize(vmid, disk, size, node)

    def set_config(
        self,
        vmid: int,
        values: Mapping[str, str | int] | None = None,
        *,
        delete: Iterable[str] = (),
        digest: str = "",
        node: str = "",
        sync: bool = False,
    ) -> str | None:
        """POST (async: returns the UPID) or, with `sync`, PUT (returns None)."""
        return self._w(f"change the config of VM {vmid}").set_config(
            vmid, dict(values or {}), list(delete), digest, node, sync
        )


class _Writer:
    """The mutating half; only a read-write backend has one."""

    def __init__(self, backend: ProxmoxBackend) -> None:
        self._b = backend

    def _node(self, vmid: int, node: str) -> str:
        return node or self._b._vm_node(vmid)

    def power(self, vmid: int, action: str, node: str, **params: Any) -> str:
        path = f"nodes/{self._node(vmid, node)}/qemu/{vmid}/status/{action}"
        return str(self._b.call("post", path, **params))

    def clone(
        self,
        vmid: int,
        newid: int,
        name: str,
        full: bool | None,
        node: str,
        extra: Mapping[str, str],
    ) -> str:
        path = f"nodes/{self._node(vmid, node)}/qemu/{vmid}/clone"
        params: dict[str, Any] = {"newid": newid, "name": name or None}
        if full is not None:
            params["full"] = int(full)
        params.update({k: v for k, v in extra.items() if v})
        return str(self._b.call("post", path, **params))

    def create(self, vmid: int, node: str, config: Mapping[str, str | int]) -> str:
        path = f"nodes/{node or self._b.default_node()}/qemu"
        return str(self._b.call("post", path, vmid=vmid, **config))

    def destroy(self, vmid: int, node: str, purge: bool) -> str:
        path = f"nodes/{self._node(vmid, node)}/qemu/{vmid}"
        return str(self._b.call("delete", path, purge=int(purge)))

    def resize(self, vmid: int, disk: str, size: str, node: str) -> str | None:
        path = f"nodes/{self._node(vmid, node)}/qemu/{vmid}/resize"
        result = self._b.call("put", path, disk=disk, size=size)
        return None if result is None else str(result)

    def set_config(
        self, vmid: int, values: dict, delete: list[str], digest: str, node: str, sync: bool
    ) -> str | None:
        params: dict[str, Any] = dict(values)
        if delete:
            params["delete"] = ",".join(delete)
        if digest:
            params["digest"] = digest
        path = f"nodes/{self._node(vmid, node)}/qemu/{vmid}/config"
        result = self._b.call("put" if sync else "post", path, **params)
        return None if result is None else str(result)


def _uses_mapping(config: Mapping[str, str]) -> bool:
    return any(parse_hostpci(config[k]).mapping for k in HOSTPCI_KEYS if k in config)


def _upid_node(upid: str) -> str:
    fields = parse_upid(upid)
    if fields is None:
        raise BackendError(f"not a PVE task id: {upid!r}")
    return str(fields["node"])


def vm_devices(
    config: Mapping[str, str],
    host_pci: Iterable[PciDevice] = (),
    mappings: Mapping[str, PciMapping] | None = None,
    node: str = "",
) -> list[VmDevice]:
    """The hostpciN entries in slot order, with ids and names from the host's PCI list.
    A `mapping=<id>` with one device on the VM's node is shown as that device (the
    mapping stays in the options); a pooled one (its device picked at start) as is."""
    host_pci = list(host_pci)
    out: list[VmDevice] = []
    for slot in HOSTPCI_KEYS:
        if slot not in config:
            continue
        hp = parse_hostpci(config[slot])
        address, addresses, options = hp.address, hp.addresses, hp.options_text
        mapping = (mappings or {}).get(hp.mapping) if hp.mapping else None
        paths = mapping.paths(node) if mapping is not None else ()
        if len(paths) == 1:
            addresses = tuple(normalize_pci_id(a) for a in paths[0].split(";") if a)
            address = ";".join(addresses)
            options = ",".join(o for o in (f"mapping={hp.mapping}", hp.options_text) if o)
        dev = next((d for a in addresses for d in host_pci if pci_matches(a, d.address)), None)
        out.append(
            VmDevice(
                slot=slot,
                address=address,
                options=options,
                vendor_id=dev.vendor_id if dev else "",
                device_id=dev.device_id if dev else "",
                description=dev.device_name if dev else "",
            )
        )
    return out


def vm_from_api(
    row: Mapping[str, Any],
    config: Mapping[str, str],
    host_pci: Iterable[PciDevice] = (),
    mappings: Mapping[str, PciMapping] | None = None,
) -> Vm:
    """A `Vm` from a resources/status row plus its config (which may be empty)."""
    macs = tuple(
        mac
        for key in sorted(
            (k for k in config if k.startswith("net") and k[3:].isdigit()), key=lambda k: int(k[3:])
        )
        if (mac := parse_net_mac(config[key]))
    )
    tags = row.get("tags", config.get("tags", ""))
    return Vm(
        vmid=int(row["vmid"]),
        name=str(row.get("name") or config.get("name") or f"VM {row['vmid']}"),
        host=str(row.get("node", "")),
        status=_vm_status(row),
        cpus=int(row.get("maxcpu") or row.get("cpus") or 0),
        cpu_usage=float(row.get("cpu") or 0.0),
        mem_total=int(row.get("maxmem") or 0),
        mem_used=int(row.get("mem") or 0),
        disk_total=int(row.get("maxdisk") or 0),
        uptime=int(row.get("uptime") or 0),
        macs=macs,
        devices=tuple(vm_devices(config, host_pci, mappings, str(row.get("node", "")))),
        template=bool(int(row.get("template") or config.get("template") or 0)),
        tags=parse_tags(str(tags or "")),
        config=tuple((k, v) for k, v in config.items()),
    )


__all__ = [
    "BackendError",
    "PciDevice",
    "PciMapEntry",
    "PciMapping",
    "ProxmoxBackend",
    "PveNode",
    "PveStorage",
    "PveTask",
    "ReadOnlyError",
    "StorageVolume",
    "error_reason",
    "split_property_string",
    "vm_devices",
    "vm_from_api",
]
