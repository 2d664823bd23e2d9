"""What the lab's API servers share: `with`, the loopback address, the `api-down:<api>` fault,
and, for the HTTPS ones (Kubernetes, Proxmox), the listener and its whole lifecycle.

TLS is negotiated in each connection's own thread, so a client that never speaks TLS cannot
stall accept(). Every connection and thread is tracked, so closing is complete: api-down
closes the listening socket and cuts every connection (clients see connection refused),
clearing it reopens the SAME port, and stop() joins every thread with a deadline, so no
client can hold it up. Protocols (routing, auth, bodies) stay in each server's handler.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self

from dapper.backends.clients.talosconfig import join_endpoint
from dapper.lab.pki import Pki
from dapper.lab.world import World

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0  # a thread that has not ended by then is left (daemon) and logged


class LabServer:
    """One API of the world on a loopback port; follows the world's `api-down:<api>` fault."""

    api_name: ClassVar[str]  # the name in the world's faults: kubernetes, proxmox, talos

    def __init__(self, world: World, pki: Pki, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.world = world
        self.pki = pki
        self.host = host
        self.port = port
        world.on_fault(self._on_fault)

    @property
    def endpoint(self) -> str:
        return join_endpoint(self.host, self.port)

    def _on_fault(self, fault: str, active: bool) -> None:
        if fault == f"api-down:{self.api_name}":
            self.api_down_changed(active)

    def api_down_changed(self, down: bool) -> None:
        """Close or reopen the listener(s); must ignore the call while stopped."""
        raise NotImplementedError

    def start(self) -> object:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Listener(ThreadingHTTPServer):
    """One bound socket with its accept thread; the server makes a new one when api-down
    clears. Handler threads and TLS connections are tracked here, so close() can cut them."""

    daemon_threads = True
    block_on_close = False  # reap() joins, with a deadline
    allow_reuse_address = True  # reopen on the same port after api-down

    def __init__(self, owner: HttpsServer) -> None:
        self.owner: Any = owner  # the HttpsServer subclass, as its handlers know it
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[ssl.SSLSocket] = set()
        self._handlers: list[threading.Thread] = []
        super().__init__((owner.host, owner.port), owner.handler)
        self._accept = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"lab-{owner.api_name}-accept-{self.server_port}",
            daemon=True,
        )
        self._accept.start()

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); loopback needs none
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"lab-{self.owner.api_name}-conn-{self.server_port}",
            daemon=True,
        )
        with self._lock:
            self._handlers = [t for t in self._handlers if t.is_alive()]
            self._handlers.append(thread)
        thread.start()

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(HANDSHAKE_TIMEOUT)
        # headers and body go out as two writes; without NODELAY, Nagle and delayed ACKs
        # add ~40 ms to every response
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = self.owner.ssl_context.wrap_socket(
            request, server_side=True, do_handshake_on_connect=False
        )
        try:
            # registered before the handshake, so close() also cuts a client that
            # connected and never spoke TLS
            with self._lock:
                if self.stopping.is_set():
                    return
                self._conns.add(conn)
            conn.do_handshake()
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            with self._lock:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug(
            "%s api: connection from %s failed", self.owner.api_name, client_address, exc_info=True
        )

    def close(self) -> None:
        """Stop accepting, free the port and cut every connection, as a dead server would;
        the threads are left to end on their own (their sockets are shut down)."""
        self.stopping.set()
        with contextlib.suppress(OSError):  # Linux: refuses at once and wakes the accept
            self.socket.shutdown(socket.SHUT_RDWR)  # loop, instead of its next 50 ms poll
        self.shutdown()
        self.socket.close()
        self.drop_connections()

    def drop_connections(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):  # not conn.shutdown: its thread still uses it
                socket.socket.shutdown(conn, socket.SHUT_RDWR)
        self.owner.connections_dropped()

    def reap(self, deadline: float) -> int:
        """Join the accept and connection threads until the monotonic `deadline`; how many
        are still alive."""
        self.drop_connections()
        me = threading.current_thread()
        with self._lock:
            threads = [t for t in (self._accept, *self._handlers) if t is not me]
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        self.server_close()
        return sum(t.is_alive() for t in threads)


class LabHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive on one of the listener's TLS connections; subclasses dispatch()."""

    protocol_version = "HTTP/1.1"
    server: Listener

    def handle_one_request(self) -> None:
        if self.server.stopping.is_set():
            self.close_connection = True
            return
        super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s api %s " + format, self.server.owner.api_name, self.client_address[0], *args)

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_POST(self) -> None:
        self.dispatch("POST")

    def do_PUT(self) -> None:
        self.dispatch("PUT")

    def do_DELETE(self) -> None:
        self.dispatch("DELETE")

    def dispatch(self, method: str) -> None:
        raise NotImplementedError

    def unanswered(self) -> bool:
        """True (and the connection is to close) when this request gets no answer, as from a
        dead or hung server: the API is down or the listener closing. An `api-slow` delay is
        waited out first, cut short by closing."""
        owner, stopping = self.server.owner, self.server.stopping
        drop = owner.world.api_down(owner.api_name) or stopping.is_set()
        if not drop:
            delay = owner.world.api_delay(owner.api_name)
            drop = bool(delay) and stopping.wait(delay)
        if drop:
            self.close_connection = True
        return drop


class HttpsServer(LabServer):
    """A LabServer speaking HTTP/1.1 over TLS through `handler`; subclasses call
    start_serving()/stop_serving() from their start()/stop()."""

    handler: ClassVar[type[LabHandler]]

    def __init__(
        self,
        world: World,
        pki: Pki,
        ssl_context: ssl.SSLContext,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(world, pki, host=host, port=port)
        self.ssl_context = ssl_context
        self._lock = threading.Lock()  # listener lifecycle
        self._listener: Listener | None = None
        self._retired: list[Listener] = []
        self._running = False
        # while closed, the port stays bound but not listening (connection refused, and
        # nobody else can take it before the listener reopens)
        self._reserved: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"https://{self.endpoint}"

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def connections_dropped(self) -> None:
        """Hook: wake whatever a handler waits on, so it sees its listener stopping."""

    def start_serving(self) -> bool:
        """Bind (even while the API is down, so the port is known) and follow api-down;
        False when already serving."""
        with self._lock:
            if self._running:
                return False
            self._running = True
            self._open()
            self._sync()
            return True

    def stop_serving(self) -> bool:
        """Close the listener and every connection (idle keep-alive ones and watches
        included), then join the threads; bounded, so no client can hold it up. False
        when not serving."""
        with self._lock:
            was_running, self._running = self._running, False
            self._close()
            self._release()
            retired, self._retired = self._retired, []
        deadline = time.monotonic() + STOP_TIMEOUT
        stuck = sum(listener.reap(deadline) for listener in retired)
        if stuck:
            log.warning("%s api: %d thread(s) did not end", self.api_name, stuck)
        return was_running

    def api_down_changed(self, down: bool) -> None:
        with self._lock:
            if self._running:
                self._sync()

    def refusing(self) -> bool:
        """Whether the port refuses connections now (the api-down fault; subclasses add
        their own reasons)."""
        return self.world.api_down(self.api_name)

    def _sync(self) -> None:
        down = self.refusing()
        if down and self._listener is not None:
            log.info("%s api down, closing %s", self.api_name, self.url)
            self._close()
        elif not down and self._listener is None:
            log.info("%s api back on %s", self.api_name, self.url)
            self._open()

    def _open(self) -> None:
        self._release()
        self._listener = Listener(self)
        self.port = self._listener.server_port

    def _close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
            self._retired.append(listener)
            if self._running:
                self._reserve()

    def _reserve(self) -> None:
        """Hold the closed port: bound, never listening, so a connect is refused."""
        if self._reserved is not None or not self.port:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:  # kept as before: the port is free until the listener reopens
            sock.close()
            log.debug("%s api: cannot hold port %s while closed", self.api_name, self.port)
            return
        self._reserved = sock

    def _release(self) -> None:
        sock, self._reserved = self._reserved, None
        if sock is not None:
            sock.close()
