"""The lab's Proxmox VE API over HTTPS on loopback, as proxmoxer and pvesh-style clients see it.

`/api2/json/...` with API-token auth (`Authorization: PVEAPIToken=user@realm!id=secret`),
an admin token and an auditor token (403 on every write), the `{"data": ...}` envelope,
errors in the status line's reason phrase as pve-http-server sends them, and writes as
asynchronous tasks. The listener follows the World's faults: `api-down:proxmox` closes it
(clients get connection refused) and recovery reopens it on the same port;
`api-slow:proxmox[:s]` delays every response.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import socket
import socketserver
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from dapper.lab.pki import Pki, server_ssl_context
from dapper.lab.pve_api import ADMIN_ROLE, AUDITOR_ROLE, PveApi, PveError, PveToken
from dapper.lab.pve_tasks import TaskManager
from dapper.lab.pve_world import host_uptime
from dapper.lab.world import PVE_HOST, World

log = logging.getLogger(__name__)

API = "proxmox"
PREFIX = "/api2/json"
ADMIN_TOKEN_ID = "root@pam!dapper-tui"
AUDITOR_TOKEN_ID = "monitor@pve!readonly"
_HANDSHAKE_TIMEOUT = 10.0
_IDLE_TIMEOUT = 30.0
_STOP_TIMEOUT = 5.0  # total wait for connection threads when the listener closes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as requests' pool expects
    server_version = "pve-api-daemon/3.0"
    sys_version = ""
    timeout = _IDLE_TIMEOUT
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("pve %s " + format, self.client_address[0], *args)

    def handle_one_request(self) -> None:
        if self.server.owner.closing:
            self.close_connection = True
            return
        super().handle_one_request()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _params(self, query: str) -> dict[str, str]:
        params = dict(parse_qsl(query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            raw = self.rfile.read(length)
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype == "application/json":
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    raise PveError(400, "malformed JSON body") from None
                if not isinstance(body, dict):
                    raise PveError(400, "JSON body must be an object")
                params.update({k: _scalar(v) for k, v in body.items()})
            else:
                params.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        return params

    def _dispatch(self, method: str) -> None:
        owner = self.server.owner
        url = urlsplit(self.path)
        path = unquote(url.path)
        status, reason = 200, "OK"
        try:
            params = self._params(url.query)  # always drain the body, even for a 401
            token = owner.authenticate(self.headers.get("Authorization"))
            if path != PREFIX and not path.startswith(PREFIX + "/"):
                raise PveError(501, f"Method '{method} {path}' not implemented")
            data = owner.api.handle(method, path[len(PREFIX) :], params, token)
            body: dict[str, Any] = {"data": data}
        except PveError as exc:
            status, reason = exc.status, exc.reason
            body = {"data": None}
            if exc.errors:
                body["errors"] = exc.errors
            else:
                body["message"] = exc.reason + "\n"
        except Exception:
            log.exception("pve lab handler failed for %s %s", method, path)
            status, reason = 500, "internal error"
            body = {"data": None, "message": "internal error\n"}
        delay = owner.world.api_delay(API)
        if delay > 0:
            owner.wait_closing(delay)
        payload = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status, _reason_phrase(reason))
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "max-age=0")
        self.end_headers()
        self.wfile.write(payload)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _reason_phrase(text: str) -> str:
    """PVE puts the error message in the status line: one line, latin-1 safe."""
    line = " ".join(text.split())
    return line.encode("latin-1", "replace").decode("latin-1")[:400] or "error"


class _HttpServer(ThreadingHTTPServer):
    """TLS per connection in its handler thread, so a slow or failing handshake never
    holds up accept(); connections and threads are tracked so closing is complete."""

    daemon_threads = True
    block_on_close = False  # PveServer joins its own threads
    allow_reuse_address = True  # reopen on the same port after api-down

    def __init__(self, address: tuple[str, int], owner: PveServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); loopback needs none.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="lab-pve-conn",
            daemon=True,
        )
        self.owner._track_thread(thread)
        thread.start()

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(_HANDSHAKE_TIMEOUT)
        # headers and body go out as two writes; without NODELAY, Nagle and delayed ACKs
        # add ~40 ms to every response
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            conn = self.owner.ssl_context.wrap_socket(
                request, server_side=True, do_handshake_on_connect=False
            )
        except (ssl.SSLError, OSError) as exc:
            log.debug("pve lab: TLS from %s failed: %s", client_address, exc)
            return
        try:
            # registered before the handshake, so closing also cuts a client that
            # connected and never spoke TLS
            if self.owner._register(conn):
                conn.do_handshake()
                self.RequestHandlerClass(conn, client_address, self)
        except (ssl.SSLError, OSError) as exc:
            log.debug("pve lab: connection from %s ended: %s", client_address, exc)
        finally:
            self.owner._unregister(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("pve lab: error serving %s", client_address, exc_info=True)


class PveServer:
    """One PVE node's API on 127.0.0.1; `start()`/`stop()` (or `with`) own every thread."""

    def __init__(
        self,
        world: World,
        pki: Pki,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        node: str = PVE_HOST,
    ) -> None:
        self.world = world
        self.pki = pki
        self.host = host
        self.port = port
        self.node = node
        self.admin_token = PveToken(ADMIN_TOKEN_ID, str(uuid.uuid4()), ADMIN_ROLE)
        self.auditor_token = PveToken(AUDITOR_TOKEN_ID, str(uuid.uuid4()), AUDITOR_ROLE)
        self._tokens = {t.token_id: t for t in (self.admin_token, self.auditor_token)}
        self.tasks = TaskManager(node, boot_ticks=host_uptime(world) * 100)
        self.api = PveApi(world, self.tasks, node)
        self.ssl_context = server_ssl_context(pki.https_server)
        self._lock = threading.RLock()  # listener lifecycle
        self._conn_lock = threading.Lock()
        self._conns: set[ssl.SSLSocket] = set()
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self._httpd: _HttpServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._started = False
        self._subscribed = False

    # -- public

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def ca_pem(self) -> bytes:
        return self.pki.https_ca.cert_pem

    @property
    def listening(self) -> bool:
        return self._httpd is not None

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def add_token(self, token_id: str, role: str = ADMIN_ROLE) -> PveToken:
        """Another token (e.g. for a config the lab writes); its secret is fresh."""
        token = PveToken(token_id, str(uuid.uuid4()), role)
        self._tokens[token_id] = token
        return token

    def start(self) -> PveServer:
        with self._lock:
            if self._started:
                return self
            self._started = True
            self.tasks.start()
            self._open()  # bind once so the port is known even if the API starts down
            if not self._subscribed:
                self.world.on_fault(self._on_fault)
                self._subscribed = True
            self.sync_faults()
        return self

    def stop(self) -> None:
        with self._lock:
            if not self._started:
                return
            self._started = False
            self._close()
            self.tasks.stop()

    def __enter__(self) -> PveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def sync_faults(self) -> None:
        """Open or close the listener to match `api-down:proxmox` (idempotent)."""
        with self._lock:
            if not self._started:
                return
            down = self.world.api_down(API)
            if down and self._httpd is not None:
                log.info("pve lab: API down, closing %s", self.url)
                self._close()
            elif not down and self._httpd is None:
                log.info("pve lab: API back on %s", self.url)
                self._open()

    def authenticate(self, header: str | None) -> PveToken:
        if not header:
            raise PveError(401, "No ticket")
        scheme, _, value = header.strip().partition("=")
        if scheme != "PVEAPIToken" or "!" not in value:
            raise PveError(401, "authentication failure")
        token_id, _, secret = value.partition("=")
        token = self._tokens.get(token_id.strip())
        if token is None or not hmac.compare_digest(token.secret.encode(), secret.strip().encode()):
            raise PveError(401, "authentication failure")
        return token

    def wait_closing(self, seconds: float) -> None:
        """Sleep for a slow-API fault, cut short when the listener closes."""
        self._closing.wait(seconds)

    # -- listener

    def _on_fault(self, fault: str, active: bool) -> None:
        if fault == f"api-down:{API}":
            self.sync_faults()

    def _open(self) -> None:
        httpd = _HttpServer((self.host, self.port), self)
        self.port = int(httpd.server_address[1])
        self._closing.clear()
        thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="lab-pve-accept",
            daemon=True,
        )
        self._httpd, self._serve_thread = httpd, thread
        thread.start()

    def _close(self) -> None:
        httpd, thread = self._httpd, self._serve_thread
        self._httpd = self._serve_thread = None
        if httpd is None:
            return
        httpd.shutdown()
        if thread is not None:
            thread.join()
        httpd.server_close()
        with self._conn_lock:
            self._closing.set()
            conns, threads = list(self._conns), list(self._threads)
            self._threads = []
        for conn in conns:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(conn, socket.SHUT_RDWR)
        me = threading.current_thread()
        deadline = time.monotonic() + _STOP_TIMEOUT
        for t in threads:
            if t is not me:
                t.join(timeout=max(0.0, deadline - time.monotonic()))

    def _track_thread(self, thread: threading.Thread) -> None:
        with self._conn_lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)

    def _register(self, conn: ssl.SSLSocket) -> bool:
        with self._conn_lock:
            if self._closing.is_set():
                return False
            self._conns.add(conn)
            return True

    def _unregister(self, conn: ssl.SSLSocket) -> None:
        with self._conn_lock:
            self._conns.discard(conn)
