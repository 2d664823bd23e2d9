"""Config parameters checked like PVE's schema before anything changes: known keys,
integers, DNS names, booleans, NICs (model, unicast MAC), drives and hostpciN; then the
value-dependent permission checks qemu-server makes (raw passthrough is root's alone).

Schema failures are 400 "Parameter verification failed." with one message per parameter,
exactly as pve-http-server sends them.
"""

from __future__ import annotations

import re

from dapper.backends.clients.proxmox_parse import HOSTPCI_KEYS, is_pci_id, parse_hostpci
from dapper.lab.pve_errors import PveError, param_error
from dapper.lab.pve_perms import PveToken

DNS_NAME = re.compile(r"^(?=.{1,63}$)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$")
CONFIG_KEYS = {
    "name", "cores", "sockets", "memory", "balloon", "cpu", "tags", "description", "onboot",
    "boot", "agent", "machine", "bios", "ostype", "args", "vga", "numa", "scsihw", "vcpus",
    "protection", "smbios1", "hotplug", "template", "vmgenid", "kvm", "acpi", "tablet",
    "localtime", "startup", "cpulimit", "cpuunits", "keyboard", "ciuser", "cipassword",
    "citype", "nameserver", "searchdomain", "sshkeys", "cicustom", "affinity", "shares",
}  # fmt: skip
ROOT_ONLY_KEYS = {"args", "lock"}  # check_vm_modify_config_perm: "only root can set ..."
INTEGER_KEYS = {"cores", "sockets", "memory", "balloon", "vcpus", "cpuunits", "shares"}
BOOLEAN_KEYS = {"onboot", "numa", "protection", "template", "kvm", "acpi", "tablet"}
NET_KEY = re.compile(r"^net\d+$")
DRIVE_KEY = re.compile(r"^(?:virtio|scsi|sata|ide|efidisk|tpmstate|unused)\d+$")
OTHER_KEY = re.compile(r"^(?:serial|ipconfig|usb|numa|parallel|virtiofs)\d+$|^rng0$")
NIC_MODELS = ("virtio", "e1000", "e1000e", "rtl8139", "vmxnet3", "i82551", "i82557b", "i82559er")
MAC = re.compile(r"^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$")
UNICAST_MAC = re.compile(r"^[a-f0-9][02468ace](?::[a-f0-9]{2}){5}$", re.IGNORECASE)
NEW_DISK = re.compile(r"^([^:,]+):(\d+(?:\.\d+)?)$")  # storage:size in GiB
ISO_VOLUME = re.compile(r"^[^:]+:iso/.+$")
_CONTROL = {"delete", "digest", "skiplock", "revert", "background_delay"}
_BOOLS = {"1": True, "on": True, "yes": True, "true": True}
_BOOLS |= {"0": False, "off": False, "no": False, "false": False}
NOT_IN_SCHEMA = (
    "property is not defined in schema and the schema does not allow additional properties"
)
MAC_NOT_UNICAST = "value does not look like a valid unicast MAC address"


def parse_bool(name: str, value: str) -> bool:
    try:
        return _BOOLS[value.strip().lower()]
    except KeyError:
        raise param_error(**{name: f"type check ('boolean') failed - got '{value}'"}) from None


def nic_error(key: str, value: str) -> str:
    """The schema's message for a bad netN value, or "" when it parses."""
    first = value.split(",")[0]
    model, sep, mac = first.partition("=")
    if model == "model" or model == "macaddr" or model not in NIC_MODELS:
        return f"invalid format - unable to parse network options '{value}'"
    if sep and not MAC.match(mac):
        return f"invalid format - unable to parse network options '{value}'"
    if sep and not UNICAST_MAC.match(mac):
        return f"invalid format - format error\n{key}.macaddr: invalid format - {MAC_NOT_UNICAST}\n"
    return ""


def drive_error(value: str) -> str:
    volid, *options = value.split(",")
    if not volid or any("=" not in o for o in options if o):
        return "unable to parse drive options"
    media = dict(o.split("=", 1) for o in options if o).get("media", "")
    if ISO_VOLUME.match(volid) and media != "cdrom":
        return "explicit 'media=cdrom' is required for iso images"
    return ""


def config_changes(
    params: dict[str, str], *, skip: frozenset[str] = frozenset()
) -> tuple[dict[str, str], list[str]]:
    """Validate config keys like PVE's schema check; returns (changes, deletions)."""
    errors: dict[str, str] = {}
    changes: dict[str, str] = {}
    for key, value in params.items():
        if key in _CONTROL or key in skip:
            continue
        if key in HOSTPCI_KEYS:
            hp = parse_hostpci(value)
            if not hp.mapping and (not hp.addresses or not all(is_pci_id(a) for a in hp.addresses)):
                errors[key] = f"unable to parse hostpci value '{value}'"
        elif NET_KEY.match(key):
            if message := nic_error(key, value):
                errors[key] = message
        elif DRIVE_KEY.match(key):
            if message := drive_error(value):
                errors[key] = message
        elif key in INTEGER_KEYS:
            if not value.isdigit() or (int(value) < 1 and key != "balloon"):
                errors[key] = f"type check ('integer') failed - got '{value}'"
        elif key in BOOLEAN_KEYS:
            if value.strip().lower() not in _BOOLS:
                errors[key] = f"type check ('boolean') failed - got '{value}'"
        elif key == "name":
            if not DNS_NAME.match(value):
                errors[key] = f"value '{value}' does not look like a valid DNS name"
        elif key not in CONFIG_KEYS and not OTHER_KEY.match(key):
            errors[key] = NOT_IN_SCHEMA
        changes[key] = value
    delete = [k.strip() for k in params.get("delete", "").split(",") if k.strip()]
    for key in delete:
        if key in changes:
            errors[key] = "conflicting options: cannot set and delete the same option"
    if errors:
        raise param_error(**errors)
    return changes, delete


def option_exists(key: str) -> bool:
    """A VM config option qemu-server knows (PVE::QemuServer::option_exists)."""
    return bool(
        key in CONFIG_KEYS
        or key in HOSTPCI_KEYS
        or NET_KEY.match(key)
        or DRIVE_KEY.match(key)
        or OTHER_KEY.match(key)
    )


def revert_keys(params: dict[str, str]) -> list[str]:
    """update_vm's `revert` list, checked as qemu-server checks it: known options, none
    also set or deleted in the same call (its messages, parameters as it names them)."""
    keys = [k for k in re.split(r"[,;\s\0]+", params.get("revert", "")) if k]
    for key in keys:
        if not option_exists(key):
            raise param_error(revert=f"unknown option '{key}'")
        if key in params:
            raise param_error(delete=f"you can't use '-{key}' and -revert {key}' at the same time")
    for key in re.split(r"[,;\s\0]+", params.get("delete", "")):
        if key in keys:
            raise param_error(
                revert=f"you can't use '-delete {key}' and -revert {key}' at the same time"
            )
    return keys


def check_hostpci(token: PveToken, key: str, value: str) -> None:
    """qemu-server's check_hostpci_perm: a raw device is root@pam's alone (tokens
    included); a mapping needs Mapping.Use on /mapping/pci/<id>."""
    if token.is_root:
        return
    hp = parse_hostpci(value)
    if hp.mapping:
        token.require(f"/mapping/pci/{hp.mapping}", "Mapping.Use")
    elif hp.addresses:
        raise PveError(500, f"only root can set '{key}' config for non-mapped devices")
    else:
        raise PveError(500, "either 'host' or 'mapping' must be set.")


def check_root_only(token: PveToken, keys: list[str]) -> None:
    for key in keys:
        if key in ROOT_ONLY_KEYS and not token.is_root:
            raise PveError(500, f"only root can set '{key}' config")


def bridges(changes: dict[str, str]) -> list[str]:
    """The bridges the NICs in `changes` attach to (SDN.Use is checked on each)."""
    out = []
    for key, value in changes.items():
        if NET_KEY.match(key):
            for part in value.split(",")[1:]:
                if part.startswith("bridge="):
                    out.append(part[len("bridge=") :])
    return out


def new_disks(changes: dict[str, str]) -> list[tuple[str, str]]:
    """(key, storage) of each `storage:size` disk to allocate (not CD-ROMs)."""
    out = []
    for key, value in changes.items():
        if DRIVE_KEY.match(key) and "media=cdrom" not in value.split(",")[1:]:
            m = NEW_DISK.match(value.split(",")[0])
            if m:
                out.append((key, m.group(1)))
    return out
