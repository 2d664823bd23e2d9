"""Who may do what on the lab's PVE: API tokens, the roles granted to them on `/`, and the
privileges those roles hold, as pve-access-control defines them (PVE 8).

A token's privileges are its roles' union (privilege separation: the token's own ACL, not
its user's). `root@pam` itself is never a token's user for the root-only checks: qemu-server
compares the authenticated id (`root@pam!dapper-tui`) with `root@pam`, so root's tokens
are refused raw passthrough too.
"""

from __future__ import annotations

from dataclasses import dataclass

from dapper.lab.pve_errors import perm_error

# fmt: off
ROLES: dict[str, frozenset[str]] = {
    "PVEVMAdmin": frozenset(
        {
            "VM.Allocate",
            "VM.Audit",
            "VM.Backup",
            "VM.Clone",
            "VM.Config.CDROM",
            "VM.Config.CPU",
            "VM.Config.Cloudinit",
            "VM.Config.Disk",
            "VM.Config.HWType",
            "VM.Config.Memory",
            "VM.Config.Network",
            "VM.Config.Options",
            "VM.Console",
            "VM.Migrate",
            "VM.Monitor",
            "VM.PowerMgmt",
            "VM.Snapshot",
            "VM.Snapshot.Rollback",
        }
    ),
    "PVEAuditor": frozenset(
        {"Datastore.Audit", "Mapping.Audit", "Pool.Audit", "SDN.Audit", "Sys.Audit", "VM.Audit"}
    ),
    "PVEDatastoreUser": frozenset({"Datastore.AllocateSpace", "Datastore.Audit"}),
    "PVESDNUser": frozenset({"SDN.Audit", "SDN.Use"}),
    "PVEMappingUser": frozenset({"Mapping.Audit", "Mapping.Use"}),
}
# fmt: on
# What the console's token needs on `/`: VMs, disks on the storages, the bridges, the
# passthrough mappings, and reading the hardware.
ADMIN_ROLES = ("PVEVMAdmin", "PVEDatastoreUser", "PVESDNUser", "PVEMappingUser", "PVEAuditor")
AUDITOR_ROLES = ("PVEAuditor",)
ROOT = "root@pam"


@dataclass(frozen=True)
class PveToken:
    """An API token: `user@realm!tokenid` with its secret and the roles granted on `/`."""

    token_id: str
    secret: str
    roles: tuple[str, ...]

    @property
    def privileges(self) -> frozenset[str]:
        return frozenset().union(*(ROLES[r] for r in self.roles))

    @property
    def is_root(self) -> bool:
        """Only `root@pam` itself passes qemu-server's root checks, never a token."""
        return self.token_id == ROOT

    def has(self, privilege: str) -> bool:
        return privilege in self.privileges

    def require(self, path: str, privilege: str) -> None:
        """403 "Permission check failed (path, privilege)" unless the token holds it."""
        if not self.has(privilege):
            raise perm_error(path, privilege)

    @property
    def header(self) -> str:
        return f"PVEAPIToken={self.token_id}={self.secret}"

    def __repr__(self) -> str:  # the secret stays out of logs and test output
        return f"PveToken({self.token_id!r}, roles={self.roles!r})"
