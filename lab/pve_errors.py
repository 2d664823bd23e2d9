"""The PVE API's error shape: a status, the one-line reason pve-http-server puts on the
status line, and per-parameter `errors` for a 400 "Parameter verification failed."."""

from __future__ import annotations


class PveError(Exception):
    """An API error: `status` and the one-line `reason` go on the status line."""

    def __init__(self, status: int, reason: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.errors = errors


def param_error(**errors: str) -> PveError:
    return PveError(400, "Parameter verification failed.", errors)


def perm_error(path: str, privilege: str) -> PveError:
    return PveError(403, f"Permission check failed ({path}, {privilege})")
