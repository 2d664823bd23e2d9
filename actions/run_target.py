"""Where a run acts: its repository, the repository's remote and the cluster's identity.

A journal records this at the start; resume compares it with where the configuration
points now, so a run made against one cluster is never finished against another (a new
value generated, committed, pushed and reconciled on the wrong cluster).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from dapper.backends.errors import BackendError

if TYPE_CHECKING:
    from dapper.actions.engine import RunContext


@dataclass(frozen=True)
class RunTarget:
    repo: str = ""
    remote_url: str = ""
    api_server: str = ""
    cluster_uid: str = ""  # the kube-system namespace's uid: one per cluster, ever

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> RunTarget:
        if not isinstance(data, dict):
            return cls()
        return cls(**{k: str(data.get(k) or "") for k in cls.__dataclass_fields__})

    def describe(self) -> str:
        cluster = self.api_server or "no cluster"
        if self.cluster_uid:
            cluster += f" (kube-system {self.cluster_uid[:8]})"
        return f"{cluster}, repository {self.remote_url or self.repo or '?'}"

    def differs_from(self, now: RunTarget) -> bool:
        """True when a field recorded at the start is known now and is another value."""
        pairs = (
            (self.remote_url, now.remote_url),
            (self.api_server, now.api_server),
            (self.cluster_uid, now.cluster_uid),
        )
        return any(then and current and then != current for then, current in pairs)


def current_target(ctx: RunContext, *, cluster: bool) -> RunTarget:
    """Where `ctx` acts now; the cluster part only when the runbook talks to one."""
    api_server = cluster_uid = ""
    if cluster:
        # an unreachable cluster is preflight's to report, in its own words
        with contextlib.suppress(BackendError):
            api_server, cluster_uid = ctx.cluster.identity()
    return RunTarget(
        repo=str(ctx.repo.root),
        remote_url=ctx.repo.remote_url(ctx.config.repo_remote),
        api_server=api_server,
        cluster_uid=cluster_uid,
    )
