"""Generated machine configs against what talconfig.yaml, the patches and the bundle say."""

from __future__ import annotations

import base64
import datetime as dt
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from dapper.backends.talosgen.generate import GeneratedConfigs, generate_configs, write_configs
from dapper.backends.talosgen.talconfig import TalConfigError
from dapper.lab.talos_config import load as lab_load

from tests.unit.talosgen_support import (
    REPO,
    bundle_document,
    identities,
    load_yaml,
    patch,
    talconfig,
    talenv,
)

CONTROL_PLANES = ("talos-control-1", "talos-control-2", "talos-control-3")
STORAGE = ("talos-node-gpu-1", "talos-node-large-1", "talos-node-large-2", "talos-node-large-3")


@pytest.fixture(scope="module")
def generated() -> GeneratedConfigs:
    return generate_configs(REPO, identities())


@pytest.fixture(scope="module")
def docs(generated: GeneratedConfigs) -> dict[str, dict[str, Any]]:
    return {name: load_yaml(data) for name, data in generated.configs.items()}


@pytest.fixture(scope="module")
def bundle() -> dict[str, Any]:
    return bundle_document()


def _node(hostname: str) -> dict[str, Any]:
    return next(n for n in talconfig()["nodes"] if n["hostname"] == hostname)


def test_every_node_gets_one_config_named_as_talhelper_names_it(
    generated: GeneratedConfigs,
) -> None:
    tc = talconfig()
    hostnames = [n["hostname"] for n in tc["nodes"]]
    assert list(generated.configs) == hostnames
    assert generated.file_names == {h: f"{tc['clusterName']}-{h}.yaml" for h in hostnames}
    assert generated.config_for("talos-control-2") == generated.configs["talos-control-2"]


def test_every_config_loads_in_the_labs_talos_validator(generated: GeneratedConfigs) -> None:
    for hostname, data in generated.configs.items():
        loaded = lab_load(data)
        node = _node(hostname)
        assert loaded.hostname == hostname
        assert loaded.role == ("controlplane" if node["controlPlane"] else "worker")
        assert loaded.install_disk == node["installDisk"]


def test_role_hostname_install_disk_and_image(docs: dict[str, dict[str, Any]]) -> None:
    version = talenv()["TALOS_VERSION"]
    for hostname, doc in docs.items():
        node = _node(hostname)
        machine = doc["machine"]
        assert doc["version"] == "v1alpha1"
        assert machine["type"] == ("controlplane" if node["controlPlane"] else "worker")
        assert machine["network"]["hostname"] == hostname
        assert machine["install"]["disk"] == node["installDisk"]
        assert machine["install"]["image"] == f"{node['talosImageURL']}:{version}"
        assert machine["install"]["wipe"] is False


def test_interfaces_by_mac_with_addresses_routes_mtu_and_the_vip_on_control_planes(
    docs: dict[str, dict[str, Any]],
) -> None:
    for hostname, doc in docs.items():
        node = _node(hostname)
        interfaces = doc["machine"]["network"]["interfaces"]
        assert len(interfaces) == len(node["networkInterfaces"]) == 1
        (want,) = node["networkInterfaces"]
        (got,) = interfaces
        assert got["deviceSelector"] == {"hardwareAddr": want["deviceSelector"]["hardwareAddr"]}
        assert got["addresses"] == want["addresses"] == [f"{node['ipAddress']}/24"]
        assert got["routes"] == want["routes"]
        assert got["mtu"] == want["mtu"] == 1500
        assert got["dhcp"] is False
        if hostname in CONTROL_PLANES:
            assert got["vip"] == {"ip": "10.100.0.40"}
        else:
            assert "vip" not in got


def test_cert_sans_subnets_endpoint_and_cni(docs: dict[str, dict[str, Any]]) -> None:
    tc = talconfig()
    for hostname, doc in docs.items():
        cluster = doc["cluster"]
        assert doc["machine"]["certSANs"] == tc["additionalMachineCertSans"]
        assert cluster["clusterName"] == tc["clusterName"] == "kubernetes"
        assert cluster["controlPlane"]["endpoint"] == tc["endpoint"]
        assert cluster["network"]["podSubnets"] == tc["clusterPodNets"]
        assert cluster["network"]["serviceSubnets"] == tc["clusterSvcNets"]
        assert cluster["network"]["cni"] == {"name": "none"}
        assert cluster["network"]["dnsDomain"] == "cluster.local"
        if hostname in CONTROL_PLANES:
            # Talos puts the endpoint's host first and does not de-duplicate
            assert cluster["apiServer"]["certSANs"] == ["10.100.0.40", "10.100.0.40", "127.0.0.1"]
        else:
            assert "apiServer" not in cluster


def test_kubernetes_images_follow_talenv(docs: dict[str, dict[str, Any]]) -> None:
    k8s = talenv()["KUBERNETES_VERSION"]
    for hostname, doc in docs.items():
        assert doc["machine"]["kubelet"]["image"] == f"ghcr.io/siderolabs/kubelet:{k8s}"
        cluster = doc["cluster"]
        if hostname in CONTROL_PLANES:
            assert cluster["apiServer"]["image"] == f"registry.k8s.io/kube-apiserver:{k8s}"
            assert cluster["controllerManager"]["image"] == (
                f"registry.k8s.io/kube-controller-manager:{k8s}"
            )
            assert cluster["scheduler"]["image"] == f"registry.k8s.io/kube-scheduler:{k8s}"


def test_secrets_go_where_talos_puts_them_and_keys_only_on_control_planes(
    docs: dict[str, dict[str, Any]], bundle: dict[str, Any]
) -> None:
    certs = bundle["certs"]
    for hostname, doc in docs.items():
        machine, cluster = doc["machine"], doc["cluster"]
        cp = hostname in CONTROL_PLANES
        assert machine["token"] == bundle["trustdinfo"]["token"]
        assert cluster["token"] == bundle["secrets"]["bootstraptoken"]
        assert cluster["id"] == bundle["cluster"]["id"]
        assert cluster["secret"] == bundle["cluster"]["secret"]
        assert machine["ca"]["crt"] == certs["os"]["crt"]
        assert cluster["ca"]["crt"] == certs["k8s"]["crt"]
        if cp:
            assert machine["ca"]["key"] == certs["os"]["key"]
            assert cluster["ca"]["key"] == certs["k8s"]["key"]
            assert cluster["aggregatorCA"] == certs["k8saggregator"]
            assert cluster["serviceAccount"] == {"key": certs["k8sserviceaccount"]["key"]}
            assert cluster["etcd"]["ca"] == certs["etcd"]
            assert (
                cluster["secretboxEncryptionSecret"]
                == (bundle["secrets"]["secretboxencryptionsecret"])
            )
        else:
            assert machine["ca"]["key"] == ""
            assert cluster["ca"]["key"] == ""
            for section in ("aggregatorCA", "serviceAccount", "etcd", "secretboxEncryptionSecret"):
                assert section not in cluster, (hostname, section)


def test_global_patches_reach_every_node(docs: dict[str, dict[str, Any]]) -> None:
    kubelet = patch("patches/global/machine-kubelet.yaml")["machine"]["kubelet"]
    network = patch("patches/global/machine-network.yaml")["machine"]["network"]
    sysctls = patch("patches/global/machine-sysctls.yaml")["machine"]["sysctls"]
    time = patch("patches/global/machine-time.yaml")["machine"]["time"]
    files = patch("patches/global/machine-files.yaml")["machine"]["files"]
    openebs = patch("patches/global/openebs-local.yaml")["machine"]
    discovery = patch("patches/global/cluster-discovery.yaml")["cluster"]["discovery"]
    for doc in docs.values():
        machine = doc["machine"]
        assert machine["kubelet"]["extraConfig"] == kubelet["extraConfig"]
        assert machine["kubelet"]["nodeIP"] == kubelet["nodeIP"]
        assert machine["kubelet"]["extraMounts"] == openebs["kubelet"]["extraMounts"]
        assert machine["network"]["nameservers"] == network["nameservers"]
        assert machine["network"]["disableSearchDomain"] is True
        assert sysctls.items() <= machine["sysctls"].items()
        assert machine["time"] == time
        assert machine["files"] == files
        assert machine["files"][0]["content"].endswith("discard_unpacked_layers = false\n")
        modules = [m["name"] for m in machine["kernel"]["modules"]]
        assert [m["name"] for m in openebs["kernel"]["modules"]] == [
            m for m in modules if m.startswith("nvme")
        ]
        assert doc["cluster"]["discovery"] == discovery


def test_the_json6902_remove_drops_talos_default_before_cluster_yaml_sets_admission(
    docs: dict[str, dict[str, Any]],
) -> None:
    wanted = patch("patches/controller/cluster.yaml")["cluster"]["apiServer"]["admissionControl"]
    for hostname in CONTROL_PLANES:
        api = docs[hostname]["cluster"]["apiServer"]
        # Without the remove, Talos's merge would keep the v1alpha1 default and append the
        # namespaces to its ["kube-system"] (see test_talosgen_patches).
        assert api["admissionControl"] == wanted
        assert api["admissionControl"][0]["configuration"]["apiVersion"].endswith("/v1")


def test_control_plane_patches_only_on_control_planes(docs: dict[str, dict[str, Any]]) -> None:
    cluster_patch = patch("patches/controller/cluster.yaml")["cluster"]
    features = patch("patches/controller/machine-features.yaml")["machine"]["features"]
    api_access = patch("patches/controller/machine-talos-api.yaml")["machine"]["features"]
    for hostname, doc in docs.items():
        cluster, machine = doc["cluster"], doc["machine"]
        if hostname in CONTROL_PLANES:
            assert cluster["allowSchedulingOnControlPlanes"] is False
            assert cluster["apiServer"]["extraArgs"] == cluster_patch["apiServer"]["extraArgs"]
            assert cluster["controllerManager"]["extraArgs"] == {"bind-address": "0.0.0.0"}
            assert cluster["scheduler"]["extraArgs"] == {"bind-address": "0.0.0.0"}
            assert cluster["coreDNS"] == {"disabled": True}
            assert cluster["proxy"]["disabled"] is True
            assert cluster["etcd"]["extraArgs"] == cluster_patch["etcd"]["extraArgs"]
            assert cluster["etcd"]["advertisedSubnets"] == ["10.100.0.0/24"]
            assert machine["features"] == {**features, **api_access}
            assert machine["features"]["hostDNS"]["forwardKubeDNSToHost"] is False
            assert (
                machine["nodeLabels"]["node.kubernetes.io/exclude-from-external-load-balancers"]
                == ""
            )
        else:
            for section in ("coreDNS", "proxy", "scheduler", "controllerManager", "etcd"):
                assert section not in cluster
            assert "kubernetesTalosAPIAccess" not in machine["features"]
            # Talos's v1.11 default, untouched on workers
            assert machine["features"]["hostDNS"] == {"enabled": True, "forwardKubeDNSToHost": True}


def test_gpu_and_storage_patches_only_on_their_nodes(docs: dict[str, dict[str, Any]]) -> None:
    gpu = patch("patches/gpu/nvidia-gpu.yaml")["machine"]
    storage = patch("patches/storage/mayastor.yaml")["machine"]
    for hostname, doc in docs.items():
        machine = doc["machine"]
        labels = machine.get("nodeLabels", {})
        modules = [m["name"] for m in machine["kernel"]["modules"]]
        if hostname == "talos-node-gpu-1":
            assert gpu["nodeLabels"].items() <= labels.items()
            assert machine["sysctls"]["net.core.bpf_jit_harden"] == "1"
            # talhelper applies node patches before the global ones: nvidia first
            assert modules == [m["name"] for m in gpu["kernel"]["modules"]] + [
                "nvme_tcp",
                "nvme_core",
                "nvme_fabrics",
            ]
        else:
            assert "node-role.home.arpa/gpu" not in labels
            assert "net.core.bpf_jit_harden" not in machine["sysctls"]
            assert not any(m.startswith("nvidia") for m in modules)
        if hostname in STORAGE:
            assert storage["nodeLabels"].items() <= labels.items()
            assert machine["sysctls"]["vm.nr_hugepages"] == "1024"
        else:
            assert "openebs.io/engine" not in labels
            assert "vm.nr_hugepages" not in machine["sysctls"]


def test_talosconfig_has_an_os_admin_certificate_from_the_bundles_os_ca(
    generated: GeneratedConfigs, bundle: dict[str, Any]
) -> None:
    tc = talconfig()
    doc = load_yaml(generated.talosconfig)
    assert doc["context"] == tc["clusterName"]
    ctx = doc["contexts"][tc["clusterName"]]
    assert ctx["endpoints"] == [n["ipAddress"] for n in tc["nodes"] if n["controlPlane"]]
    assert ctx["nodes"] == [n["ipAddress"] for n in tc["nodes"]]
    assert ctx["ca"] == bundle["certs"]["os"]["crt"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(bundle["certs"]["os"]["crt"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(ctx["crt"]))
    cert.verify_directly_issued_by(ca)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [a.value for a in orgs] == ["os:admin"]
    assert isinstance(cert.public_key(), ed25519.Ed25519PublicKey)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=300)
    key_pem = base64.b64decode(ctx["key"])
    assert b"BEGIN ED25519 PRIVATE KEY" in key_pem  # talosctl's label
    key = serialization.load_pem_private_key(
        key_pem.replace(b"ED25519 PRIVATE KEY", b"PRIVATE KEY"), password=None
    )
    assert key.public_key().public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    ) == cert.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_one_node_only_and_an_unknown_node_is_refused() -> None:
    one = generate_configs(REPO, identities(), nodes=["talos-node-large-2"])
    assert list(one.configs) == ["talos-node-large-2"]
    assert one.file_names == {"talos-node-large-2": "kubernetes-talos-node-large-2.yaml"}
    with pytest.raises(TalConfigError) as caught:
        generate_configs(REPO, identities(), nodes=["talos-node-large-9"])
    assert str(caught.value) == (
        "no node talos-node-large-9 in talconfig.yaml; nodes: talos-control-1, "
        "talos-control-2, talos-control-3, talos-node-gpu-1, talos-node-large-1, "
        "talos-node-large-2, talos-node-large-3"
    )
    with pytest.raises(TalConfigError, match="no config generated for talos-control-1"):
        one.config_for("talos-control-1")


def test_write_configs_makes_a_private_directory_and_private_files(
    generated: GeneratedConfigs, tmp_path: Path
) -> None:
    out = tmp_path / "clusterconfig"
    written = write_configs(generated, out)
    assert [p.name for p in written] == [*generated.file_names.values(), "talosconfig"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert written[0].read_bytes() == generated.configs["talos-control-1"]
    assert (out / "talosconfig").read_bytes() == generated.talosconfig
    # a second run over older, wider files narrows them and replaces the content
    written[0].chmod(0o644)
    written[0].write_bytes(b"stale" * 10_000)
    write_configs(generated, out)
    assert stat.S_IMODE(written[0].stat().st_mode) == 0o600
    assert written[0].read_bytes() == generated.configs["talos-control-1"]
