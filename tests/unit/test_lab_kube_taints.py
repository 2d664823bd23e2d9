"""The taint and toleration rules the lab's node lifecycle follows (Kubernetes v1.33)."""

from __future__ import annotations

from dapper.lab.world.kube_taints import (
    NOT_READY,
    UNREACHABLE,
    default_tolerations,
    eviction_delay,
    lifecycle_taints,
    tolerates,
)

UNREACHABLE_NOEXECUTE = {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "x"}


def test_lifecycle_taints_follow_the_ready_condition() -> None:
    assert lifecycle_taints("True") == []
    unknown = lifecycle_taints("Unknown", at=0)
    assert [(t["key"], t["effect"], "timeAdded" in t) for t in unknown] == [
        (UNREACHABLE, "NoSchedule", False),
        (UNREACHABLE, "NoExecute", True),
    ]
    assert {t["key"] for t in lifecycle_taints("False")} == {NOT_READY}


def test_default_tolerations_are_added_only_where_missing() -> None:
    pod: dict = {"spec": {"containers": []}}
    default_tolerations(pod)
    assert sorted((t["key"], t["tolerationSeconds"]) for t in pod["spec"]["tolerations"]) == [
        (NOT_READY, 300),
        (UNREACHABLE, 300),
    ]
    everything: dict = {"spec": {"tolerations": [{"operator": "Exists"}]}}
    default_tolerations(everything)
    assert everything["spec"]["tolerations"] == [{"operator": "Exists"}]
    no_schedule_only: dict = {
        "spec": {
            "tolerations": [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"}]
        }
    }
    default_tolerations(no_schedule_only)
    assert len(no_schedule_only["spec"]["tolerations"]) == 3  # NoSchedule is not NoExecute


def test_tolerates_matches_key_effect_and_value() -> None:
    assert tolerates({"operator": "Exists"}, UNREACHABLE_NOEXECUTE)
    assert tolerates({"key": UNREACHABLE, "operator": "Exists"}, UNREACHABLE_NOEXECUTE)
    assert not tolerates({"key": NOT_READY, "operator": "Exists"}, UNREACHABLE_NOEXECUTE)
    assert not tolerates(
        {"key": UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"}, UNREACHABLE_NOEXECUTE
    )
    assert tolerates({"key": "k", "value": "v"}, {"key": "k", "value": "v", "effect": "NoExecute"})
    assert not tolerates({"key": "k", "value": "w"}, {"key": "k", "value": "v"})


def test_eviction_delay_is_the_least_bounded_toleration() -> None:
    def pod(*tolerations: dict) -> dict:
        return {"spec": {"tolerations": list(tolerations)}}

    seconds = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}
    assert eviction_delay(pod(), [UNREACHABLE_NOEXECUTE]) == 0.0  # not tolerated: at once
    assert (
        eviction_delay(pod({**seconds, "tolerationSeconds": 300}), [UNREACHABLE_NOEXECUTE]) == 300
    )
    assert (
        eviction_delay(
            pod(
                {**seconds, "tolerationSeconds": 300},
                {"operator": "Exists", "tolerationSeconds": 5},
            ),
            [UNREACHABLE_NOEXECUTE],
        )
        == 5
    )
    assert eviction_delay(pod(seconds), [UNREACHABLE_NOEXECUTE]) is None  # for good
    assert eviction_delay(pod(), [{"key": UNREACHABLE, "effect": "NoSchedule"}]) is None
