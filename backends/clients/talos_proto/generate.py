"""Regenerate backends/clients/talos_pb/ from the .proto files beside this script.

Run: `.venv/bin/python backends/clients/talos_proto/generate.py [OUT_DIR]` (default: ../talos_pb).

protoc writes flat imports (`import common_pb2`), which only work with OUT_DIR on
sys.path and would claim generic top-level names; they are rewritten to relative imports
so the stubs live inside `dapper.backends.clients.talos_pb`. The grpclib plugin is looked up next
to the running interpreter (the venv's bin/), where grpclib installs it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = PROTO_DIR.parent / "talos_pb"
PROTOS = ("rpc_status.proto", "common.proto", "machine.proto", "storage.proto")
_MODULES = tuple(p.removesuffix(".proto") for p in PROTOS)
_INIT = '"""Generated Talos machine API stubs (see backends/clients/talos_proto/generate.py)."""\n'

# `import common_pb2 as x` / `import common_pb2` at the start of a line.
_FLAT_IMPORT = re.compile(
    r"^import (" + "|".join(re.escape(m) for m in _MODULES) + r")_pb2\b", re.MULTILINE
)


def _plugin() -> Path:
    name = "protoc-gen-grpclib_python"
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return beside
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: install grpclib in this interpreter's env")
    return Path(found)


def _relativise(text: str) -> str:
    return _FLAT_IMPORT.sub(r"from . import \1_pb2", text)


def generate(out_dir: Path = DEFAULT_OUT) -> list[Path]:
    """Write *_pb2.py, *_pb2.pyi and *_grpc.py for every proto into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--plugin=protoc-gen-grpclib_python={_plugin()}",
        f"-I{PROTO_DIR}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpclib_python_out={out_dir}",
        *PROTOS,
    ]
    subprocess.run(cmd, check=True, cwd=PROTO_DIR)
    written = []
    for path in sorted(out_dir.iterdir()):
        if path.suffix not in (".py", ".pyi") or path.name == "__init__.py":
            continue
        text = path.read_text()
        if path.name.endswith("_grpc.py") and "\nclass " not in text:
            path.unlink()  # a proto without services: the plugin writes only a header
            continue
        path.write_text(_relativise(text))
        written.append(path)
    init = out_dir / "__init__.py"
    init.write_text(_INIT)
    written.append(init)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    for p in generate(target):
        print(p)
