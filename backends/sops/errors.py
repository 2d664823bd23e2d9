"""Errors of the SOPS backend: one class per thing an operator can fix, one-line messages.

Messages never contain plaintext values or private keys; they name files, paths inside
the document and public recipients only.
"""

from __future__ import annotations


class SopsError(Exception):
    """Base class; `str(exc)` is one line for the operator."""


class NotSopsFileError(SopsError):
    """The text is not a SOPS-encrypted YAML file (no usable `sops:` metadata block)."""


class MalformedValueError(SopsError):
    """A value that must be encrypted is not a well-formed `ENC[AES256_GCM,...]` string."""


class MacMismatchError(SopsError):
    """The file's integrity check failed: the MAC does not match the values."""


class ValueAuthError(MacMismatchError):
    """One encrypted value failed AES-GCM authentication (tampered, or moved to another key)."""


class NoKeyError(SopsError):
    """No age identity is available (SOPS_AGE_KEY, SOPS_AGE_KEY_FILE, XDG keys.txt)."""


class WrongKeyError(SopsError):
    """Identities were found, but none of them decrypts any recipient's data key."""


class NoMatchingRuleError(SopsError):
    """No `.sops.yaml` creation rule matches the file's path."""


class SopsConfigError(SopsError):
    """`.sops.yaml` (or a rule in it) cannot be used: unreadable, invalid or unsupported."""


class UnsupportedError(SopsError):
    """The file or rule uses a SOPS feature this backend does not implement."""
