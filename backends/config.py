"""Where the console finds the cluster: one TOML file, or nothing (then: the lab).

Secrets never live in the config itself: the Proxmox token secret is read from an
environment variable or a file named by the config, at the moment it is needed.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import get_type_hints

ENV_CONFIG = "DAPPER_TUI_CONFIG"
ENV_READ_ONLY = "DAPPER_TUI_READ_ONLY"


class ConfigError(Exception):
    """The configuration cannot be used; the message is one line for the operator."""


def xdg_dir(kind: str) -> Path:
    """`$XDG_<KIND>_HOME/dapper-tui` with the XDG defaults (config, state, cache)."""
    defaults = {"CONFIG": ".config", "STATE": ".local/state", "CACHE": ".cache"}
    base = os.environ.get(f"XDG_{kind}_HOME") or str(Path.home() / defaults[kind])
    return Path(base) / "dapper-tui"


def default_config_path() -> Path:
    return xdg_dir("CONFIG") / "config.toml"


def state_dir() -> Path:
    return xdg_dir("STATE")


@dataclass(frozen=True)
class ProxmoxConfig:
    url: str = ""
    token_id: str = ""  # user@realm!tokenid
    token_secret_env: str = "PROXMOX_TOKEN_SECRET"
    token_secret_file: str = ""
    node: str = ""
    verify_tls: bool = True
    ca_file: str = ""

    def token_secret(self) -> str:
        """Read the secret now, from the environment or the file; never cached in config."""
        if self.token_secret_env and os.environ.get(self.token_secret_env):
            return os.environ[self.token_secret_env].strip()
        if self.token_secret_file:
            path = Path(self.token_secret_file).expanduser()
            try:
                return path.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"proxmox token file {path}: {exc.strerror}") from exc
        raise ConfigError(
            f"proxmox token secret: set ${self.token_secret_env} or proxmox.token_secret_file"
        )


@dataclass(frozen=True)
class Config:
    """The console's view of one cluster. `lab` is true when no configuration was given."""

    cluster_name: str = "LAB"
    lab: bool = True
    kubeconfig: str = ""
    kube_context: str = ""
    talosconfig: str = ""
    talos_context: str = ""
    # Where machines in maintenance mode answer (insecure TLS); "" means each node's :50000.
    talos_maintenance_endpoint: str = ""
    # The port a machine's own address answers on in maintenance mode (Talos: 50000).
    talos_maintenance_port: int = 50000
    # The Talos API endpoint a talosconfig generated for this cluster names (host:port);
    # "" means the control planes' own addresses (talhelper's default).
    talos_endpoint: str = ""
    # The helmfile executable the bootstrap runs; "" means `helmfile` on PATH.
    helmfile: str = ""
    proxmox: ProxmoxConfig = field(default_factory=ProxmoxConfig)
    repo_path: str = ""
    repo_remote: str = "origin"
    repo_branch: str = "main"
    read_only: bool = False
    # The operator's age identities for SOPS; "" means sops's own lookup
    # (SOPS_AGE_KEY, SOPS_AGE_KEY_FILE, then $XDG_CONFIG_HOME/sops/age/keys.txt).
    sops_age_key_file: str = ""
    source: str = ""  # the file this came from, or "" for the lab default

    @property
    def mode(self) -> str:
        return "LAB" if self.lab else "LIVE"


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


_TYPE_WORDS = {str: "a string", bool: "true or false", dict: "a table", int: "a whole number"}


def _toml_type(value: object) -> str:
    """What TOML type the operator wrote, in TOML's words."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return f'the string "{value}"' if len(value) < 20 else "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _pick(section: dict, cls: type, prefix: str = "") -> dict:
    """`section`'s keys, each known to `cls` and of its field's type (one line otherwise).

    TOML types are strict here: `read_only = "false"` must not quietly mean true.
    """
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(section) - known)
    if unknown:
        names = ", ".join(prefix + k for k in unknown)
        raise ConfigError(f"unknown config key(s): {names}")
    for key, value in section.items():
        expected = hints[key]
        expected = dict if dataclasses.is_dataclass(expected) else expected
        if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
            want = _TYPE_WORDS.get(expected, expected.__name__)
            raise ConfigError(f"{prefix}{key} must be {want}, not {_toml_type(value)}")
    return dict(section)


def _expand_paths(section: dict, keys: tuple[str, ...]) -> dict:
    """`~` in a path means the operator's home, for every client library alike."""
    for key in keys:
        value = section.get(key)
        if isinstance(value, str) and value:
            section[key] = os.path.expanduser(value)
    return section


def load_config(
    path: str | os.PathLike[str] | None = None, *, read_only: bool | None = None
) -> Config:
    """Load the config from `path`, $DAPPER_TUI_CONFIG or the XDG default; none means the lab.

    An explicitly named file that does not exist is an error, the default one is not.
    """
    explicit = path or os.environ.get(ENV_CONFIG)
    cfg_path = Path(explicit).expanduser() if explicit else default_config_path()
    ro_env = _env_true(ENV_READ_ONLY)
    if not cfg_path.exists():
        if explicit:
            raise ConfigError(f"config file not found: {cfg_path}")
        return Config(read_only=bool(read_only) or ro_env)
    try:
        data = tomllib.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {cfg_path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{cfg_path}: not valid TOML: {exc}") from exc
    prox_section = data.pop("proxmox", {})
    if not isinstance(prox_section, dict):
        raise ConfigError(f"{cfg_path}: proxmox must be a table, not {_toml_type(prox_section)}")
    if "token_secret" in prox_section:  # before the unknown-key check: say why, not what
        raise ConfigError(
            f"{cfg_path}: proxmox.token_secret must not be in the config; "
            "use token_secret_env or token_secret_file"
        )
    try:
        prox = _expand_paths(
            _pick(prox_section, ProxmoxConfig, "proxmox."), ("token_secret_file", "ca_file")
        )
        top = _expand_paths(
            _pick(data, Config),
            ("kubeconfig", "talosconfig", "repo_path", "sops_age_key_file", "helmfile"),
        )
    except ConfigError as exc:
        raise ConfigError(f"{cfg_path}: {exc}") from None
    lab = bool(top.pop("lab", False))  # a config written by `dapper-tui lab`
    for k in ("source", "proxmox"):
        top.pop(k, None)
    cfg = Config(**top, proxmox=ProxmoxConfig(**prox), lab=lab, source=str(cfg_path))
    if read_only or ro_env:
        cfg = Config(**{**cfg.__dict__, "read_only": True})
    if not cfg.lab and (not cfg.cluster_name or cfg.cluster_name == "LAB"):
        cfg = Config(**{**cfg.__dict__, "cluster_name": "dapper"})
    return cfg
