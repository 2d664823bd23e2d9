"""HTTP/1.1 over TLS for the lab's Kubernetes API: request parsing, auth, JSON and
Status replies, and chunked watch streams. Semantics live in kube_api."""

from __future__ import annotations

import json
import logging
import ssl
from urllib.parse import parse_qs, urlsplit

from dapper.lab import kube_discovery as disc
from dapper.lab import kube_openapi
from dapper.lab.https_server import LabHandler
from dapper.lab.kube_api import (
    APPLY_PATCH,
    KubeApi,
    Route,
    authorize,
    delete_options,
    parse_body,
    route,
    write_options,
)
from dapper.lab.kube_apply import parse_apply_body
from dapper.lab.kube_authz import AUTHZ_GROUP, USERS, access_review, permits, rules_review
from dapper.lab.kube_protobuf import PROTOBUF
from dapper.lab.kube_protobuf import decode as decode_protobuf
from dapper.lab.kube_selectors import parse_field_selector, parse_label_selector
from dapper.lab.kube_tables import to_table
from dapper.lab.mayastor_rest import answer, proxy_target, serves
from dapper.lab.store import Gone, StoreError

log = logging.getLogger("dapper.lab.kube")

PUBLIC_PATHS = frozenset({"/version", "/healthz", "/livez", "/readyz"})
MAX_WATCH = 1800.0
IDLE_TIMEOUT = 90.0  # as Go's http.Transport idles out pooled connections


def status_body(code: int, reason: str, message: str, **extra: object) -> dict:
    body: dict = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    body.update({k: v for k, v in extra.items() if v})
    return body


class KubeHandler(LabHandler):
    timeout = IDLE_TIMEOUT  # an idle keep-alive connection is closed after this

    def do_PATCH(self) -> None:
        self.dispatch("PATCH")

    def dispatch(self, method: str) -> None:
        body = self._read_body()
        if self.unanswered():
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            identity = self._identity(url.path)
            self._serve(method, url.path, query, body, identity)
        except StoreError as err:
            extra = {}
            if getattr(err, "details", None) or getattr(err, "causes", None):
                extra["details"] = {
                    **(getattr(err, "details", None) or {}),
                    **({"causes": err.causes} if getattr(err, "causes", None) else {}),  # type: ignore[attr-defined]
                }
            self._json(err.code, status_body(err.code, err.reason, err.message, **extra))
        except (BrokenPipeError, ConnectionError, ssl.SSLError, TimeoutError):
            self.close_connection = True
        except Exception:  # the lab must answer, not hang the client
            log.exception("kube api %s %s failed", method, self.path)
            self._json(500, status_body(500, "InternalError", "internal error in the lab"))

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _identity(self, path: str) -> str:
        auth = self.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        identity = self.server.owner.credentials.kube_identity(token) if token else None
        if identity is None:
            if path in PUBLIC_PATHS:
                return "anonymous"
            raise StoreError(401, "Unauthorized", "Unauthorized")
        return identity

    def _serve(self, method: str, path: str, query: dict[str, str], body: bytes, who: str) -> None:
        doc = self._non_resource(path) if method == "GET" else None
        if doc is not None:
            self._json(200, doc)
            return
        proxied = proxy_target(path)
        if proxied is not None:
            self._proxy(method, *proxied, who)
            return
        r = route(path)
        if r is None:
            raise StoreError(404, "NotFound", "the server could not find the requested resource")
        watch_param = query.get("watch", "").lower() in ("true", "1")
        verb = r.verb(method, watch_param)
        authorize(who, verb, r)
        api = self.server.owner.api
        if verb == "watch":
            self._watch(r, query)
            return
        if verb == "list":
            try:
                limit = int(query.get("limit") or 0)
            except ValueError:
                raise StoreError(400, "BadRequest", "limit must be a number") from None
            doc = api.list(
                r,
                query.get("labelSelector", ""),
                query.get("fieldSelector", ""),
                limit,
                query.get("continue", ""),
            )
            self._json(
                200, self._maybe_table(r, doc["items"], doc["metadata"]["resourceVersion"], doc)
            )
            return
        if r.rt.group == AUTHZ_GROUP and verb == "create":
            review = access_review if r.rt.kind == "SelfSubjectAccessReview" else rules_review
            ctype = self.headers.get("Content-Type", "")
            spec = decode_protobuf(body) if ctype.startswith(PROTOBUF) else parse_body(body)
            self._json(201, review(who, spec))  # type: ignore[arg-type]
            return
        if verb == "get":
            obj = api.get(r)
            self._json(
                200, self._maybe_table(r, [obj], obj["metadata"].get("resourceVersion", ""), obj)
            )
            return
        self._write(api, r, verb, body, who, query)

    def _proxy(self, method: str, namespace: str, service: str, rest: str, who: str) -> None:
        """The service proxy, for the one Service the lab runs behind it: Mayastor's
        api-rest (see mayastor_rest); the backend's answer passes through verbatim."""
        verb = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch"}.get(
            method, method.lower()
        )
        name = service.split(":")[1] if service.count(":") == 2 else service.split(":")[0]
        if not permits(who, verb, "", "services", "proxy"):
            raise StoreError(
                403,
                "Forbidden",
                f'services "{name}" is forbidden: User "{USERS[who]}" cannot {verb} resource '
                f'"services/proxy" in API group "" in the namespace "{namespace}"',
            )
        if not serves(self.server.owner.world, namespace, service):
            raise StoreError(404, "NotFound", f'services "{name}" not found')
        code, doc = answer(self.server.owner.world, method, rest)
        self._json(code, doc)  # type: ignore[arg-type]

    def _write(
        self, api: KubeApi, r: Route, verb: str, body: bytes, who: str, query: dict[str, str]
    ) -> None:
        opts = write_options(query, self.headers.get("User-Agent", ""))
        ctype = self.headers.get("Content-Type", "")

        if verb == "create":
            obj = api.create(r, parse_body(body), opts)
            code = 201
        elif verb == "update":
            obj, code = api.update(r, parse_body(body), opts), 200
        elif verb == "patch":
            apply = ctype.split(";")[0].strip().lower() == APPLY_PATCH
            parsed = parse_apply_body(body) if apply else parse_body(body)
            existed = apply and api.exists(r)
            obj = api.patch(r, ctype, parsed, opts)
            code = 201 if apply and not existed else 200
        elif verb == "delete":
            opts = delete_options(opts, body)
            obj, code = api.delete(r, opts), 200
        else:
            raise StoreError(405, "MethodNotAllowed", f"{verb} is not supported by the lab")
        if not opts.dry_run:
            self.server.owner.world.record_write("kubernetes", f"{verb} {r.resource}", who)
        self._json(code, obj)

    def _non_resource(self, path: str) -> dict | str | None:
        path = path.rstrip("/") or "/"
        owner = self.server.owner
        if path == "/version":
            return disc.SERVER_VERSION
        if path in ("/healthz", "/livez", "/readyz"):
            return "ok"
        if path == "/api":
            return disc.api_versions(f"127.0.0.1:{owner.port}")
        if path == "/api/v1":
            return disc.resource_list("", "v1")
        if path == "/apis":
            return disc.api_group_list()
        if path.startswith("/openapi/"):
            return self._openapi(path)
        parts = path.split("/")[1:]
        if parts[0] == "apis" and len(parts) == 2:
            return disc.api_group(parts[1]) or _raise_not_found()
        if parts[0] == "apis" and len(parts) == 3:
            return disc.resource_list(parts[1], parts[2]) or _raise_not_found()
        return None

    def _openapi(self, path: str) -> dict:
        if path == "/openapi/v3":
            return kube_openapi.v3_root()
        if path == "/openapi/v2":
            accept = self.headers.get("Accept", "") or "*/*"
            if "json" not in accept and "*/*" not in accept:
                raise StoreError(406, "NotAcceptable", "only application/json is served here")
            return kube_openapi.v2_document()
        return kube_openapi.v3_for_path(path) or _raise_not_found()

    def _maybe_table(self, r: Route, items: list[dict], rv: str, doc: dict) -> dict:
        """The Table form when asked for it. A list's page keeps its `continue` token and
        remaining count there too, as the API server's does: kubectl asks for 500 rows
        at a time and follows the token, so without it `get pods -A` stops at 500."""
        if "as=Table" not in self.headers.get("Accept", ""):
            return doc
        table = to_table(r.rt, items, rv)
        for key in ("continue", "remainingItemCount"):  # only a list's page has them
            if key in doc["metadata"]:
                table["metadata"][key] = doc["metadata"][key]
        return table

    # -- replies -------------------------------------------------------------------------

    def _json(self, code: int, doc: dict | str) -> None:
        if isinstance(doc, str):
            data, ctype = doc.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = json.dumps(doc, separators=(",", ":")).encode(), "application/json"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, doc: dict) -> None:
        data = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch(self, r: Route, query: dict[str, str]) -> None:
        owner = self.server.owner
        store = owner.world.store
        label = query.get("labelSelector", "")
        field = query.get("fieldSelector", "")
        lp = parse_label_selector(label) if label else None
        fp = parse_field_selector(field, r.rt.kind) if field else None
        if r.name is not None:
            by_name = r.name
            fp0 = fp
            fp = lambda o: o["metadata"].get("name") == by_name and (fp0 is None or fp0(o))  # noqa: E731
        table = "as=Table" in self.headers.get("Accept", "")
        timeout = min(float(query.get("timeoutSeconds") or MAX_WATCH), MAX_WATCH)
        bookmarks = query.get("allowWatchBookmarks", "").lower() == "true"
        rv_param = query.get("resourceVersion", "")

        def matches(o: dict) -> bool:
            return (lp is None or lp(o["metadata"].get("labels") or {})) and (fp is None or fp(o))

        def emit(type_: str, obj: dict) -> None:
            obj = {**obj, "apiVersion": r.api_version}  # events and lists are shared
            if table:
                obj = to_table(r.rt, [obj], obj["metadata"].get("resourceVersion", ""))
            self._chunk({"type": type_, "object": obj})

        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()
        try:
            since = int(rv_param) if rv_param not in ("", "0") else 0
        except ValueError:
            since = -1
        if since < 0:
            self._chunk(
                {
                    "type": "ERROR",
                    "object": status_body(
                        400, "BadRequest", f"invalid resource version {rv_param!r}"
                    ),
                }
            )
            self._end_chunks()
            return
        last = since
        try:
            if since == 0:
                items, last = store.list(r.rt, r.namespace, copy=False)
                for obj in items:
                    if matches(obj):
                        emit("ADDED", obj)
            for ev in store.events_since(
                r.rt, r.namespace, last, timeout=timeout, stop=self.server.stopping
            ):
                last = ev.rv
                if matches(ev.obj):
                    emit(ev.type, ev.obj)
            if bookmarks and not self.server.stopping.is_set():
                self._chunk(
                    {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": r.rt.kind,
                            "apiVersion": r.api_version,
                            "metadata": {"resourceVersion": str(max(last, store.resource_version))},
                        },
                    }
                )
        except Gone as err:
            self._chunk({"type": "ERROR", "object": status_body(410, "Expired", err.message)})
        self._end_chunks()  # and the connection stays open for the next request, as Go's
        # net/http keeps it: a client's pool reuses it at once for its next watch

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _raise_not_found() -> dict:
    raise StoreError(404, "NotFound", "the server could not find the requested resource")
