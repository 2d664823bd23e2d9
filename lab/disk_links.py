"""The stable /dev/disk/by-id links the lab's machines present for their data disks.

The tree's DiskPools name disks by these links (never /dev/sdX, which follows probe order),
so the lab has to present the same ones: Talos reports the WWN (`talosctl disks`), udev
makes `wwn-0x<WWN>` of it, and the Mayastor twin only creates a pool on a disk its node
has. A WWN is derived from the node and kernel name so it is stable across lab runs;
Samsung's NAA-5 prefix (5002538) matches the SSD model the world seeds.
"""

from __future__ import annotations

import hashlib

BY_ID = "/dev/disk/by-id/"
SAMSUNG_NAA = "5002538"


def wwn(hostname: str, dev: str) -> str:
    """The 16-hex-digit WWN of a passed-through SSD; '' for a virtio disk (it has none)."""
    if dev.startswith("/dev/vd"):
        return ""
    digest = hashlib.sha256(f"{hostname}:{dev}".encode()).hexdigest()
    return SAMSUNG_NAA + digest[: 16 - len(SAMSUNG_NAA)]


def by_id_links(
    hostname: str, disks: list[tuple[str, int, str]], seeds: dict[str, str] | None = None
) -> dict[str, str]:
    """Every name a data disk answers to on `hostname` (link or kernel name) -> kernel name.
    `seeds` names the host a disk's WWN derives from when it moved (dev -> name)."""
    names: dict[str, str] = {}
    for dev, _size, _model in disks:
        names[dev] = dev
        ident = wwn((seeds or {}).get(dev, hostname), dev)
        if ident:
            names[f"{BY_ID}wwn-0x{ident}"] = dev
    return names
