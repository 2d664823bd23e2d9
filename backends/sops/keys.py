"""age identities and the SOPS data key: where private keys come from, how the key is wrapped.

Identities are looked up like sops does, and all sources add up: `SOPS_AGE_KEY` (one or
more `AGE-SECRET-KEY-1…` lines), the file named by `SOPS_AGE_KEY_FILE`, and the default
`$XDG_CONFIG_HOME/sops/age/keys.txt` (`~/.config/sops/age/keys.txt`). Private keys are
never logged or put in an error message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyrage
from dapper.backends.sops.errors import NoKeyError, SopsConfigError, WrongKeyError
from pyrage import ssh, x25519

log = logging.getLogger(__name__)

ENV_KEY = "SOPS_AGE_KEY"
ENV_KEY_FILE = "SOPS_AGE_KEY_FILE"

Identity = Any  # pyrage.x25519.Identity (pyrage ships no importable base class)
IdentityLike = Any  # an Identity, or an `AGE-SECRET-KEY-1…` string


def parse_identities(text: str, source: str = "key text") -> list[Identity]:
    """Identities from key-file text: one `AGE-SECRET-KEY-1…` per line, `#` comments."""
    identities = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("AGE-SECRET-KEY-1"):
            log.debug("%s: line %d is not an X25519 age identity; skipped", source, number)
            continue
        try:
            identities.append(x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            raise NoKeyError(f"{source}: line {number} is not a valid age identity") from None
    return identities


def read_identity_file(path: str | os.PathLike[str]) -> list[Identity]:
    path = Path(path).expanduser()
    try:
        text = path.read_text()
    except OSError as exc:
        raise NoKeyError(f"age key file {path}: {exc.strerror or exc}") from None
    return parse_identities(text, str(path))


def default_key_file(env: Mapping[str, str]) -> Path:
    """`$XDG_CONFIG_HOME/sops/age/keys.txt`, XDG default `~/.config`."""
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "sops" / "age" / "keys.txt"


def load_identities(env: Mapping[str, str] | None = None) -> list[Identity]:
    """All age identities from SOPS_AGE_KEY, SOPS_AGE_KEY_FILE and the XDG keys.txt.

    Returns an empty list when there are none; raises NoKeyError when a named key file
    cannot be read or a key line is invalid.
    """
    env = os.environ if env is None else env
    identities: list[Identity] = []
    if env.get(ENV_KEY):
        identities += parse_identities(env[ENV_KEY], ENV_KEY)
    if env.get(ENV_KEY_FILE):
        identities += read_identity_file(env[ENV_KEY_FILE])
    default = default_key_file(env)
    if default.is_file():
        identities += read_identity_file(default)
    return identities


def coerce_identities(identities: Iterable[IdentityLike] | None) -> list[Identity]:
    """Accept identities, key strings, or None (then: `load_identities()`)."""
    if identities is None:
        return load_identities()
    out = []
    for item in identities:
        if isinstance(item, str):
            out += parse_identities(item)
        else:
            out.append(item)
    return out


def parse_recipient(text: str) -> Any:
    """A pyrage recipient for an `age1…` or `ssh-…` public key string."""
    text = text.strip()
    try:
        if text.startswith("ssh-"):
            return ssh.Recipient.from_str(text)
        return x25519.Recipient.from_str(text)
    except pyrage.RecipientError:
        raise SopsConfigError(f"not a usable age recipient: {text}") from None


def wrap_data_key(data_key: bytes, recipient: str) -> str:
    """The data key age-encrypted to one recipient, ASCII-armored (as sops stores it)."""
    armored = pyrage.encrypt(data_key, [parse_recipient(recipient)], armored=True)
    text = armored.decode("ascii")
    return text if text.endswith("\n") else text + "\n"


def unwrap_data_key(
    entries: Sequence[tuple[str, str]], identities: Sequence[Identity], where: str = "file"
) -> bytes:
    """Decrypt the data key from `(recipient, armored)` entries with any identity.

    Raises NoKeyError when there are no identities and WrongKeyError when none works.
    """
    if not identities:
        raise NoKeyError(
            f"{where}: no age identity: set {ENV_KEY_FILE} or {ENV_KEY}, "
            "or create ~/.config/sops/age/keys.txt"
        )
    for recipient, armored in entries:
        try:
            key = pyrage.decrypt(armored.encode(), list(identities))
        except pyrage.DecryptError:
            continue
        except Exception as exc:  # malformed armor: pyrage raises various errors
            log.debug("%s: age entry for %s unreadable: %s", where, recipient, exc)
            continue
        if len(key) != 32:
            log.debug("%s: data key for %s has %d bytes, not 32", where, recipient, len(key))
            continue
        return key
    names = ", ".join(r for r, _ in entries) or "none"
    raise WrongKeyError(
        f"{where}: none of {len(identities)} age identities decrypts the data key "
        f"(recipients: {names})"
    )
