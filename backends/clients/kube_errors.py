"""One-line reasons for what goes wrong talking to a Kubernetes API server.

The official client raises `ApiException` (an HTTP status with a Status body) or lets
urllib3's transport errors through (MaxRetryError wrapping refused connections, TLS
failures, DNS, timeouts). Operators get one line; the full error goes to the log.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import sys

from dapper.backends.errors import BackendError

log = logging.getLogger("dapper.backends.clients.kube")


def status_message(body: object) -> str:
    """The `message` of a Status body, or the body's first line."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return ""
    try:
        doc = json.loads(body)
    except ValueError:
        return body.strip().splitlines()[0][:200] if body.strip() else ""
    return str(doc.get("message", "")) if isinstance(doc, dict) else ""


def _chain(exc: BaseException) -> list[BaseException]:
    out, seen = [], set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        out.append(cur)
        reason = getattr(cur, "reason", None)
        cur = reason if isinstance(reason, BaseException) else (cur.__cause__ or cur.__context__)
    return out


def from_status(status: int, body: object, what: str, reason: str = "") -> BackendError:
    """Map an HTTP error status and its Status body to a one-line BackendError."""
    msg = status_message(body) or reason
    if status == 401:
        return BackendError("token rejected (401 Unauthorized)", code="UNAUTHORIZED")
    if status == 403:
        return BackendError(f"forbidden: {msg}", code="FORBIDDEN")
    if status == 404:
        return BackendError(f"not found: {msg}", code="NOT_FOUND")
    if status == 409:
        return BackendError(f"conflict: {msg}", code="CONFLICT")
    if status == 429:
        return BackendError(f"too many requests: {msg}", code="TOO_MANY_REQUESTS")
    return BackendError(f"{what}: HTTP {status} {msg}".strip(), code=f"HTTP_{status}")


def _api_exception_type() -> type | None:
    """The client's ApiException, only if the client is already loaded: importing it
    would cost the lean read path (kube_reader) the whole `kubernetes` package."""
    module = sys.modules.get("kubernetes.client.exceptions")
    return getattr(module, "ApiException", None) if module is not None else None


def from_exception(exc: BaseException, what: str, server: str = "") -> BackendError:
    """Map a client or transport exception to a BackendError with a one-line reason."""
    log.debug("kubernetes %s failed", what, exc_info=exc)
    if isinstance(exc, BackendError):
        return exc
    api_exception = _api_exception_type()
    if api_exception is not None and isinstance(exc, api_exception):
        status = int(getattr(exc, "status", 0) or 0)
        reason = str(getattr(exc, "reason", "") or "")
        return from_status(status, getattr(exc, "body", None), what, reason)
    where = f" ({server})" if server else ""
    chain = _chain(exc)
    names = " ".join(type(e).__name__ for e in chain)
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            detail = getattr(e, "verify_message", "") or str(e)
            return BackendError(f"TLS verify failed{where}: {detail}", code="TLS")
    for e in chain:
        if isinstance(e, ssl.SSLError) or "SSLError" in type(e).__name__:
            text = str(e)
            if "CERTIFICATE_VERIFY_FAILED" in text:
                detail = text.split("certificate verify failed:")[-1].strip(" )'\"]") or text
                return BackendError(f"TLS verify failed{where}: {detail}", code="TLS")
            return BackendError(f"TLS error{where}: {text.splitlines()[0][:160]}", code="TLS")
    for e in chain:
        if isinstance(e, ConnectionRefusedError):
            return BackendError(f"connection refused{where}", code="REFUSED")
        if isinstance(e, socket.gaierror):
            return BackendError(f"DNS lookup failed{where}: {e.strerror or e}", code="DNS")
        if isinstance(e, (TimeoutError, socket.timeout)) or "Timeout" in type(e).__name__:
            return BackendError(f"timeout{where}", code="TIMEOUT")
    text = " ".join(str(e) for e in chain)
    if "Connection refused" in text or "Errno 111" in text:
        return BackendError(f"connection refused{where}", code="REFUSED")
    if "Name or service not known" in text or "NameResolutionError" in names:
        return BackendError(f"DNS lookup failed{where}", code="DNS")
    if "timed out" in text or "Timeout" in names:
        return BackendError(f"timeout{where}", code="TIMEOUT")
    if "RemoteDisconnected" in names or "ProtocolError" in names:
        return BackendError(f"connection closed by the server{where}", code="UNAVAILABLE")
    first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    return BackendError(f"{what} failed{where}: {first}", code="ERROR")
