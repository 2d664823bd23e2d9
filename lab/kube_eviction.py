"""The eviction subresource's PodDisruptionBudget check (policy/v1 semantics, simplified).

A budget selects pods in its namespace; expected = the matching pods, healthy = those
Ready. minAvailable or maxUnavailable (int or percent, rounded up) gives desiredHealthy;
disruptionsAllowed = healthy - desired. A Ready pod may go only while that is > 0; a pod
that is not Ready may go while the budget is satisfied (IfHealthyBudget).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dapper.lab.kube_selectors import match_label_selector_object
from dapper.lab.store import StoreError


@dataclass(frozen=True)
class BudgetState:
    expected: int
    healthy: int
    desired: int

    @property
    def allowed(self) -> int:
        return max(self.healthy - self.desired, 0)


def pod_ready(pod: dict) -> bool:
    if pod.get("status", {}).get("phase") not in (None, "Running"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions", []) or []
    )


def _scaled(value: int | str, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)


def matching_budgets(pdbs: list[dict], pod: dict) -> list[dict]:
    labels = pod.get("metadata", {}).get("labels", {}) or {}
    ns = pod.get("metadata", {}).get("namespace", "")
    return [
        p
        for p in pdbs
        if p["metadata"].get("namespace") == ns
        and match_label_selector_object(p.get("spec", {}).get("selector"), labels)
    ]


def budget_state(pdb: dict, pods: list[dict]) -> BudgetState:
    ns = pdb["metadata"].get("namespace", "")
    selector = pdb.get("spec", {}).get("selector")
    members = [
        p
        for p in pods
        if p["metadata"].get("namespace") == ns
        and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
        and match_label_selector_object(selector, p["metadata"].get("labels", {}) or {})
    ]
    expected = len(members)
    healthy = sum(1 for p in members if pod_ready(p))
    spec = pdb.get("spec", {})
    if spec.get("minAvailable") is not None:
        desired = _scaled(spec["minAvailable"], expected)
    elif spec.get("maxUnavailable") is not None:
        desired = max(expected - _scaled(spec["maxUnavailable"], expected), 0)
    else:
        desired = expected  # neither set: no disruption allowed... as minAvailable 100%
    return BudgetState(expected, healthy, desired)


def status_of(state: BudgetState, generation: int) -> dict:
    return {
        "observedGeneration": generation,
        "currentHealthy": state.healthy,
        "desiredHealthy": state.desired,
        "expectedPods": state.expected,
        "disruptionsAllowed": state.allowed,
        "conditions": [
            {
                "type": "DisruptionAllowed",
                "status": "True" if state.allowed > 0 else "False",
                "reason": "SufficientPods" if state.allowed > 0 else "InsufficientPods",
                "message": "",
                "observedGeneration": generation,
                "lastTransitionTime": "1970-01-01T00:00:00Z",
            }
        ],
    }


def check_eviction(pod: dict, pdbs: list[dict], pods: list[dict]) -> None:
    """Raise the Status the API server answers when this eviction is not allowed."""
    if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
        return
    budgets = matching_budgets(pdbs, pod)
    if not budgets:
        return
    if len(budgets) > 1:
        raise StoreError(
            500,
            "InternalError",
            "This pod has more than one PodDisruptionBudget, which the eviction subresource "
            "does not support.",
        )
    state = budget_state(budgets[0], pods)
    ok = state.allowed > 0 if pod_ready(pod) else state.healthy >= state.desired
    if not ok:
        err = StoreError(
            429,
            "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget.",
        )
        err.causes = [  # type: ignore[attr-defined]
            {
                "reason": "DisruptionBudget",
                "message": f"The disruption budget {budgets[0]['metadata']['name']} needs "
                f"{state.desired} healthy pods and has {state.healthy} currently",
            }
        ]
        raise err
