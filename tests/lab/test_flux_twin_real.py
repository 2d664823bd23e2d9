"""End to end on the project's own kubernetes/ tree: every Kustomization Ready at the head.

The tree is copied as it is on disk (committed or not) into a fresh repository, so this
checks what the lab will serve: the real paths build, the LAB-ONLY key decrypts every
SOPS file, the GPU apps land on the GPU node and the four DiskPools are Online.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pygit2
import pytest
from dapper.backends.sops.keys import read_identity_file
from dapper.lab.flux_twin import KS_RT, FluxTwin
from dapper.lab.git_remote import LabGitRemote
from dapper.lab.kinds import by_kind
from dapper.lab.world import Timings, World, pod_gpu_request

MAIN = Path(__file__).resolve().parents[2]
TREE = MAIN / "kubernetes"
SIG = pygit2.Signature("Lab Tester", "tester@lab.invalid")

pytestmark = pytest.mark.skipif(
    not (TREE / "flux" / "cluster").is_dir(), reason="kubernetes/ tree not written yet"
)


def test_real_tree_reconciles_ready_at_head(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    shutil.copytree(TREE, seed / "kubernetes")
    if (MAIN / ".sops.yaml").exists():
        shutil.copy(MAIN / ".sops.yaml", seed / ".sops.yaml")
    repo = pygit2.init_repository(str(seed), initial_head="main")
    repo.index.add_all()
    repo.index.write()
    repo.create_commit("HEAD", SIG, SIG, "tree\n", repo.index.write_tree(), [])
    remote = LabGitRemote.create(seed, tmp_path / "lab")
    world = World(timings=Timings(reconcile_interval=300.0, reconcile_delay=0.01))
    identities = read_identity_file(MAIN / "lab" / "keys" / "lab-only.agekey.txt")
    twin = FluxTwin(world, remote, identities, poll_interval=0.05)
    try:
        twin.start()
        twin.reconcile_now(timeout=60)
        rev = f"main@sha1:{remote.head()[1]}"
        items, _ = world.store.list(KS_RT)
        assert len(items) >= 30
        problems = []
        for ks in items:
            cond = next(c for c in ks["status"]["conditions"] if c["type"] == "Ready")
            key = f"{ks['metadata']['namespace']}/{ks['metadata']['name']}"
            if ks.get("spec", {}).get("suspend"):
                continue
            if cond["status"] != "True" or ks["status"].get("lastAppliedRevision") != rev:
                problems.append(f"{key}: {cond['reason']}: {cond['message']}")
        assert problems == []
        assert twin.last_error == ""

        gpu_pods = [p for p in world.store.list(by_kind("", "Pod"))[0] if pod_gpu_request(p)]
        owners = {
            p["metadata"]["namespace"] + "/" + p["metadata"]["name"].rsplit("-", 2)[0]
            for p in gpu_pods
        }
        assert {"media/plex", "ai/ollama"} <= owners
        assert all(p["spec"]["nodeName"] == "talos-node-gpu-1" for p in gpu_pods)
        # the API server's defaulting: GPU requests equal the limits the charts set
        for p in gpu_pods:
            res = p["spec"]["containers"][0]["resources"]
            assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"]
        # each Deployment's pod template hashes to its own pod-template-hash
        deployments = world.store.list(by_kind("apps", "Deployment"))[0]
        hashes = [
            d["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] for d in deployments
        ]
        assert len(deployments) >= 5 and len(set(hashes)) == len(hashes)

        pools = world.store.list(by_kind("openebs.io", "DiskPool"))[0]
        assert len(pools) == 4
        assert {p["status"]["pool_status"] for p in pools} == {"Online"}
        assert all(p["status"]["capacity"] > p["status"]["used"] > 0 for p in pools)

        sops_age = world.store.get(by_kind("", "Secret"), "flux-system", "sops-age")
        key = base64.b64decode(sops_age["data"]["age.agekey"]).decode()
        assert key.startswith("AGE-SECRET-KEY-1")  # decrypted from the committed SOPS file

        secrets = world.store.list(by_kind("", "Secret"))[0]
        for s in secrets:
            assert "sops" not in s and "stringData" not in s
            assert not any(str(v).startswith("ENC[") for v in (s.get("data") or {}).values())
    finally:
        twin.stop()
        world.close()
        remote.close()
