"""Steady pod churn for benchmark labs: `rate` pod changes per second, as a busy cluster has.

Four changes in five are a container restart (the pod is MODIFIED: restartCount and
the last state move); the fifth deletes a pod its controller replaces at once (DELETED,
then ADDED under a new name, or the same ordinal for a StatefulSet). Only the synthetic
benchmark apps' pods churn when there are any, so the real tree's workloads stay as the
tree says. Changes go through the object store, so watches deliver them as they would
deliver a kubelet's and a controller's writes.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time

from dapper.lab.kinds import by_kind
from dapper.lab.store import NotFound
from dapper.lab.world import World

log = logging.getLogger(__name__)

POD = by_kind("", "Pod")
REPLACE_EVERY = 5  # one change in five is a delete and a replacement
TICK = 0.1  # seconds between batches
REREAD = 10.0  # seconds between re-reads of the pods that may churn


class Churn:
    """A daemon thread making `rate` changes per second until stop()."""

    def __init__(self, world: World, rate: float, *, seed: int = 7) -> None:
        self.world = world
        self.rate = rate
        self.changes = 0
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._keys: list[tuple[str, str]] = []
        self._read_at = 0.0
        self._thread = threading.Thread(target=self._run, name="lab-churn", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _candidates(self) -> list[tuple[str, str]]:
        """(namespace, name) of the pods that may churn, re-read every REREAD seconds."""
        now = time.monotonic()
        if not self._keys or now - self._read_at > REREAD:
            pods, _ = self.world.store.list(POD, copy=False)
            owned = [
                p
                for p in pods
                if (p["metadata"].get("ownerReferences") or [{}])[0].get("kind")
                in ("ReplicaSet", "StatefulSet")
            ]
            bench = [p for p in owned if p["metadata"]["namespace"].startswith("bench-")]
            self._keys = [
                (p["metadata"]["namespace"], p["metadata"]["name"]) for p in bench or owned
            ]
            self._read_at = now
        return self._keys

    def _run(self) -> None:
        owed = 0.0
        while not self._stop.wait(TICK):
            owed += self.rate * TICK
            batch, owed = int(owed), owed - int(owed)
            for _ in range(batch):
                try:
                    self._one()
                except Exception:  # churn must never take the lab down
                    log.debug("churn change failed", exc_info=True)

    def _one(self) -> None:
        keys = self._candidates()
        if not keys:
            return
        index = self._rng.randrange(len(keys))
        ns, name = keys[index]
        self.changes += 1
        if self.changes % REPLACE_EVERY == 0:
            self._replace(ns, name, index)
        else:
            with contextlib.suppress(NotFound):
                self.world.store.mutate(POD, ns, name, _restart, status_only=True)

    def _replace(self, ns: str, name: str, index: int) -> None:
        with self.world.lock:
            try:
                pod = self.world.store.delete(POD, ns, name)
            except NotFound:
                return
            new = self.world.replace_pod(pod)
        if new is not None:
            self._keys[index] = (ns, new["metadata"]["name"])


def _key(pod: dict) -> tuple[str, str]:
    return pod["metadata"]["namespace"], pod["metadata"]["name"]


def _controller(pod: dict) -> str:
    return str(((pod["metadata"].get("ownerReferences") or [{}])[0]).get("kind") or "")


def _restart(pod: dict) -> None:
    """A container restart as the kubelet reports it."""
    statuses = (pod.setdefault("status", {})).setdefault("containerStatuses", [])
    if not statuses:
        statuses.append({"name": "app", "ready": True, "restartCount": 0})
    first = statuses[0]
    first["restartCount"] = int(first.get("restartCount") or 0) + 1
    first["lastState"] = {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
