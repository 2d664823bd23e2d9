"""Mayastor DiskPools must name their disks by a stable link, not a kernel device name.

Kernel names (/dev/sda, /dev/vdb, /dev/nvme0n1) follow probe order and change between
boots; a pool created on /dev/sda may come back on another disk's name. Newer Mayastor
refuses them for new pools. /dev/disk/by-id/... (or by-path, by-uuid) links do not move.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

KERNEL_NAME_RE = re.compile(
    r"^(?:[a-z]+://)?/dev/(?:[shv]d[a-z]+|xvd[a-z]+|nvme\d+n\d+|mmcblk\d+|loop\d+)(?:p?\d+)?$"
)


def kernel_named_disks(obj: dict[str, Any]) -> list[str]:
    """The disks of a DiskPool object that are kernel device names."""
    if obj.get("kind") != "DiskPool" or not str(obj.get("apiVersion", "")).startswith(
        "openebs.io/"
    ):
        return []
    disks = (obj.get("spec") or {}).get("disks") or []
    return [str(d) for d in disks if isinstance(d, str) and KERNEL_NAME_RE.match(d.strip())]


def diskpool_problems(
    docs: Iterable[tuple[str, int, dict[str, Any], str]],
) -> Iterator[tuple[str, int, str]]:
    """(file, line, reason) per kernel-named disk; docs are (file, line, object, file text)."""
    for file, line, obj, text in docs:
        for disk in kernel_named_disks(obj):
            at = _line_of(text, f"- {disk}", line)
            name = (obj.get("metadata") or {}).get("name", "?")
            yield (
                file,
                at,
                f"DiskPool {name}: disk {disk} is a kernel device name, which can change "
                "between boots (newer Mayastor refuses it for new pools): use its "
                "/dev/disk/by-id/... link",
            )


def _line_of(text: str, needle: str, start_line: int) -> int:
    lines = text.splitlines()
    for number in range(max(start_line, 1), len(lines) + 1):
        if needle in lines[number - 1]:
            return number
    return start_line
