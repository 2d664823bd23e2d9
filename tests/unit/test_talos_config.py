"""talosconfig loading: contexts, endpoints, base64 PEMs and the Ed25519 key label."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest
from dapper.backends.clients.talosconfig import (
    certificate_roles,
    client_ssl_context,
    default_talosconfig_path,
    fix_key_label,
    load_talosconfig,
    render_talosconfig,
    split_endpoint,
)
from dapper.backends.errors import BackendError, ReadOnlyError
from dapper.lab.pki import Pki


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_talosctl_style_config_with_ed25519_label_loads(tmp_path: Path, pki: Pki) -> None:
    pair = pki.talos_client("os:reader")
    text = render_talosconfig(
        "dapper",
        ["10.100.0.50", "10.100.0.51:50001", "[::1]:6000"],
        ["10.100.0.50"],
        pki.talos_ca.cert_pem,
        pair.cert_pem,
        pair.key_pem,
    )
    raw_key = base64.b64decode(text.split("key: ")[1].split()[0])
    assert raw_key.startswith(b"-----BEGIN ED25519 PRIVATE KEY-----")
    with pytest.raises(ssl.SSLError):  # what OpenSSL does with the Talos label as-is
        bad = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        (tmp_path / "c.pem").write_bytes(pair.cert_pem)
        (tmp_path / "k.pem").write_bytes(raw_key)
        bad.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    path = tmp_path / "talosconfig"
    path.write_text(text)
    ctx = load_talosconfig(path)
    assert ctx.name == "dapper"
    assert ctx.endpoints == ("10.100.0.50:50000", "10.100.0.51:50001", "[::1]:6000")
    assert ctx.nodes == ("10.100.0.50",)
    assert ctx.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert b"PRIVATE KEY" not in repr(ctx).encode()
    assert isinstance(client_ssl_context(ctx), ssl.SSLContext)
    assert certificate_roles(ctx.crt_pem) == ("os:reader",)


def test_named_context_and_missing_context(tmp_path: Path, pki: Pki) -> None:
    pair = pki.talos_client("os:admin")
    path = tmp_path / "talosconfig"
    path.write_text(
        "context: a\ncontexts:\n"
        "  a:\n    endpoints: [10.0.0.1]\n"
        f"  b:\n    endpoints: ['10.0.0.2:1234']\n    ca: {_b64(pki.talos_ca.cert_pem)}\n"
        f"    crt: {_b64(pair.cert_pem)}\n    key: {_b64(fix_key_label(pair.key_pem))}\n"
    )
    assert load_talosconfig(path).endpoints == ("10.0.0.1:50000",)
    assert load_talosconfig(path, "b").endpoints == ("10.0.0.2:1234",)
    with pytest.raises(BackendError, match="no context 'c'"):
        load_talosconfig(path, "c")
    with pytest.raises(BackendError, match="bad ca/crt/key"):
        client_ssl_context(load_talosconfig(path))  # context a has no CA


def test_unreadable_config_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(BackendError) as err:
        load_talosconfig(tmp_path / "nope")
    assert "\n" not in err.value.reason and "nope" in err.value.reason
    (tmp_path / "bad").write_text("contexts: [1, 2")
    with pytest.raises(BackendError, match="not valid YAML"):
        load_talosconfig(tmp_path / "bad")


def test_default_path_follows_talosctl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TALOSCONFIG", str(tmp_path / "x"))
    assert default_talosconfig_path() == tmp_path / "x"
    monkeypatch.delenv("TALOSCONFIG")
    monkeypatch.setenv("TALOS_HOME", str(tmp_path))
    assert default_talosconfig_path() == tmp_path / "config"


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("10.0.0.1", ("10.0.0.1", 50000)),
        ("10.0.0.1:443", ("10.0.0.1", 443)),
        ("host.example", ("host.example", 50000)),
        ("::1", ("::1", 50000)),
        ("[fd00::1]:50001", ("fd00::1", 50001)),
        ("https://10.0.0.9:7", ("10.0.0.9", 7)),
    ],
)
def test_split_endpoint(endpoint: str, expected: tuple[str, int]) -> None:
    assert split_endpoint(endpoint) == expected


def test_errors_carry_one_line_reasons() -> None:
    err = ReadOnlyError("talos reset")
    assert isinstance(err, PermissionError) and err.reason == "read-only: refusing talos reset"
    b = BackendError("x: unavailable", code="UNAVAILABLE")
    assert (b.reason, b.code, str(b)) == ("x: unavailable", "UNAVAILABLE", "x: unavailable")
