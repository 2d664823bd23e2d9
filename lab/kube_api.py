"""The lab API server's resource semantics, independent of HTTP: routing, authorization,
and the verbs (get, list, create, update, patch, delete, evict) over the object store."""

from __future__ import annotations

import base64
import bisect
import contextlib
import json
from dataclasses import dataclass, replace

from dapper.lab.kinds import CUSTOM_GROUPS, RESOURCE_TYPES, ResourceType, by_kind
from dapper.lab.kube_apply import record_update, server_side_apply
from dapper.lab.kube_authz import USERS, permits
from dapper.lab.kube_controllers import emit_event
from dapper.lab.kube_eviction import check_eviction
from dapper.lab.kube_openapi import unknown_fields
from dapper.lab.kube_patch import apply_patch
from dapper.lab.kube_selectors import parse_field_selector, parse_label_selector
from dapper.lab.store import Conflict, NotFound, StoreError
from dapper.lab.world import World
from dapper.lab.world.kube_lifecycle import disruption_condition

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@dataclass(frozen=True)
class Route:
    rt: ResourceType
    version: str
    namespace: str | None  # None: all namespaces (or cluster-scoped)
    name: str | None
    sub: str | None
    watch: bool

    @property
    def api_version(self) -> str:
        return f"{self.rt.group}/{self.version}" if self.rt.group else self.version

    @property
    def resource(self) -> str:
        return f"{self.rt.plural}/{self.sub}" if self.sub else self.rt.plural

    def verb(self, method: str, watch_param: bool) -> str:
        if method == "GET":
            if self.name is None:
                return "watch" if (self.watch or watch_param) else "list"
            return "watch" if self.watch else "get"
        if method == "DELETE":
            return "delete" if self.name else "deletecollection"
        return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


APPLY_PATCH = "application/apply-patch+yaml"


@dataclass(frozen=True)
class WriteOptions:
    """A write's query parameters: who writes (fieldManager), force, dryRun=All."""

    manager: str = ""
    force: bool = False
    dry_run: bool = False
    strict: bool = False  # fieldValidation=Strict: undeclared fields are refused
    grace: int | None = None  # a delete's gracePeriodSeconds (0 with --force: at once)
    uid: str = ""  # a delete's preconditions.uid: only that object, not a same-named successor


def write_options(query: dict[str, str], user_agent: str) -> WriteOptions:
    """As the API server: the manager defaults to the user agent's program name."""
    manager = query.get("fieldManager") or user_agent.split("/")[0].strip()
    return WriteOptions(
        manager=manager,
        force=query.get("force", "").lower() == "true",
        dry_run=query.get("dryRun", "") == "All",
        strict=query.get("fieldValidation", "") == "Strict",
        grace=_grace(query.get("gracePeriodSeconds")),
    )


def _grace(value: object) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise StoreError(400, "BadRequest", f"invalid gracePeriodSeconds {value!r}") from None


def delete_options(opts: WriteOptions, body: bytes) -> WriteOptions:
    """A DELETE's DeleteOptions body (kubectl sends one) completes its query."""
    if not body.strip():
        return opts
    doc = parse_body(body)
    if not isinstance(doc, dict):
        raise StoreError(400, "BadRequest", "DeleteOptions must be an object")
    grace = _grace(doc.get("gracePeriodSeconds"))
    dry = doc.get("dryRun") == ["All"]
    pre = doc.get("preconditions")
    uid = str(pre.get("uid") or "") if isinstance(pre, dict) else ""
    return replace(
        opts,
        grace=opts.grace if grace is None else grace,
        dry_run=opts.dry_run or dry,
        uid=uid or opts.uid,
    )


def check_fields(r: Route, obj: object, opts: WriteOptions, before: object = None) -> None:
    """fieldValidation=Strict: an undeclared field the request adds (to `before`, for a
    patch) is a 400, worded as the API server does."""
    if not opts.strict:
        return
    known = set(unknown_fields(r.rt, r.version, before)) if before is not None else set()
    unknown = [f for f in unknown_fields(r.rt, r.version, obj) if f not in known]
    if unknown:
        fields = ", ".join(f'unknown field "{f}"' for f in unknown)
        raise StoreError(
            400,
            "BadRequest",
            f'{r.rt.kind} in version "{r.version}" cannot be handled as a {r.rt.kind}: '
            f"strict decoding error: {fields}",
        )


def _not_found_path(path: str) -> StoreError:
    return StoreError(404, "NotFound", "the server could not find the requested resource")


def route(path: str) -> Route | None:
    """Map a resource path to a Route; None for a non-resource path."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return None
    watch = rest[0] == "watch"
    if watch:
        rest = rest[1:]
    namespace: str | None = None
    if (
        len(rest) >= 3
        and rest[0] == "namespaces"
        and not (group == "" and len(rest) == 3 and rest[2] in ("status", "finalize"))
    ):
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise _not_found_path(path)
    rt = next(
        (
            t
            for t in RESOURCE_TYPES
            if t.group == group and t.plural == rest[0] and version in t.versions
        ),
        None,
    )
    if rt is None:
        raise _not_found_path(path)
    if namespace is not None and not rt.namespaced:
        raise _not_found_path(path)
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and sub not in rt.subresources:
        raise _not_found_path(path)
    if rt.namespaced and name is not None and namespace is None:
        raise _not_found_path(path)
    return Route(rt, version, namespace, name, sub, watch)


def forbidden(identity: str, verb: str, r: Route) -> StoreError:
    """The RBAC denial the real server sends, word for word in shape."""
    qualified = f"{r.rt.plural}.{r.rt.group}" if r.rt.group else r.rt.plural
    subject = f'{qualified} "{r.name}"' if r.name else qualified
    scope = f'in the namespace "{r.namespace}"' if r.namespace else "at the cluster scope"
    err = StoreError(
        403,
        "Forbidden",
        f'{subject} is forbidden: User "{USERS[identity]}" cannot {verb} resource '
        f'"{r.resource}" in API group "{r.rt.group}" {scope}',
    )
    err.details = {"name": r.name or "", "group": r.rt.group, "kind": r.rt.plural}  # type: ignore[attr-defined]
    return err


def authorize(identity: str, verb: str, r: Route) -> None:
    """admin may do anything; readonly is like the `view` ClusterRole: reads, no Secrets
    (the rule is kube_authz.permits, which also answers `kubectl auth can-i`)."""
    if not permits(identity, verb, r.rt.group, r.rt.plural, r.sub or ""):
        raise forbidden(identity, verb, r)


def parse_body(raw: bytes) -> object:
    if not raw:
        raise StoreError(400, "BadRequest", "the request body is empty")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise StoreError(400, "BadRequest", f"the body of the request is not JSON: {exc}") from None


class KubeApi:
    """Verbs over the world's store; every method returns (code, body dict)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.store = world.store

    def _out(self, obj: dict, r: Route) -> dict:
        obj["apiVersion"] = r.api_version
        return obj

    def list(self, r: Route, label: str, field: str, limit: int = 0, token: str = "") -> dict:
        """A list, or one page of it (`limit`, `continue` as the API server pages: the
        token says after which object the next page starts and at which resourceVersion
        the first was served; the lab serves later pages from the current store). A page
        continues after a key, not an offset, so objects created or deleted between pages
        neither shift one into the next page twice nor out of both."""
        items, rv = self.store.list(r.rt, r.namespace, copy=False)  # in (namespace, name) order
        start = 0
        if token:
            rv, after = _read_continue(token)
            start = bisect.bisect_right(items, after, key=_list_key)
        lp = parse_label_selector(label) if label else None
        fp = parse_field_selector(field, r.rt.kind) if field else None

        def matches(o: dict) -> bool:
            return (lp is None or lp(o["metadata"].get("labels") or {})) and (fp is None or fp(o))

        page: list[dict] = []
        meta: dict = {"resourceVersion": str(rv)}
        for at in range(start, len(items)):
            o = items[at]
            if not matches(o):
                continue
            if limit > 0 and len(page) == limit:  # one more matches: the list goes on
                meta["continue"] = _continue_token(rv, _list_key(page[-1]))
                if lp is None and fp is None:  # as the API server: counted only unfiltered
                    meta["remainingItemCount"] = len(items) - at
                break
            page.append({**o, "apiVersion": r.api_version})
        return {
            "kind": f"{r.rt.kind}List",
            "apiVersion": r.api_version,
            "metadata": meta,
            "items": page,
        }

    def exists(self, r: Route) -> bool:
        return self.store.find(r.rt, r.namespace or "", r.name or "", copy=False) is not None

    def get(self, r: Route) -> dict:
        assert r.name is not None
        return self._out(self.store.get(r.rt, r.namespace or "", r.name), r)

    def create(self, r: Route, body: object, opts: WriteOptions = WriteOptions()) -> dict:
        if r.sub == "eviction":
            return self.evict(r, body)
        if not isinstance(body, dict):
            raise StoreError(400, "BadRequest", "the body must be a JSON object")
        body.setdefault("metadata", {})
        body.setdefault("apiVersion", r.api_version)
        body.setdefault("kind", r.rt.kind)
        if body["kind"] != r.rt.kind:
            raise StoreError(
                400, "BadRequest", f"the kind {body['kind']!r} does not match {r.rt.kind}"
            )
        if r.rt.namespaced:
            sent = body["metadata"].get("namespace")
            if sent and sent != r.namespace:
                raise StoreError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match "
                    "the namespace sent on the request",
                )
            body["metadata"]["namespace"] = r.namespace
        body["metadata"].pop("resourceVersion", None)
        check_fields(r, body, opts)
        if r.rt.kind == "Pod" and not body.get("spec", {}).get("nodeName"):
            node = self.world.schedule(body)
            if node:
                body.setdefault("spec", {})["nodeName"] = node
        record_update(None, body, manager=opts.manager, api_version=r.api_version)
        return self._out(self.store.create(body, rt=r.rt, dry_run=opts.dry_run), r)

    def update(self, r: Route, body: object, opts: WriteOptions = WriteOptions()) -> dict:
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            raise StoreError(400, "BadRequest", "the body must be a JSON object with metadata")
        if body["metadata"].get("name") != r.name:
            raise StoreError(
                400, "BadRequest", "the name of the object does not match the name on the URL"
            )
        check_fields(r, body, opts)
        if r.rt.namespaced:
            body["metadata"]["namespace"] = r.namespace
        with self.store.lock:
            old = self.store.find(r.rt, r.namespace or "", r.name or "", copy=False)
            if old is not None and "managedFields" not in body["metadata"]:
                body["metadata"]["managedFields"] = old["metadata"].get("managedFields")
            record_update(
                old, body, manager=opts.manager, api_version=r.api_version, sub=r.sub or ""
            )
            obj = self.store.replace(
                body, rt=r.rt, status_only=r.sub == "status", dry_run=opts.dry_run
            )
        return self._out(obj, r)

    def patch(
        self, r: Route, content_type: str, body: object, opts: WriteOptions = WriteOptions()
    ) -> dict:
        assert r.name is not None
        if content_type.split(";")[0].strip().lower() == APPLY_PATCH:
            return self.apply(r, body, opts)
        custom = r.rt.group in CUSTOM_GROUPS

        def edit(obj: dict) -> None:
            rv = obj["metadata"].get("resourceVersion")
            patched = apply_patch(content_type, obj, body, custom=custom)
            if not isinstance(patched, dict):
                raise StoreError(422, "Invalid", "the patch did not produce an object")
            sent = patched.get("metadata", {}).get("resourceVersion")
            if sent and sent != rv:
                raise Conflict(f'{r.rt.plural} "{r.name}"')
            if patched.get("metadata", {}).get("name") != r.name:
                raise StoreError(422, "Invalid", "metadata.name: Invalid value: field is immutable")
            check_fields(r, patched, opts, before=obj)
            record_update(
                obj, patched, manager=opts.manager, api_version=r.api_version, sub=r.sub or ""
            )
            obj.clear()
            obj.update(patched)

        obj = self.store.mutate(
            r.rt,
            r.namespace or "",
            r.name,
            edit,
            status_only=r.sub == "status",
            dry_run=opts.dry_run,
        )
        return self._out(obj, r)

    def apply(self, r: Route, body: object, opts: WriteOptions) -> dict:
        """Server-side apply: create or merge with field ownership (see kube_apply)."""
        assert r.name is not None
        if not isinstance(body, dict):
            raise StoreError(400, "BadRequest", "the apply configuration must be an object")
        meta = body.get("metadata") or {}
        if meta.get("name") not in (None, r.name):
            raise StoreError(
                400, "BadRequest", "the name of the object does not match the name on the URL"
            )
        if body.get("kind") not in (None, r.rt.kind):
            raise StoreError(
                400, "BadRequest", f"the kind {body.get('kind')!r} does not match {r.rt.kind}"
            )
        check_fields(r, body, opts)
        ns = r.namespace or ""
        with self.store.lock:
            live = self.store.find(r.rt, ns, r.name)
            sent_rv = meta.get("resourceVersion")
            if sent_rv and sent_rv != (live or {}).get("metadata", {}).get("resourceVersion"):
                raise Conflict(f'{r.rt.plural} "{r.name}"')
            result = server_side_apply(
                live,
                body,
                manager=opts.manager,
                force=opts.force,
                api_version=r.api_version,
                sub=r.sub or "",
            )
            result.setdefault("apiVersion", r.api_version)
            result["kind"] = r.rt.kind
            result.setdefault("metadata", {})["name"] = r.name
            if r.rt.namespaced:
                result["metadata"]["namespace"] = ns
            if live is None:
                result["metadata"].pop("resourceVersion", None)
                obj = self.store.create(result, rt=r.rt, dry_run=opts.dry_run)
            else:
                result["metadata"].pop("resourceVersion", None)
                obj = self.store.replace(
                    result,
                    rt=r.rt,
                    status_only=r.sub == "status",
                    check_rv=False,
                    dry_run=opts.dry_run,
                )
        return self._out(obj, r)

    def delete(self, r: Route, opts: WriteOptions = WriteOptions()) -> dict:
        assert r.name is not None
        with self.world.lock:
            if opts.uid:
                live = self.store.get(r.rt, r.namespace or "", r.name, copy=False)
                actual = live["metadata"].get("uid")
                if actual != opts.uid:
                    raise StoreError(
                        409,
                        "Conflict",
                        f'Operation cannot be fulfilled on {r.rt.plural} "{r.name}": '
                        f"Precondition failed: UID in precondition: {opts.uid}, "
                        f"UID in object meta: {actual}",
                    )
            if r.rt.kind == "Pod" and not opts.dry_run:
                # graceful: Terminating until its kubelet confirms (see kube_lifecycle)
                obj = self.world.kube.pods_lifecycle.delete(
                    r.namespace or "", r.name, grace=opts.grace
                )
                return self._out(obj, r)
            if r.rt.kind == "DiskPool" and not opts.dry_run:
                # Mayastor's finalizer holds a pool with replicas (Terminating until empty)
                held = self.world.mayastor.delete_pool(r.namespace or "", r.name)
                if held is not None:
                    return self._out(held, r)
            obj = self.store.delete(r.rt, r.namespace or "", r.name, dry_run=opts.dry_run)
            if r.rt.kind == "Node" and not opts.dry_run:
                self.world.kube.node_deleted(r.name)  # Mayastor and the pod GC see it go
        return self._out(obj, r)

    def evict(self, r: Route, body: object) -> dict:
        assert r.name is not None and r.namespace is not None
        if isinstance(body, dict):
            meta = body.get("metadata") or {}
            if meta.get("name") and meta["name"] != r.name:
                raise StoreError(
                    400, "BadRequest", "name in URL does not match name in Eviction object"
                )
        pod_rt = by_kind("", "Pod")
        options = (body.get("deleteOptions") if isinstance(body, dict) else None) or {}
        grace = _grace(options.get("gracePeriodSeconds"))
        with self.world.lock:
            pod = self.store.get(pod_rt, r.namespace, r.name)
            pdbs, _ = self.store.list(by_kind("policy", "PodDisruptionBudget"), r.namespace)
            pods, _ = self.store.list(pod_rt, r.namespace)
            check_eviction(pod, pdbs, pods)
            with contextlib.suppress(NotFound):
                self.world.kube.pods_lifecycle.delete(
                    r.namespace,
                    r.name,
                    grace=grace,
                    condition=disruption_condition(
                        "EvictionByEvictionAPI", "Eviction API: evicting"
                    ),
                )
            emit_event(
                self.store,
                pod,
                "Evicted",
                f"Evicted pod {r.namespace}/{r.name} from node "
                f"{pod.get('spec', {}).get('nodeName', '')} through the eviction API",
                component="lab-eviction",
            )
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "code": 201,
        }


def _list_key(obj: dict) -> tuple[str, str]:
    meta = obj["metadata"]
    return meta.get("namespace") or "", meta["name"]


def _continue_token(rv: int, after: tuple[str, str]) -> str:
    """Opaque to clients, as the API server's: where the next page starts, and the
    resourceVersion of the first page."""
    body = json.dumps({"rv": rv, "start": list(after)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode()


def _read_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        body = json.loads(base64.urlsafe_b64decode(token.encode()))
        ns, name = body["start"]
        return int(body["rv"]), (str(ns), str(name))
    except (ValueError, TypeError, KeyError):
        raise StoreError(400, "BadRequest", "continue key is not valid") from None
