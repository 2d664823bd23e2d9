"""The lab's Kubernetes API server: HTTPS on loopback over the world's object store.

`start()` binds a random port; the api-down fault closes the listening socket and every
connection (clients see "connection refused") and clearing it reopens the same port.
`stop()` ends watches, connections and threads before returning.
"""

from __future__ import annotations

import logging
import threading
import time

from dapper.lab.credentials import LabCredentials
from dapper.lab.kinds import by_kind
from dapper.lab.kube_api import KubeApi
from dapper.lab.kube_controllers import LabControllers
from dapper.lab.kube_discovery import crd_objects
from dapper.lab.kube_http import Listener
from dapper.lab.pki import Pki, server_ssl_context
from dapper.lab.world import World

log = logging.getLogger("dapper.lab.kube")

FAULT = "api-down:kubernetes"
STOP_TIMEOUT = 5.0  # a handler thread that has not ended by then is left (daemon) and logged


class KubeApiServer:
    """See the module docstring; one instance per lab."""

    def __init__(self, world: World, pki: Pki, credentials: LabCredentials) -> None:
        self.world = world
        self.credentials = credentials
        self.api = KubeApi(world)
        self.port = 0
        self._ctx = server_ssl_context(pki.https_server, alpn=["http/1.1"])
        self._controllers = LabControllers(world.store)
        self._lock = threading.Lock()
        self._listener: Listener | None = None
        self._thread: threading.Thread | None = None
        self._retired: list[tuple[Listener, threading.Thread]] = []
        self._running = False

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> int:
        for crd in crd_objects():
            self.world.store.upsert(
                crd, rt=by_kind("apiextensions.k8s.io", "CustomResourceDefinition")
            )
        self._controllers.start()
        with self._lock:
            self._running = True
            if not self.world.api_down("kubernetes"):
                self._open()
            else:  # start down: reserve a port by opening and closing once
                self._open()
                self._close()
        self.world.on_fault(self._on_fault)
        return self.port

    def _open(self) -> None:
        listener = Listener(("127.0.0.1", self.port), self, self._ctx)
        self.port = listener.server_address[1]
        thread = threading.Thread(
            target=listener.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"lab-kube-api-{self.port}",
            daemon=True,
        )
        thread.start()
        self._listener, self._thread = listener, thread

    def _close(self) -> None:
        """Stop accepting and cut connections now; threads are joined by stop() (an
        api-down fault leaves them to end on their own: their sockets are shut down)."""
        listener, thread = self._listener, self._thread
        if listener is None or thread is None:
            return
        self._listener = self._thread = None
        listener.stopping.set()
        listener.shutdown()
        listener.socket.close()
        listener.drop_connections()
        self._retired.append((listener, thread))

    def _on_fault(self, fault: str, active: bool) -> None:
        if fault != FAULT:
            return
        with self._lock:
            if not self._running:
                return
            if active:
                self._close()
            elif self._listener is None:
                self._open()

    def __enter__(self) -> KubeApiServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Close the listener and every connection (idle keep-alive ones and watches
        included), then join the threads; bounded, so no client can hold it up."""
        with self._lock:
            self._running = False
            self._close()
            retired, self._retired = self._retired, []
        deadline = time.monotonic() + STOP_TIMEOUT
        for listener, thread in retired:
            listener.drop_connections()
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            stuck = listener.join_handlers(deadline)
            listener.server_close()
            if stuck:
                log.warning("kube api: %d connection thread(s) did not end", len(stuck))
        self._controllers.stop()
