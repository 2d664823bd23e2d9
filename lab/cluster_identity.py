"""The cluster's identity as the tree's Talos secret bundle states it.

A real cluster's machines trust the OS CA in `talsecret.sops.yaml` and join with its
tokens, so a machine config generated from the tree joins and one from anywhere else does
not. When the lab's age key opens the bundle of the checkout it serves, the lab takes
that identity (its Talos CA, the talosconfigs it writes, the tokens a joining machine
must carry); otherwise it keeps a fresh one of its own. The plaintext stays in memory.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TALSECRET = Path("kubernetes/bootstrap/talos/talsecret.sops.yaml")


@dataclass(frozen=True)
class ClusterIdentity:
    """The secrets a machine config must carry to join (talhelper's mapping in brackets)."""

    os_ca_cert_pem: bytes  # certs.os.crt [machine.ca.crt]
    os_ca_key_pem: bytes = b""  # certs.os.key [machine.ca.key, control planes only]
    machine_token: str = ""  # trustdinfo.token [machine.token]
    cluster_token: str = ""  # secrets.bootstraptoken [cluster.token]

    @classmethod
    def from_bundle(cls, bundle: dict[str, Any]) -> ClusterIdentity:
        """From a decrypted talsecret document; KeyError/ValueError when it lacks a field."""
        os_ca = bundle["certs"]["os"]
        return cls(
            os_ca_cert_pem=base64.b64decode(str(os_ca["crt"]), validate=True),
            os_ca_key_pem=base64.b64decode(str(os_ca["key"]), validate=True),
            machine_token=str(bundle["trustdinfo"]["token"]),
            cluster_token=str(bundle["secrets"]["bootstraptoken"]),
        )


def from_repo(repo: Path | None, age_key_text: str) -> ClusterIdentity | None:
    """The identity of `repo`'s talsecret bundle, or None when there is no bundle or the
    key does not open it (the lab then keeps an identity of its own)."""
    if repo is None or not (repo / TALSECRET).is_file():
        return None
    from dapper.backends.sops.errors import SopsError
    from dapper.backends.sops.file import decrypt_file, parse_identities

    try:
        doc = decrypt_file(repo / TALSECRET, parse_identities(age_key_text))
        return ClusterIdentity.from_bundle(dict(doc.documents[0]))
    except (SopsError, KeyError, TypeError, ValueError, IndexError) as exc:
        log.info("lab keeps its own Talos identity: %s does not open (%s)", TALSECRET, exc)
        return None
