"""Health counts of a snapshot, for the console's header and `dapper-tui status`."""

from __future__ import annotations

from dataclasses import dataclass

from dapper.backends.model import ClusterSnapshot


@dataclass(frozen=True)
class Count:
    good: int
    total: int
    faults: int = 0

    def __str__(self) -> str:
        return f"{self.good}/{self.total}"


@dataclass(frozen=True)
class Summary:
    nodes: Count  # Ready
    vms: Count  # running
    gpus: Count  # allocated units / capacity units (faults: devices gone)
    pools: Count  # Online
    kustomizations: Count  # Ready
    errors: int
    warnings: int


def summarize(s: ClusterSnapshot) -> Summary:
    def faults(pane: str) -> int:
        return sum(1 for f in s.faults if f.pane == pane and f.severity == "error")

    vms = [v for v in s.vms if not v.template]  # templates never run
    return Summary(
        nodes=Count(sum(n.ready == "True" for n in s.nodes), len(s.nodes), faults("nodes")),
        vms=Count(sum(v.status == "running" for v in vms), len(vms), faults("vms")),
        gpus=Count(
            sum(g.allocated for g in s.gpus), sum(g.capacity for g in s.gpus), faults("gpus")
        ),
        pools=Count(sum(p.state == "Online" for p in s.pools), len(s.pools), faults("pools")),
        kustomizations=Count(
            sum(k.ready == "True" for k in s.kustomizations), len(s.kustomizations), faults("flux")
        ),
        errors=sum(1 for f in s.faults if f.severity == "error"),
        warnings=sum(1 for f in s.faults if f.severity == "warning"),
    )
