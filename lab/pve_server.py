"""The lab's Proxmox VE API over HTTPS on loopback, as proxmoxer and pvesh-style clients see it.

`/api2/json/...` with API-token auth (`Authorization: PVEAPIToken=user@realm!id=secret`),
an admin token and an auditor token (403 on every write), the `{"data": ...}` envelope,
errors in the status line's reason phrase as pve-http-server sends them, and writes as
asynchronous tasks. The listener follows the World's faults: `api-down:proxmox` closes it
(clients get connection refused) and recovery reopens it on the same port;
`api-slow:proxmox[:s]` delays every response.
"""

from __future__ import annotations

import hmac
import json
import logging
import uuid
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from dapper.lab.https_server import HttpsServer, LabHandler
from dapper.lab.pki import Pki, server_ssl_context
from dapper.lab.pve_api import PveApi, PveError
from dapper.lab.pve_perms import ADMIN_ROLES, AUDITOR_ROLES, PveToken
from dapper.lab.pve_tasks import TaskManager
from dapper.lab.pve_view import host_uptime
from dapper.lab.world import PVE_HOST, World

log = logging.getLogger(__name__)

API = "proxmox"
PREFIX = "/api2/json"
ADMIN_TOKEN_ID = "root@pam!dapper-tui"
AUDITOR_TOKEN_ID = "monitor@pve!readonly"
_IDLE_TIMEOUT = 30.0


class _Handler(LabHandler):
    server_version = "pve-api-daemon/3.0"
    sys_version = ""
    timeout = _IDLE_TIMEOUT  # keep-alive, as requests' pool expects

    def _params(self, query: str) -> dict[str, str]:
        params = dict(parse_qsl(query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            raw = self.rfile.read(length)
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype == "application/json":
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    raise PveError(400, "malformed JSON body") from None
                if not isinstance(body, dict):
                    raise PveError(400, "JSON body must be an object")
                params.update({k: _scalar(v) for k, v in body.items()})
            else:
                params.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        return params

    def dispatch(self, method: str) -> None:
        owner: PveServer = self.server.owner
        url = urlsplit(self.path)
        path = unquote(url.path)
        status, reason = 200, "OK"
        try:
            params = self._params(url.query)  # always drain the body, even for a 401
            token = owner.authenticate(self.headers.get("Authorization"))
            if path != PREFIX and not path.startswith(PREFIX + "/"):
                raise PveError(501, f"Method '{method} {path}' not implemented")
            data = owner.api.handle(method, path[len(PREFIX) :], params, token)
            body: dict[str, Any] = {"data": data}
        except PveError as exc:
            status, reason = exc.status, exc.reason
            body = {"data": None}
            if exc.errors:
                body["errors"] = exc.errors
            else:
                body["message"] = exc.reason + "\n"
        except Exception:
            log.exception("pve lab handler failed for %s %s", method, path)
            status, reason = 500, "internal error"
            body = {"data": None, "message": "internal error\n"}
        if self.unanswered():  # after the work: a slow API still does it
            return
        payload = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status, _reason_phrase(reason))
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "max-age=0")
        self.end_headers()
        self.wfile.write(payload)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _reason_phrase(text: str) -> str:
    """PVE puts the error message in the status line: one line, latin-1 safe."""
    line = " ".join(text.split())
    return line.encode("latin-1", "replace").decode("latin-1")[:400] or "error"


class PveServer(HttpsServer):
    """One PVE node's API on 127.0.0.1; `start()`/`stop()` (or `with`) own every thread."""

    api_name = API
    handler = _Handler

    def __init__(
        self,
        world: World,
        pki: Pki,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        node: str = PVE_HOST,
    ) -> None:
        super().__init__(world, pki, server_ssl_context(pki.https_server), host=host, port=port)
        self.node = node
        self.admin_token = PveToken(ADMIN_TOKEN_ID, str(uuid.uuid4()), ADMIN_ROLES)
        self.auditor_token = PveToken(AUDITOR_TOKEN_ID, str(uuid.uuid4()), AUDITOR_ROLES)
        self._tokens = {t.token_id: t for t in (self.admin_token, self.auditor_token)}
        self.tasks = TaskManager(node, boot_ticks=host_uptime(world) * 100)
        self.api = PveApi(world, self.tasks, node)

    @property
    def ca_pem(self) -> bytes:
        return self.pki.https_ca.cert_pem

    def start(self) -> PveServer:
        if self.start_serving():
            self.tasks.start()
        return self

    def stop(self) -> None:
        if self.stop_serving():
            self.tasks.stop()

    def authenticate(self, header: str | None) -> PveToken:
        if not header:
            raise PveError(401, "No ticket")
        # pve-http-server takes the value after `PVEAPIToken` and `=` or a space, so
        # `PVEAPIToken user@realm!id=secret` is accepted as the `=` form is.
        text = header.strip()
        scheme = "PVEAPIToken"
        if not text.startswith(scheme) or text[len(scheme) : len(scheme) + 1] not in ("=", " "):
            raise PveError(401, "authentication failure")
        value = text[len(scheme) + 1 :].strip()
        if "!" not in value:
            raise PveError(401, "authentication failure")
        token_id, _, secret = value.partition("=")
        token = self._tokens.get(token_id.strip())
        if token is None or not hmac.compare_digest(token.secret.encode(), secret.strip().encode()):
            raise PveError(401, "authentication failure")
        return token
