"""Unified diffs for previews, with every secret value masked.

A SOPS file's ciphertext changes completely on every re-encryption, so its diff is
shown on the decrypted structure instead, with each encrypted value replaced by a
marker that says only whether it changed; recipients (public keys) are shown as they are.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from dapper.backends.sops.file import decrypt_text, dump_plaintext
from dapper.backends.sops.keys import IdentityLike
from ruamel.yaml.comments import CommentedMap

SAME = "<secret>"
OLD = "<secret: old value>"
NEW = "<secret: new value>"


def unified(path: str, old: str, new: str) -> str:
    """A `git diff`-like unified diff of two texts ("" when equal)."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"a/{path}",
        tofile=f"b/{path}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _mask(old: Any, new: Any, selector: Any, path: tuple[str, ...]) -> tuple[Any, Any]:
    """Copies of two parallel plaintext trees with the encrypted leaves replaced."""
    if isinstance(new, dict):
        old_map = old if isinstance(old, dict) else {}
        out_old, out_new = CommentedMap(), CommentedMap()
        for key in list(old_map) + [k for k in new if k not in old_map]:
            o, n = old_map.get(key), new.get(key)
            mo, mn = _mask(o, n, selector, (*path, str(key)))
            if key in old_map:
                out_old[key] = mo
            if key in new:
                out_new[key] = mn
        return out_old, out_new
    if isinstance(new, list):
        old_list = old if isinstance(old, list) else []
        pairs = [
            _mask(old_list[i] if i < len(old_list) else None, n, selector, path)
            for i, n in enumerate(new)
        ]
        olds = [p[0] for p in pairs][: len(old_list)]
        return olds, [p[1] for p in pairs]
    if not selector.should_encrypt(path):
        return old, new
    if old is None:
        return None, NEW
    return (SAME, SAME) if old == new else (OLD, NEW)


def sops_masked(
    path: str, old_text: str | None, new_text: str, identities: Iterable[IdentityLike]
) -> str:
    """The masked diff of a SOPS file between two ciphertexts (old None: a new file)."""
    ids = list(identities)
    new_doc = decrypt_text(new_text, ids, source=path)
    old_doc = decrypt_text(old_text, ids, source=path) if old_text else None
    selector = new_doc.metadata.selector
    old_docs = old_doc.documents if old_doc else []
    masked_old, masked_new = [], []
    for i, n in enumerate(new_doc.documents):
        o = old_docs[i] if i < len(old_docs) else None
        mo, mn = _mask(o, n, selector, ())
        if o is not None:
            masked_old.append(mo)
        masked_new.append(mn)
    old_body = dump_plaintext(masked_old) if masked_old else ""
    new_body = dump_plaintext(masked_new)
    old_r = ", ".join(old_doc.recipients) if old_doc else ""
    new_r = ", ".join(new_doc.recipients)
    old_body = f"# sops recipients: {old_r}\n{old_body}" if old_doc else ""
    new_body = f"# sops recipients: {new_r}\n{new_body}"
    text = unified(path, old_body, new_body)
    return text or f"--- a/{path}\n+++ b/{path}\n# re-encrypted with a fresh data key\n"
