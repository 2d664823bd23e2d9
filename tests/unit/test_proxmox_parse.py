"""PVE wire-string parsers: hostpciN, netN, PCI ids, tags, UPIDs."""

from __future__ import annotations

import pytest
from dapper.backends.clients.proxmox import PciDevice, vm_devices, vm_from_api
from dapper.backends.clients.proxmox_parse import (
    agent_addresses,
    normalize_pci_id,
    parse_hostpci,
    parse_net_mac,
    parse_tags,
    parse_upid,
    pci_matches,
)
from dapper.lab.pve_tasks import format_upid


@pytest.mark.parametrize(
    ("value", "address", "options"),
    [
        ("0000:81:00.0,pcie=1", "0000:81:00.0", "pcie=1"),
        ("host=0000:82:00.0,pcie=1,rombar=0", "0000:82:00.0", "pcie=1,rombar=0"),
        ("d0:13.0,pcie=1", "0000:d0:13.0", "pcie=1"),
        ("81:00", "0000:81:00", ""),
        ("0000:81:00.0;0000:81:00.1,x-vga=1", "0000:81:00.0;0000:81:00.1", "x-vga=1"),
        ("mapping=p100-0,pcie=1", "mapping=p100-0", "pcie=1"),
    ],
)
def test_hostpci_forms(value: str, address: str, options: str) -> None:
    hp = parse_hostpci(value)
    assert hp.address == address
    assert hp.options_text == options


def test_pci_id_rules() -> None:
    assert normalize_pci_id("81:00.0") == "0000:81:00.0"
    assert normalize_pci_id("0000:D0:13.0") == "0000:d0:13.0"
    assert pci_matches("0000:81:00", "0000:81:00.1")  # no function: all functions
    assert not pci_matches("0000:81:00.0", "0000:81:00.1")
    assert not pci_matches("0000:81:00", "0000:82:00.0")


@pytest.mark.parametrize(
    ("value", "mac"),
    [
        ("virtio=BC:24:11:D3:FF:C2,bridge=vmbr0,tag=100", "bc:24:11:d3:ff:c2"),
        ("e1000=bc:24:11:00:00:01,bridge=vmbr1", "bc:24:11:00:00:01"),
        ("model=virtio,macaddr=BC:24:11:00:00:02,bridge=vmbr0", "bc:24:11:00:00:02"),
        ("virtio,bridge=vmbr0", ""),
    ],
)
def test_net_mac(value: str, mac: str) -> None:
    assert parse_net_mac(value) == mac


def test_tags_and_upid_round_trip() -> None:
    assert parse_tags("talos;k8s;worker") == ("talos", "k8s", "worker")
    assert parse_tags("a,b c") == ("a", "b", "c")
    upid = format_upid("pve", 0x2A3B0, 0x1234, 0x6700_0000, "qmstart", "103", "root@pam!ops")
    assert upid == "UPID:pve:0002A3B0:00001234:67000000:qmstart:103:root@pam!ops:"
    fields = parse_upid(upid)
    assert fields == {
        "node": "pve",
        "pid": 0x2A3B0,
        "pstart": 0x1234,
        "starttime": 0x6700_0000,
        "type": "qmstart",
        "id": "103",
        "user": "root@pam!ops",
    }
    assert parse_upid("UPID:pve:zz:1:2:qmstart:1:u:") is None
    assert parse_upid(upid.rstrip(":")) is None


def test_vm_from_rows_joins_devices_and_keeps_raw_config() -> None:
    host = [PciDevice("0000:81:00.0", "pve", "10de", "15f8", "030200", "NVIDIA", "P100")]
    config = {
        "name": "gpu",
        "net1": "virtio=BC:24:11:00:00:02,bridge=vmbr1",
        "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0",
        "hostpci1": "mapping=p100-1",
        "hostpci0": "0000:81:00,pcie=1",
    }
    row = {"vmid": 103, "node": "pve", "status": "running", "qmpstatus": "paused", "maxcpu": 16}
    vm = vm_from_api(row, config, host)
    assert vm.status == "paused"
    assert vm.macs == ("bc:24:11:00:00:01", "bc:24:11:00:00:02")
    assert [d.slot for d in vm.devices] == ["hostpci0", "hostpci1"]
    assert vm.devices[0].device_id == "15f8" and vm.devices[0].description == "P100"
    assert vm.devices[1].address == "mapping=p100-1" and vm.devices[1].vendor_id == ""
    assert dict(vm.config)["hostpci1"] == "mapping=p100-1"
    assert vm_devices({}) == []


def test_agent_addresses_skip_loopback_interface_ipv6_and_link_local() -> None:
    payload = {
        "result": [
            {
                "name": "lo",
                "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4"}],
            },
            {
                "name": "eth0",
                "hardware-address": "bc:24:11:00:00:01",
                "ip-addresses": [
                    {"ip-address": "169.254.1.2", "ip-address-type": "ipv4"},
                    {"ip-address": "fe80::1", "ip-address-type": "ipv6"},
                    {"ip-address": "10.100.0.100", "ip-address-type": "ipv4", "prefix": 24},
                ],
            },
        ]
    }
    assert agent_addresses(payload) == ("10.100.0.100",)
    assert agent_addresses({"result": []}) == () and agent_addresses(None) == ()
