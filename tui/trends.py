"""Node CPU and memory over the session, for the sparkline in the node detail.

Sampled from each new snapshot (at most one sample per snapshot time); bounded, so a
console left open for days holds a fixed amount.
"""

from __future__ import annotations

from collections import deque

from dapper.backends.model import ClusterSnapshot

SAMPLES = 60


class NodeTrends:
    def __init__(self, samples: int = SAMPLES) -> None:
        self.samples = samples
        self._cpu: dict[str, deque[float]] = {}
        self._mem: dict[str, deque[float]] = {}
        self._last = 0.0

    def add(self, snapshot: ClusterSnapshot) -> None:
        if snapshot.taken_at <= self._last:
            return
        self._last = snapshot.taken_at
        for n in snapshot.nodes:
            if n.cpu_usage is not None:
                self._cpu.setdefault(n.name, deque(maxlen=self.samples)).append(n.cpu_usage)
            if n.mem_usage is not None:
                self._mem.setdefault(n.name, deque(maxlen=self.samples)).append(n.mem_usage)

    def cpu(self, node: str) -> list[float]:
        return list(self._cpu.get(node, ()))

    def mem(self, node: str) -> list[float]:
        return list(self._mem.get(node, ()))
