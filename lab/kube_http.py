"""HTTP/1.1 over TLS for the lab's Kubernetes API: request parsing, auth, JSON and
Status replies, and chunked watch streams. Semantics live in kube_api."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from dapper.lab import kube_discovery as disc
from dapper.lab.kube_api import KubeApi, Route, authorize, parse_body, route
from dapper.lab.kube_selectors import parse_field_selector, parse_label_selector
from dapper.lab.kube_tables import to_table
from dapper.lab.store import Gone, StoreError

if TYPE_CHECKING:
    from dapper.lab.kube_server import KubeApiServer

log = logging.getLogger("dapper.lab.kube")

PUBLIC_PATHS = frozenset({"/version", "/healthz", "/livez", "/readyz"})
MAX_WATCH = 1800.0
HANDSHAKE_TIMEOUT = 10.0
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


class Listener(ThreadingHTTPServer):
    """One bound socket; the server makes a new one when the api-down fault clears.
    TLS is negotiated in the handler thread so a slow client cannot stall accept().
    Handler threads are tracked here and joined with a bound by `join_handlers`, so a
    client that keeps a connection open can never hold up stop()."""

    daemon_threads = True
    block_on_close = False  # join_handlers does it, with a deadline
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], owner: KubeApiServer, ctx: ssl.SSLContext) -> None:
        self.owner = owner
        self.ssl_context = ctx
        self.stopping = threading.Event()
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        self.handlers: list[threading.Thread] = []
        super().__init__(addr, KubeHandler)

    def process_request(self, request, client_address) -> None:  # type: ignore[override]
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"lab-kube-conn-{self.server_address[1]}",
            daemon=True,
        )
        with self.conn_lock:
            self.handlers = [t for t in self.handlers if t.is_alive()]
            self.handlers.append(thread)
        thread.start()

    def join_handlers(self, deadline: float) -> list[threading.Thread]:
        """Join every handler thread until the monotonic `deadline`; the ones still alive."""
        with self.conn_lock:
            threads = list(self.handlers)
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        alive = [t for t in threads if t.is_alive()]
        with self.conn_lock:
            self.handlers = alive
        return alive

    def server_bind(self) -> None:
        # skip HTTPServer's reverse DNS lookup of the bind address
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def handle_error(self, request, client_address) -> None:
        log.debug("kube api connection from %s failed", client_address, exc_info=True)

    def drop_connections(self) -> None:
        """Cut every open connection (keep-alive and watches), as a dead server would, and
        wake the watches waiting for store events so they see `stopping` at once."""
        with self.conn_lock:
            conns = list(self.connections)
        for c in conns:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(c, socket.SHUT_RDWR)
        self.owner.world.store.wake()


class KubeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Listener
    timeout = IDLE_TIMEOUT  # an idle keep-alive connection is closed after this

    # -- connection lifecycle ------------------------------------------------------------

    def setup(self) -> None:
        raw = self.request
        raw.settimeout(HANDSHAKE_TIMEOUT)
        wrapped = self.server.ssl_context.wrap_socket(
            raw, server_side=True, do_handshake_on_connect=False
        )
        self._conn = wrapped  # wrap_socket detached `raw`; the TLS socket owns the fd
        with self.server.conn_lock:
            self.server.connections.add(wrapped)
        if self.server.stopping.is_set():
            socket.socket.shutdown(wrapped, socket.SHUT_RDWR)
        wrapped.do_handshake()
        self.request = wrapped
        wrapped.settimeout(self.timeout)
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.conn_lock:
                self.server.connections.discard(self._conn)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # -- dispatch ------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        owner = self.server.owner
        body = self._read_body()
        world = owner.world
        if world.api_down("kubernetes") or self.server.stopping.is_set():
            self.close_connection = True
            return
        delay = world.api_delay("kubernetes")
        if delay and self.server.stopping.wait(delay):
            self.close_connection = True
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
            doc = api.list(r, query.get("labelSelector", ""), query.get("fieldSelector", ""))
            self._json(
                200, self._maybe_table(r, doc["items"], doc["metadata"]["resourceVersion"], doc)
            )
            return
        if verb == "get":
            obj = api.get(r)
            self._json(
                200, self._maybe_table(r, [obj], obj["metadata"].get("resourceVersion", ""), obj)
            )
            return
        self._write(api, r, verb, body, who)

    def _write(self, api: KubeApi, r: Route, verb: str, body: bytes, who: str) -> None:
        if verb == "create":
            obj = api.create(r, parse_body(body))
            code = 201
        elif verb == "update":
            obj, code = api.update(r, parse_body(body)), 200
        elif verb == "patch":
            obj, code = api.patch(r, self.headers.get("Content-Type", ""), parse_body(body)), 200
        elif verb == "delete":
            obj, code = api.delete(r), 200
        else:
            raise StoreError(405, "MethodNotAllowed", f"{verb} is not supported by the lab")
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
        parts = path.split("/")[1:]
        if parts[0] == "apis" and len(parts) == 2:
            return disc.api_group(parts[1]) or _raise_not_found()
        if parts[0] == "apis" and len(parts) == 3:
            return disc.resource_list(parts[1], parts[2]) or _raise_not_found()
        return None

    def _maybe_table(self, r: Route, items: list[dict], rv: str, doc: dict) -> dict:
        if "as=Table" in self.headers.get("Accept", ""):
            return to_table(r.rt, items, rv)
        return doc

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
        self._end_chunks()
        self.close_connection = True

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _raise_not_found() -> dict:
    raise StoreError(404, "NotFound", "the server could not find the requested resource")
