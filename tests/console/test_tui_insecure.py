"""The header says when the configuration leaves an API's certificate unverified."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from dapper.backends.config import load_config
from dapper.lab.runtime import start_lab
from dapper.tui.app import DapperApp

from tests.waiting import eventually_async


async def test_header_badge_names_the_unverified_apis(tmp_path: Path) -> None:
    with start_lab(directory=tmp_path / "lab", flux=False) as lab:
        kubeconfig = json.loads(lab.files.kubeconfig.read_text())
        cluster = kubeconfig["clusters"][0]["cluster"]
        del cluster["certificate-authority-data"]
        cluster["insecure-skip-tls-verify"] = True
        (tmp_path / "kubeconfig").write_text(json.dumps(kubeconfig))
        text = re.sub(
            r"(?m)^kubeconfig = .*$",
            f'kubeconfig = "{tmp_path / "kubeconfig"}"',
            lab.files.config.read_text(),
        )
        (tmp_path / "config.toml").write_text(
            text.replace("[proxmox]\n", "[proxmox]\nverify_tls = false\n")
        )
        config = load_config(tmp_path / "config.toml")

        async def connect() -> Any:
            from dapper.backends.snapshot.collector import Collector

            return Collector(config)

        app = DapperApp(config, connect, survive_errors=False)
        async with app.run_test(size=(160, 48)) as pilot:
            await eventually_async(
                lambda: "TLS UNVERIFIED: kubernetes,proxmox" in app.header_text().plain,
                pause=pilot.pause,
                timeout=30,
            )
