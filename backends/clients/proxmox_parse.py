"""Parsers for PVE wire strings: property strings (hostpciN, netN), PCI ids, tags, UPIDs.

Pure functions with no client library, shared by the Proxmox backend and the lab's PVE
server (which must produce exactly what the backend parses).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A PVE HOSTPCIID: domain optional, function optional (no function = all functions).
_PCI_ID = re.compile(r"^(?:([0-9a-fA-F]{4,}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})(?:\.([0-7]))?$")
_MAC = re.compile(r"^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$")
_NET_MODELS = ("virtio", "e1000", "e1000e", "rtl8139", "vmxnet3", "i82551", "i82557b", "i82559er")
HOSTPCI_KEYS = tuple(f"hostpci{i}" for i in range(16))


@dataclass(frozen=True)
class HostPci:
    """One hostpciN value: host PCI addresses (normalised) or a mapping, plus the options."""

    addresses: tuple[str, ...]  # e.g. ("0000:81:00.0",); empty for a mapping
    mapping: str = ""
    options: tuple[tuple[str, str], ...] = ()

    @property
    def address(self) -> str:
        """What a row shows: the first address, or `mapping=<name>`."""
        if self.mapping:
            return f"mapping={self.mapping}"
        return ";".join(self.addresses)

    @property
    def options_text(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.options)


def split_property_string(value: str) -> list[tuple[str, str]]:
    """`a=1,b=2,flag` → [("a","1"), ("b","2"), ("", "flag")]; bare items get an empty key."""
    pairs: list[tuple[str, str]] = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, val = item.partition("=")
        pairs.append((key.strip(), val.strip()) if sep else ("", key.strip()))
    return pairs


def normalize_pci_id(value: str) -> str:
    """`81:00.0` → `0000:81:00.0`; lower case; a value that is not a PCI id is returned as is."""
    m = _PCI_ID.match(value.strip())
    if not m:
        return value.strip()
    domain, bus, dev, fn = m.groups()
    out = f"{(domain or '0000').lower()}:{bus.lower()}:{dev.lower()}"
    return f"{out}.{fn}" if fn is not None else out


def is_pci_id(value: str) -> bool:
    return bool(_PCI_ID.match(value.strip()))


def pci_matches(passthrough: str, device: str) -> bool:
    """Does a hostpci address (maybe without a function) cover a host device address?"""
    a, d = normalize_pci_id(passthrough), normalize_pci_id(device)
    return a == d or (a.count(".") == 0 and d.startswith(a + "."))


def parse_hostpci(value: str) -> HostPci:
    """Parse `[host=]ID[;ID…][,opt=v…]` or `mapping=<name>[,opt=v…]`."""
    addresses: tuple[str, ...] = ()
    mapping = ""
    options: list[tuple[str, str]] = []
    for i, (key, val) in enumerate(split_property_string(value)):
        if key == "host" or (i == 0 and key == ""):
            addresses = tuple(normalize_pci_id(a) for a in val.split(";") if a.strip())
        elif key == "mapping":
            mapping = val
        else:
            options.append((key, val))
    return HostPci(addresses, mapping, tuple(options))


def parse_net_mac(value: str) -> str:
    """The MAC of a netN value (`virtio=BC:24:11:…,bridge=vmbr0` or `macaddr=…`), lower case."""
    for key, val in split_property_string(value):
        if (key in _NET_MODELS or key == "macaddr") and _MAC.match(val):
            return val.lower()
    return ""


def parse_tags(value: str) -> tuple[str, ...]:
    """PVE joins tags with `;` (older configs used `,` or spaces); empty parts dropped."""
    return tuple(t for t in re.split(r"[;, ]+", value or "") if t)


def hex_id(value: object) -> str:
    """`0x10de` / `10de` / 4318 → `10de` (the four hex digits PVE tools and NFD show)."""
    if isinstance(value, int):
        return f"{value:04x}"
    text = str(value or "").strip().lower()
    return text[2:] if text.startswith("0x") else text


def parse_upid(upid: str) -> dict[str, str | int] | None:
    """The fields of `UPID:node:PID:PSTART:STARTTIME:type:id:user:`, or None if malformed."""
    parts = upid.split(":")
    if len(parts) != 9 or parts[0] != "UPID" or parts[8] != "":
        return None
    try:
        pid, pstart, starttime = (int(p, 16) for p in parts[2:5])
    except ValueError:
        return None
    return {
        "node": parts[1],
        "pid": pid,
        "pstart": pstart,
        "starttime": starttime,
        "type": parts[5],
        "id": parts[6],
        "user": parts[7],
    }


def agent_addresses(payload: object) -> tuple[str, ...]:
    """The guest's IPv4 addresses from the QEMU guest agent's network-get-interfaces
    (`{"result": [{"name", "hardware-address", "ip-addresses": [...]}]}`), skipping the
    loopback interface and link-local addresses: where the guest can be dialled."""
    result = payload.get("result", payload) if isinstance(payload, dict) else payload
    out: list[str] = []
    for iface in result if isinstance(result, list) else []:
        if not isinstance(iface, dict) or iface.get("name") == "lo":
            continue
        for addr in iface.get("ip-addresses") or []:
            if not isinstance(addr, dict) or addr.get("ip-address-type") != "ipv4":
                continue
            ip = str(addr.get("ip-address", ""))
            if ip and not ip.startswith("169.254.") and ip not in out:
                out.append(ip)
    return tuple(out)
