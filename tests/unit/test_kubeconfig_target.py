"""The lean reader's kubeconfig: what it serves itself and what it leaves to the client."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from dapper.backends.clients.kubeconfig import read_target
from dapper.backends.errors import BackendError


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write(path: Path, user: str, cluster_extra: str = "") -> Path:
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://10.0.0.1:6443/
    certificate-authority-data: {b64("CA")}
{cluster_extra}
users:
- name: u
  user: {user}
contexts:
- name: main
  context: {{cluster: c, user: u}}
- name: other
  context: {{cluster: c, user: nobody}}
current-context: main
"""
    )
    return path


def test_certificate_data_and_server(tmp_path: Path) -> None:
    kc = write(
        tmp_path / "kc", f"{{client-certificate-data: {b64('CRT')}, client-key-data: {b64('KEY')}}}"
    )
    target = read_target(kc)
    assert target is not None
    assert (target.server, target.context) == ("https://10.0.0.1:6443", "main")
    assert (target.ca_pem, target.cert_pem, target.key_pem) == (b"CA", b"CRT", b"KEY")
    assert "KEY" not in repr(target) and not target.insecure


def test_files_are_relative_to_the_kubeconfig_and_token_files_are_read(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("s3cret\n")
    (tmp_path / "crt.pem").write_text("CRT")
    kc = write(tmp_path / "kc", "{tokenFile: tok, client-certificate: crt.pem}")
    target = read_target(kc)
    assert target is not None and target.token == "s3cret" and target.cert_pem == b"CRT"


def test_insecure_and_server_name(tmp_path: Path) -> None:
    extra = "    insecure-skip-tls-verify: true\n    tls-server-name: api.lan"
    target = read_target(write(tmp_path / "kc", "{token: t}", extra))
    assert target is not None and target.insecure and target.tls_server_name == "api.lan"


@pytest.mark.parametrize(
    "user",
    [
        "{exec: {apiVersion: client.authentication.k8s.io/v1, command: kubelogin}}",
        "{auth-provider: {name: oidc}}",
        "{username: admin, password: pw}",
    ],
)
def test_other_authentication_is_left_to_the_full_client(tmp_path: Path, user: str) -> None:
    assert read_target(write(tmp_path / "kc", user)) is None


def test_proxies_unknown_contexts_and_merged_files_are_left_to_the_full_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxied = write(tmp_path / "p", "{token: t}", "    proxy-url: http://proxy:3128")
    assert read_target(proxied) is None
    plain = write(tmp_path / "kc", "{token: t}")
    assert read_target(plain, "missing") is None
    assert read_target(plain, "other") is not None  # a context whose user is absent: no auth
    assert read_target(tmp_path / "absent") is None  # the client says "no such file"
    monkeypatch.setenv("KUBECONFIG", f"{plain}:{proxied}")
    assert read_target(None) is None
    monkeypatch.setenv("KUBECONFIG", str(plain))
    assert read_target(None) is not None


def test_broken_material_is_one_line(tmp_path: Path) -> None:
    kc = write(tmp_path / "kc", "{client-certificate: missing.pem, client-key-data: eA==}")
    with pytest.raises(BackendError, match=r"kubeconfig: client-certificate missing.pem"):
        read_target(kc)
