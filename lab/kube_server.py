"""The lab's Kubernetes API server: HTTPS on loopback over the world's object store.

`start()` binds a random port; the api-down fault closes the listening socket and every
connection (clients see "connection refused") and clearing it reopens the same port. A lab
that starts before the cluster exists (stage bare) holds the port refusing connections,
as the VIP nobody holds yet, and listens once etcd is bootstrapped.
`stop()` ends watches, connections and threads before returning.
"""

from __future__ import annotations

from dapper.lab.credentials import LabCredentials
from dapper.lab.https_server import HttpsServer
from dapper.lab.kinds import by_kind
from dapper.lab.kube_api import KubeApi
from dapper.lab.kube_controllers import LabControllers
from dapper.lab.kube_discovery import crd_objects
from dapper.lab.kube_events import EventHistory
from dapper.lab.kube_http import KubeHandler
from dapper.lab.kube_leases import NodeLeases
from dapper.lab.pki import Pki, server_ssl_context
from dapper.lab.world import World


class KubeApiServer(HttpsServer):
    """See the module docstring; one instance per lab."""

    api_name = "kubernetes"
    handler = KubeHandler

    def __init__(
        self, world: World, pki: Pki, credentials: LabCredentials, *, at_bootstrap: bool = False
    ) -> None:
        super().__init__(world, pki, server_ssl_context(pki.https_server, alpn=["http/1.1"]))
        self.credentials = credentials
        # a cluster still to bootstrap (stage bare): no API server answers at the VIP until
        # etcd exists; the port is held and refuses connections until then
        self.at_bootstrap = at_bootstrap
        if at_bootstrap:
            world.talos.on_bootstrapped.append(lambda: self.api_down_changed(False))
        self.api = KubeApi(world)
        self._controllers = LabControllers(world.store)
        self.leases = NodeLeases(world.store)
        self.events = EventHistory(
            world.store, seed=world.timings.event_history, live_flux=lambda: world.flux_events
        )

    def start(self) -> int:
        for crd in crd_objects():
            self.world.store.upsert(
                crd, rt=by_kind("apiextensions.k8s.io", "CustomResourceDefinition")
            )
        self._controllers.start()
        self.leases.start()
        self.events.start()
        self.start_serving()
        return self.port

    def refusing(self) -> bool:
        return super().refusing() or (self.at_bootstrap and not self.world.talos.bootstrapped())

    def connections_dropped(self) -> None:
        self.world.store.wake()  # watches waiting for events see their listener stopping

    def stop(self) -> None:
        self.stop_serving()
        self.leases.stop()
        self.events.stop()
        self._controllers.stop()
