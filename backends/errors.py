"""Errors every backend raises, so the collector and runbooks handle them one way."""

from __future__ import annotations

from dapper.backends.safe_text import clean


class BackendError(Exception):
    """A backend call failed; `reason` is one line for the operator, details go to logging.

    `code` names the failure class when callers need to branch on it (for gRPC backends
    the status name, e.g. "PERMISSION_DENIED", "UNAVAILABLE"; "TLS", "TIMEOUT", "REFUSED").
    """

    def __init__(self, reason: str, *, code: str = "") -> None:
        reason = clean(reason)  # reasons quote servers' messages: untrusted text
        super().__init__(reason)
        self.reason = reason
        self.code = code


class ReadOnlyError(PermissionError):
    """A mutating call on a backend built read-only; raised before any network I/O."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.reason = f"read-only: refusing {operation}"
        super().__init__(self.reason)
