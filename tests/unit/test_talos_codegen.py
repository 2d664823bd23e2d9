"""The committed Talos stubs are exactly what the committed protos generate, and they
speak the Talos wire format (protocols.md §1.3 test vector)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from dapper.backends.clients.talos_pb import (
    common_pb2,
    machine_pb2,
    storage_grpc,
    storage_pb2,
)

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "backends" / "clients" / "talos_pb"


def _generator():
    path = ROOT / "backends" / "clients" / "talos_proto" / "generate.py"
    spec = importlib.util.spec_from_file_location("talos_generate", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_regenerated(tmp_path: Path) -> None:
    written = _generator().generate(tmp_path)
    fresh = {p.name: p.read_bytes() for p in written}
    committed = {
        p.name: p.read_bytes()
        for p in COMMITTED.iterdir()
        if p.is_file() and p.suffix in (".py", ".pyi")
    }
    assert sorted(fresh) == sorted(committed)
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"regenerate with backends/clients/talos_proto/generate.py: {stale}"


def test_generated_imports_are_relative() -> None:
    for path in COMMITTED.glob("*.py"):
        for line in path.read_text().splitlines():
            assert not line.startswith(("import common_pb2", "import machine_pb2")), path


def test_version_response_wire_vector() -> None:
    resp = machine_pb2.VersionResponse(
        messages=[
            machine_pb2.Version(
                metadata=common_pb2.Metadata(hostname="n1"),
                version=machine_pb2.VersionInfo(tag="v1.9.0", arch="amd64"),
            )
        ]
    )
    wire = "0a170a040a026e31120f0a0676312e392e303205616d643634"
    assert resp.SerializeToString().hex() == wire
    back = machine_pb2.VersionResponse.FromString(bytes.fromhex(wire))
    assert back.messages[0].version.tag == "v1.9.0"
    assert back.messages[0].metadata.hostname == "n1"


def test_method_paths_match_talos() -> None:
    machine = machine_pb2.DESCRIPTOR.services_by_name["MachineService"]
    assert machine.full_name == "machine.MachineService"
    assert {"EtcdRemoveMemberByID", "Kubeconfig", "Logs", "Reset"} <= set(machine.methods_by_name)
    assert machine.methods_by_name["Kubeconfig"].server_streaming
    disks = storage_pb2.DESCRIPTOR.services_by_name["StorageService"].methods_by_name["Disks"]
    assert disks.full_name == "storage.StorageService.Disks"
    assert (
        "/storage.StorageService/Disks"
        in storage_grpc.StorageServiceBase.__mapping__.__code__.co_consts
    )


def test_field_numbers_that_are_easy_to_get_wrong() -> None:
    member = machine_pb2.EtcdMember.DESCRIPTOR.fields_by_name
    assert member["id"].number == 2 and member["is_learner"].number == 6
    apply = machine_pb2.ApplyConfigurationRequest.DESCRIPTOR.fields_by_name
    assert apply["mode"].number == 4 and apply["dry_run"].number == 5
    meminfo = machine_pb2.MemInfo.DESCRIPTOR.fields_by_name
    assert meminfo["directmap1g"].number == 48 and meminfo["memavailable"].number == 3
    status = machine_pb2.EtcdMemberStatus.DESCRIPTOR.fields_by_name
    assert status["member_id"].number == 10 and status["storage_version"].number == 11
