"""The lab's PVE API handlers: routing, permissions, validation and writes as tasks.

No HTTP here: `PveApi.handle(method, path, params, token)` returns the `data` payload or
raises `PveError` (status, reason, per-parameter errors), which the server renders the way
pve-http-server does. Writes are checked in PVE's order (permission, then parameters, then
the early checks), answer with a UPID, and change the World when the task finishes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dapper.backends.clients.proxmox_parse import parse_upid
from dapper.lab import pve_view as view
from dapper.lab.pve_errors import PveError, param_error, perm_error
from dapper.lab.pve_params import (
    DNS_NAME,
    bridges,
    check_hostpci,
    check_root_only,
    config_changes,
    new_disks,
    parse_bool,
    revert_keys,
)
from dapper.lab.pve_perms import ADMIN_ROLES, AUDITOR_ROLES, PveToken

__all__ = ["ADMIN_ROLES", "AUDITOR_ROLES", "PveApi", "PveError", "PveToken"]
from dapper.lab.pve_tasks import TaskManager
from dapper.lab.world import PVE_HOST, LabVm, PciMapping, World, WorldError
from dapper.lab.world.pve import STORAGES

_VMID_MIN, _VMID_MAX = 100, 999_999_999
_CREATE_ONLY = frozenset({"vmid", "start", "storage", "pool", "unique", "force"})
_param_error = param_error


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., Any]
    privilege: str = ""  # a write: the privilege PVE checks on `target`
    target: str = "/vms/{vmid}"


class PveApi:
    """Handlers over one World and one TaskManager for the single PVE node."""

    def __init__(self, world: World, tasks: TaskManager, node: str = PVE_HOST) -> None:
        self.world = world
        self.tasks = tasks
        self.node = node
        n = r"nodes/(?P<node>[^/]+)"
        q = n + r"/qemu/(?P<vmid>[^/]+)"
        routes: list[tuple[Any, ...]] = [
            ("GET", r"", self._index),
            ("GET", r"version", self._version),
            ("GET", r"nodes", self._nodes),
            ("GET", n, self._node_index),
            ("GET", n + r"/status", self._node_status),
            ("GET", n + r"/qemu", self._qemu_list),
            ("GET", q, self._vm_index),
            ("GET", q + r"/status", self._status_index),
            ("GET", q + r"/status/current", self._status_current),
            ("GET", q + r"/config", self._config_get),
            ("GET", q + r"/pending", self._pending),
            ("GET", q + r"/agent/network-get-interfaces", self._agent_interfaces),
            ("POST", q + r"/config", self._config_post, "VM.Config.HWType"),
            ("PUT", q + r"/config", self._config_put, "VM.Config.HWType"),
            ("POST", q + r"/status/start", self._start, "VM.PowerMgmt"),
            ("POST", q + r"/status/stop", self._stop, "VM.PowerMgmt"),
            ("POST", q + r"/status/shutdown", self._shutdown, "VM.PowerMgmt"),
            ("POST", q + r"/status/reboot", self._reboot, "VM.PowerMgmt"),
            ("POST", q + r"/status/reset", self._reset, "VM.PowerMgmt"),
            ("POST", q + r"/template", self._template, "VM.Allocate"),
            ("POST", q + r"/clone", self._clone, "VM.Clone"),
            ("DELETE", q, self._destroy, "VM.Allocate"),
            ("PUT", q + r"/resize", self._resize, "VM.Config.Disk"),
            ("POST", n + r"/qemu", self._create, "VM.Allocate"),
            ("GET", n + r"/storage", self._storage),
            ("GET", n + r"/storage/(?P<storage>[^/]+)", self._storage_index),
            ("GET", n + r"/storage/(?P<storage>[^/]+)/content", self._storage_content),
            ("GET", n + r"/storage/(?P<storage>[^/]+)/status", self._storage_status),
            ("GET", n + r"/hardware", self._hardware_index),
            ("GET", n + r"/hardware/pci", self._pci),
            ("GET", n + r"/tasks", self._tasks),
            ("GET", n + r"/tasks/(?P<upid>[^/]+)", self._task_index),
            ("GET", n + r"/tasks/(?P<upid>[^/]+)/status", self._task_status),
            ("GET", n + r"/tasks/(?P<upid>[^/]+)/log", self._task_log),
            ("GET", r"cluster", self._cluster_index),
            ("GET", r"cluster/resources", self._resources),
            ("GET", r"cluster/status", self._cluster_status),
            ("GET", r"cluster/nextid", self._nextid),
            ("GET", r"cluster/mapping", self._mapping_index),
            ("GET", r"cluster/mapping/pci", self._mappings),
            ("GET", r"cluster/mapping/pci/(?P<mapping>[^/]+)", self._mapping_get),
            (
                "POST",
                r"cluster/mapping/pci",
                self._mapping_create,
                "Mapping.Modify",
                "/mapping/pci",
            ),
            ("GET", r"access/permissions", self._permissions),
        ]
        self._routes = [
            _Route(m, re.compile(f"^{p}$"), h, *(rest or ())) for m, p, h, *rest in routes
        ]

    @property
    def write_routes(self) -> list[tuple[str, str]]:
        """(method, pattern) of every write, so tests can prove each refuses an auditor."""
        return [(r.method, r.pattern.pattern) for r in self._routes if r.privilege]

    def handle(self, method: str, path: str, params: dict[str, str], token: PveToken) -> Any:
        path = path.strip("/")
        for route in self._routes:
            m = route.pattern.match(path)
            if not m or route.method != method:
                continue
            args = m.groupdict()
            if route.privilege and not token.has(route.privilege):
                target = route.target.format_map({"vmid": params.get("vmid", ""), **args})
                raise perm_error(target, route.privilege)
            if "node" in args:
                self._check_node(args["node"])
            if "vmid" in args:
                args["vmid"] = _vmid(args["vmid"], "vmid")
            try:
                result = route.handler(params=params, token=token, **args)
            except WorldError as exc:
                raise PveError(exc.code if exc.code >= 400 else 500, str(exc)) from exc
            if route.privilege:
                self.world.record_write("proxmox", f"{method} /{path}", token.token_id)
            return result
        raise PveError(501, f"Method '{method} /{path}' not implemented")

    # -- helpers

    def _check_node(self, node: str) -> None:
        if node != self.node:
            raise PveError(500, f"no such cluster node '{node}'")

    def _vm(self, vmid: int) -> LabVm:
        with self.world.lock:
            vm = self.world.vms.get(vmid)
        if vm is None:
            raise PveError(
                500,
                f"Configuration file 'nodes/{self.node}/qemu-server/{vmid}.conf' does not exist",
            )
        return vm

    def _unlocked(self, vmid: int) -> LabVm:
        vm = self._vm(vmid)
        if vm.lock:
            raise PveError(500, f"VM is locked ({vm.lock})")
        return vm

    def _task(
        self,
        kind: str,
        ident: str | int,
        token: PveToken,
        body: Callable[[Callable[[str], None]], None],
        *,
        duration: float | None = None,
        progress: tuple[str, ...] = (),
    ) -> str:
        task = self.tasks.submit(
            kind,
            str(ident),
            token.token_id,
            body,
            duration=self.world.timings.task if duration is None else duration,
            progress=progress,
        )
        return task.upid

    # -- directory indexes (what pvesh ls shows; proxmoxer never needs them)

    def _index(self, **_: Any) -> list[dict]:
        return [{"subdir": s} for s in ("version", "cluster", "nodes", "access")]

    def _node_index(self, **_: Any) -> list[dict]:
        return [{"name": s} for s in ("qemu", "status", "storage", "hardware", "tasks")]

    def _vm_index(self, **_: Any) -> list[dict]:
        return [{"subdir": s} for s in ("config", "pending", "status", "clone", "template")]

    def _status_index(self, **_: Any) -> list[dict]:
        names = ("current", "start", "stop", "shutdown", "reboot", "reset")
        return [{"subdir": s} for s in names]

    def _hardware_index(self, **_: Any) -> list[dict]:
        return [{"type": "pci"}, {"type": "usb"}]

    def _task_index(self, upid: str, **_: Any) -> list[dict]:
        self._task_of(upid)
        return [{"name": "log"}, {"name": "status"}]

    def _cluster_index(self, **_: Any) -> list[dict]:
        return [{"name": s} for s in ("resources", "status", "nextid", "mapping", "tasks")]

    def _mapping_index(self, **_: Any) -> list[dict]:
        return [{"name": "pci"}, {"name": "usb"}, {"name": "dir"}]

    # -- reads

    def _version(self, **_: Any) -> dict:
        return dict(view.PVE_VERSION)

    def _nodes(self, **_: Any) -> list[dict]:
        return [view.node_row(self.world, self.node)]

    def _node_status(self, **_: Any) -> dict:
        return view.node_status(self.world)

    def _vms(self) -> list[LabVm]:
        with self.world.lock:
            return sorted(self.world.vms.values(), key=lambda v: v.vmid)

    def _qemu_list(self, **_: Any) -> list[dict]:
        with self.world.lock:
            return [view.vm_row(vm, self.node) for vm in self._vms()]

    def _status_current(self, vmid: int, **_: Any) -> dict:
        with self.world.lock:
            return view.vm_status_current(self._vm(vmid), self.node)

    def _config_get(self, vmid: int, params: dict[str, str], **_: Any) -> dict:
        """The config with pending changes taken in, or (`current=1`) the running one."""
        current = parse_bool("current", params["current"]) if "current" in params else False
        with self.world.lock:
            return view.vm_config(self._vm(vmid), current=current)

    def _pending(self, vmid: int, **_: Any) -> list[dict]:
        with self.world.lock:
            return view.vm_pending(self._vm(vmid))

    def _cluster_status(self, **_: Any) -> list[dict]:
        """A host in no cluster: only its own node entry (nodeid 0, local), no `cluster`
        entry with quorum, as pve-manager fakes it when corosync has no nodes."""
        return [view.cluster_status_node(self.world, self.node)]

    def _agent_interfaces(self, vmid: int, **_: Any) -> dict:
        """The QEMU guest agent's view of the guest's interfaces (the Talos schematics
        carry the qemu-guest-agent extension, which runs in maintenance mode too). The
        lab reports each machine's own loopback address, where it answers."""
        with self.world.lock:
            vm = self._vm(vmid)
            if vm.status != "running":
                raise PveError(500, f"VM {vmid} is not running")
            machine = self.world.machine_of_vm(vmid)
            if machine is None or not machine.booted:
                raise PveError(500, "QEMU guest agent is not running")
            address = self.world.talos.lab_address(machine)
            return view.agent_interfaces(vm, address)

    def _storage(self, params: dict[str, str], **_: Any) -> list[dict]:
        rows = view.storage_rows(self.world, self.node)
        if params.get("storage"):
            rows = [r for r in rows if r["storage"] == params["storage"]]
        if params.get("content"):
            rows = [r for r in rows if params["content"] in r["content"].split(",")]
        return [{k: v for k, v in r.items() if k != "node"} for r in rows]

    def _pci(self, params: dict[str, str], **_: Any) -> list[dict]:
        blacklist = params.get("pci-class-blacklist", "05;06;0b")
        rows = view.pci_rows(self.world, tuple(blacklist.split(";")))
        if params.get("verbose", "1") in ("0", "false"):
            rows = [{k: v for k, v in r.items() if not k.endswith("_name")} for r in rows]
        return rows

    def _resources(self, params: dict[str, str], **_: Any) -> list[dict]:
        kind = params.get("type", "")
        if kind not in ("", "vm", "node", "storage", "sdn"):
            raise _param_error(
                type=f"value '{kind}' does not have a value in the enumeration "
                "'vm, storage, node, sdn'"
            )
        out: list[dict] = []
        if kind in ("", "node"):
            out.append(view.node_row(self.world, self.node))
        if kind in ("", "storage"):
            out.extend(view.storage_resource(r) for r in view.storage_rows(self.world, self.node))
        if kind in ("", "vm"):
            with self.world.lock:
                for vm in self._vms():
                    row = view.vm_row(vm, self.node)
                    row.update(id=f"qemu/{vm.vmid}", type="qemu")
                    out.append(row)
        return out

    def _nextid(self, params: dict[str, str], **_: Any) -> str:
        with self.world.lock:
            used = set(self.world.vms)
        if params.get("vmid"):
            vmid = _vmid(params["vmid"], "vmid")
            if vmid in used:
                raise _param_error(vmid=f"VM {vmid} already exists")
            return str(vmid)
        vmid = _VMID_MIN
        while vmid in used:
            vmid += 1
        return str(vmid)  # PVE's JSON carries the number as a string

    def _mappings(self, params: dict[str, str], **_: Any) -> list[dict]:
        check = params.get("check-node")
        if check is not None and check not in (self.node, "localhost"):
            raise PveError(500, f"wrong node to check - {check} != {self.node}")
        with self.world.lock:
            return view.mapping_rows(self.world, check_node=self.node if check else None)

    def _mapping_get(self, mapping: str, **_: Any) -> dict:
        with self.world.lock:
            rows = {r["id"]: r for r in view.mapping_rows(self.world)}
        if mapping not in rows:
            raise PveError(500, f"mapping '{mapping}' not found")
        return {k: v for k, v in rows[mapping].items() if k != "id"}

    def _mapping_create(self, params: dict[str, str], **_: Any) -> None:
        """Create a mapping (root's job on a real cluster: Mapping.Modify on /mapping/pci)."""
        mapping_id = params.get("id", "")
        if not mapping_id:
            raise param_error(id="property is missing and it is not optional")
        lines = [line for line in params.get("map", "").split("\n") if line]
        with self.world.lock:
            if mapping_id in self.world.pci_mappings:
                raise PveError(
                    500, f"create hardware mapping failed: pci ID '{mapping_id}' already defined"
                )
            self.world.pci_mappings[mapping_id] = PciMapping(
                mapping_id, params.get("description", ""), lines
            )
        return None

    def _permissions(self, params: dict[str, str], token: PveToken, **_: Any) -> dict:
        """`/access/permissions`: the token's privileges (granted on `/`, propagated)."""
        path = params.get("path", "/")
        return {path: {p: 1 for p in sorted(token.privileges)}}

    def _storage_index(self, storage: str, **_: Any) -> list[dict]:
        self._storage_with(storage, STORAGES.get(storage, "").split(",")[0], param="storage")
        return [{"subdir": s} for s in ("content", "status")]

    def _storage_status(self, storage: str, **_: Any) -> dict:
        rows = [r for r in view.storage_rows(self.world, self.node) if r["storage"] == storage]
        if not rows:
            raise PveError(500, f"storage '{storage}' does not exist")
        return {k: v for k, v in rows[0].items() if k not in ("node", "storage", "used_fraction")}

    def _storage_content(self, storage: str, params: dict[str, str], **_: Any) -> list[dict]:
        if storage not in STORAGES:
            raise PveError(500, f"storage '{storage}' does not exist")
        content = params.get("content", "")
        if content and content not in ("images", "rootdir", "vztmpl", "iso", "backup", "snippets"):
            raise param_error(
                content=f"value '{content}' does not have a value in the enumeration "
                "'images, rootdir, vztmpl, iso, backup, snippets, import'"
            )
        with self.world.lock:
            rows = view.storage_content(self.world, storage)
        if content:
            rows = [r for r in rows if r["content"] == content]
        if params.get("vmid"):
            rows = [r for r in rows if str(r.get("vmid", "")) == params["vmid"]]
        return rows

    def _task_of(self, upid: str):
        if parse_upid(upid) is None:
            raise _param_error(upid="unable to parse worker upid")
        task = self.tasks.get(upid)
        if task is None:  # read_task_status: a well-formed UPID whose log file is missing
            raise _param_error(upid="no such task")
        return task

    def _tasks(self, params: dict[str, str], **_: Any) -> list[dict]:
        rows = self.tasks.recent()
        if params.get("vmid"):
            rows = [r for r in rows if r["id"] == params["vmid"]]
        if params.get("typefilter"):
            rows = [r for r in rows if r["type"] == params["typefilter"]]
        if params.get("errors") in ("1", "true"):
            rows = [r for r in rows if r.get("status") not in (None, "OK")]
        if params.get("source", "archive") == "active":
            rows = [r for r in rows if "endtime" not in r]
        start = _int(params.get("start", "0"), "start")
        limit = _int(params.get("limit", "50"), "limit")
        return rows[start : start + limit]

    def _task_status(self, upid: str, **_: Any) -> dict:
        self._task_of(upid)
        return self.tasks.snapshot(upid) or {}

    def _task_log(self, upid: str, params: dict[str, str], **_: Any) -> list[dict]:
        self._task_of(upid)
        start = _int(params.get("start", "0"), "start")
        limit = _int(params.get("limit", "50"), "limit")
        lines = self.tasks.lines(upid)[start : start + limit]
        return [{"n": start + i + 1, "t": t} for i, t in enumerate(lines)]

    # -- writes

    def _start(self, vmid: int, token: PveToken, **_: Any) -> str:
        self._unlocked(vmid)
        return self._task("qmstart", vmid, token, lambda log: self.world.vm_start(vmid))

    def _stop(self, vmid: int, token: PveToken, **_: Any) -> str:
        self._unlocked(vmid)
        return self._task("qmstop", vmid, token, lambda log: self.world.vm_stop(vmid))

    def _running_then(self, vmid: int, action: Callable[[int], None]) -> Callable:
        def body(log: Callable[[str], None]) -> None:
            with self.world.lock:
                vm = self.world.vm(vmid)
                if vm.status != "running":
                    raise WorldError(f"VM {vmid} not running", 500)
                action(vmid)

        return body

    def _shutdown(self, vmid: int, token: PveToken, **_: Any) -> str:
        """vm_stop with shutdown: a VM that is not running is already where it should be,
        so the task ends OK."""
        self._unlocked(vmid)
        duration = self.world.timings.task + self.world.timings.shutdown

        def body(log: Callable[[str], None]) -> None:
            with self.world.lock:
                if self.world.vm(vmid).status == "running":
                    self.world.vm_stop(vmid)

        return self._task("qmshutdown", vmid, token, body, duration=duration)

    def _refuse_stopped(self, vmid: int) -> None:
        """reboot and reset check before they fork: `VM <id> not running`."""
        with self.world.lock:
            if self._unlocked(vmid).status != "running":
                raise PveError(500, f"VM {vmid} not running")

    def _reboot(self, vmid: int, token: PveToken, **_: Any) -> str:
        """A reboot is a shutdown and a fresh start, so pending changes apply."""
        self._refuse_stopped(vmid)
        body = self._running_then(vmid, self.world.vm_reboot)
        return self._task("qmreboot", vmid, token, body)

    def _reset(self, vmid: int, token: PveToken, **_: Any) -> str:
        """A hard reset of the same QEMU process: the guest reboots, pending changes stay
        pending."""
        self._refuse_stopped(vmid)
        body = self._running_then(vmid, self.world.vm_reset)
        return self._task("qmreset", vmid, token, body)

    def _template(self, vmid: int, token: PveToken, **_: Any) -> str:
        """`qm template`: refused before the fork for a template or a running VM; the flag
        is written at once, the worker renames the disks to base volumes."""
        with self.world.lock:
            vm = self._unlocked(vmid)
            if vm.template:
                raise PveError(500, "you can't convert a template to a template")
            if vm.status == "running":
                raise PveError(500, "you can't convert a VM to template if VM is running")
            vm.template = True

        def body(log: Callable[[str], None]) -> None:
            self.world.pve.vm_make_template(vmid)

        return self._task("qmtemplate", vmid, token, body)

    def _clone(self, vmid: int, params: dict[str, str], token: PveToken, **_: Any) -> str:
        """qemu-server's clone_vm: its early checks in order, then a qmclone task."""
        if "newid" not in params:
            raise param_error(newid="property is missing and it is not optional")
        newid = _vmid(params["newid"], "newid")
        name = params.get("name", "")
        if name and not DNS_NAME.match(name):
            raise param_error(name=f"value '{name}' does not look like a valid DNS name")
        full_param = parse_bool("full", params["full"]) if "full" in params else None
        target = params.get("target", "")
        storage = params.get("storage", "")
        if target and target not in (self.node, "localhost"):
            raise PveError(500, f"no such cluster node '{target}'")
        if storage:
            self._storage_with(storage, "images", param="storage")
        src = self._unlocked(vmid)
        with self.world.lock:
            full = (not src.template) if full_param is None else full_param
            if storage and not full:
                raise PveError(500, "parameter 'storage' not allowed for linked clones")
            for _key, disk_storage in _vm_disk_storages(src):
                token.require(f"/storage/{storage or disk_storage}", "Datastore.AllocateSpace")
            config = view.vm_config(src)
            for key in sorted(k for k in src.hostpci):
                check_hostpci(token, key, src.hostpci[key])
            for bridge in bridges({k: str(v) for k, v in config.items()}):
                token.require(f"/sdn/zones/localnetwork/{bridge}", "SDN.Use")
            if newid in self.world.vms:
                raise PveError(500, f"unable to create VM {newid}: config file already exists")
            blocker = None if full else self.world.pve.linked_clone_blocker(src)
            if blocker is not None:
                key, volid = blocker
                raise PveError(500, f"Linked clone feature is not supported for '{volid}' ({key})")
            clone = self.world.vm_clone(
                vmid,
                newid,
                name or None,
                full=full,
                storage=storage,
                description=params.get("description", ""),
            )
        what = "full clone" if full else "linked clone"
        progress = [f"create {what} of drive {k} ({v.split(',')[0]})" for k, v in _disks(src)]
        if full:
            size = f"{src.disk_gib}.0 GiB"
            progress += [
                f"transferred 0.0 B of {size} (0.00%)",
                f"transferred {src.disk_gib / 2:.1f} GiB of {size} (50.00%)",
                f"transferred {size} of {size} (100.00%)",
            ]

        def done(log: Callable[[str], None]) -> None:
            with self.world.lock:
                clone.lock = ""  # the world clears it too; whichever runs first

        return self._task(
            "qmclone",
            vmid,
            token,
            done,
            duration=self.world.timings.clone,
            progress=tuple(progress),
        )

    def _create(self, node: str, params: dict[str, str], token: PveToken, **_: Any) -> str:
        """create_vm: schema, then storage, config, passthrough and bridge permissions,
        then the VMID (refused if taken) before the qmcreate task; `start=1` starts it."""
        if "vmid" not in params:
            raise param_error(vmid="property is missing and it is not optional")
        vmid = _vmid(params["vmid"], "vmid")
        start = parse_bool("start", params["start"]) if "start" in params else False
        changes, _delete = config_changes(params, skip=_CREATE_ONLY)
        self._check_writes(vmid, changes, [], token)
        for key, value in changes.items():
            if key.startswith("hostpci"):
                check_hostpci(token, key, value)
        try:
            vm = self.world.vm_create(vmid, changes)
        except WorldError as exc:
            raise PveError(500, str(exc)) from exc
        vm.lock = "create"

        def body(log: Callable[[str], None]) -> None:
            with self.world.lock:
                vm.lock = ""
            if start:
                log("Execute autostart")
                try:
                    self.world.vm_start(vmid)
                except WorldError as exc:
                    log(f"start failed: {exc}")

        return self._task("qmcreate", vmid, token, body)

    def _destroy(self, vmid: int, token: PveToken, **_: Any) -> str:
        vm = self._unlocked(vmid)
        if vm.status == "running":
            raise PveError(500, f"VM {vmid} is running - destroy failed")

        def body(log: Callable[[str], None]) -> None:
            log(f"destroying VM {vmid}")
            self.world.vm_destroy(vmid)
            log("Removing image: 100% complete...done.")

        return self._task("qmdestroy", vmid, token, body)

    def _resize(self, vmid: int, params: dict[str, str], token: PveToken, **_: Any) -> str:
        """PUT .../resize (PVE 8 answers with a task); the checks come before the fork."""
        disk, size = params.get("disk", ""), params.get("size", "")
        if not disk or not size:
            raise param_error(
                **{
                    k: "property is missing and it is not optional"
                    for k in ("disk", "size")
                    if not params.get(k)
                }
            )
        self._unlocked(vmid)

        def body(log: Callable[[str], None]) -> None:
            new = self.world.pve.vm_resize(vmid, disk, size)
            log(f"Image resized to {new}G.")

        with self.world.lock:  # refuse now what the worker would refuse
            vm = self._vm(vmid)
            drive = vm.drives.get(disk)
            if drive is None:
                raise PveError(500, f"disk '{disk}' does not exist")
            if "media=cdrom" in drive:
                raise PveError(500, "you can't resize a cdrom")
        return self._task("resize", vmid, token, body)

    def _storage_with(self, storage: str, content: str, *, param: str) -> None:
        """A storage that exists and holds `content`, as PVE checks a target storage."""
        if storage not in STORAGES:
            raise PveError(500, f"storage '{storage}' does not exist")
        if content not in STORAGES[storage].split(","):
            raise param_error(**{param: f"storage '{storage}' does not support vm images"})

    def _check_writes(
        self, vmid: int, changes: dict[str, str], delete: list[str], token: PveToken
    ) -> None:
        """The checks PVE makes before it forks: root-only keys, new disks' storages
        (Datastore.AllocateSpace), the bridges (SDN.Use)."""
        check_root_only(token, [*changes, *delete])
        for _key, storage in new_disks(changes):
            if storage not in STORAGES:
                raise PveError(500, f"storage '{storage}' does not exist")
            token.require(f"/storage/{storage}", "Datastore.AllocateSpace")
            self._storage_with(storage, "images", param="storage")
        for bridge in bridges(changes):
            token.require(f"/sdn/zones/localnetwork/{bridge}", "SDN.Use")

    def _config_changes(self, vmid: int, params: dict[str, str], token: PveToken):
        """Schema, early permissions and the digest; returns (changes, deletions, the
        pending changes to revert)."""
        changes, delete = config_changes(params)
        revert = revert_keys(params)
        self._check_writes(vmid, changes, delete, token)
        with self.world.lock:
            cfg = view.vm_config(self._unlocked(vmid))
        if params.get("digest") and params["digest"] != cfg.get("digest"):
            raise PveError(
                500, "detected modified configuration - file changed by other user? Try again."
            )
        return changes, delete, revert

    def _apply_config(
        self,
        vmid: int,
        changes: dict,
        delete: list[str],
        token: PveToken,
        revert: list[str] | None = None,
    ) -> None:
        """update_vm's worker: a reverted key is set to its running value (its pending
        change goes) or, set only in the pending section, deleted; then passthrough
        permission per hostpci (the old value too), then the change."""
        with self.world.lock:
            vm = self.world.vm(vmid)
            running = vm.config(current=True)
            for key in revert or ():
                if key in running:
                    changes[key] = str(running[key])
                elif key in vm.pending:
                    delete.append(key)
            for key in delete:
                if key in vm.hostpci:
                    check_hostpci(token, key, vm.hostpci[key])
            for key, value in changes.items():
                if key.startswith("hostpci"):
                    if key in vm.hostpci:
                        check_hostpci(token, key, vm.hostpci[key])
                    check_hostpci(token, key, value)
            self.world.vm_set_config(vmid, changes, delete)

    def _config_post(self, vmid: int, params: dict[str, str], token: PveToken, **_: Any) -> str:
        changes, delete, revert = self._config_changes(vmid, params, token)

        def body(log: Callable[[str], None]) -> None:
            for key, value in changes.items():
                log(f"update VM {vmid}: -{key} {value}")
            if delete:
                log(f"update VM {vmid}: -delete {','.join(delete)}")
            if revert:
                log(f"update VM {vmid}: -revert {','.join(revert)}")
            try:
                self._apply_config(vmid, changes, delete, token, revert)
            except PveError as exc:
                raise WorldError(exc.reason, exc.status) from exc

        return self._task("qmconfig", vmid, token, body)

    def _config_put(self, vmid: int, params: dict[str, str], token: PveToken, **_: Any) -> None:
        changes, delete, revert = self._config_changes(vmid, params, token)
        try:
            self._apply_config(vmid, changes, delete, token, revert)
        except WorldError as exc:
            raise PveError(500, str(exc)) from exc
        return None


def _disks(vm: LabVm) -> list[tuple[str, str]]:
    """(key, drive) of the VM's disks (CD-ROMs and unused volumes left out)."""
    return [
        (k, d)
        for k, d in sorted(vm.drives.items())
        if "media=cdrom" not in d.split(",")[1:] and not k.startswith("unused")
    ]


def _vm_disk_storages(vm: LabVm) -> list[tuple[str, str]]:
    return [(k, d.split(",")[0].split(":")[0]) for k, d in _disks(vm)]


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise _param_error(**{name: f"type check ('integer') failed - got '{value}'"}) from None


def _vmid(value: str, name: str) -> int:
    vmid = _int(str(value), name)
    if not _VMID_MIN <= vmid <= _VMID_MAX:
        raise _param_error(
            **{name: f"invalid format - value '{value}' does not look like a valid VM ID"}
        )
    return vmid
