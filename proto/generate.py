"""Regenerate the Python protobuf, gRPC and Connect code from proto/ into clients/quota/.

Usage: python proto/generate.py [--check]

--check compiles into a temporary folder and fails if the committed code differs.
"""

from __future__ import annotations

import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "clients"
GENERATED = ("quota_pb2.py", "quota_pb2.pyi", "quota_pb2_grpc.py", "quota_connect.py")


def connect_plugin() -> str:
    """protoc-gen-connect-python (the Connect protocol's Python code), installed beside this Python."""
    import shutil

    beside = Path(sys.executable).parent / "protoc-gen-connect-python"
    found = str(beside) if beside.exists() else shutil.which("protoc-gen-connect-python")
    if found is None:
        raise SystemExit("protoc-gen-connect-python is not installed: pip install -e '.[dev]'")
    return found


def generate(out: Path) -> None:
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"-I{include}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            f"--plugin=protoc-gen-connect-python={connect_plugin()}",
            f"--connect-python_out={out}",
            *protos,
        ]
    )
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}")


def main() -> int:
    if "--check" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            stale = [
                name
                for name in GENERATED
                if not filecmp.cmp(Path(tmp) / "quota/v1" / name, OUT_DIR / "quota/v1" / name, shallow=False)
            ]
        if stale:
            print("generated code is out of date: " + ", ".join(stale) + "; run python proto/generate.py")
            return 1
        return 0
    generate(OUT_DIR)
    for pkg in (OUT_DIR / "quota", OUT_DIR / "quota/v1"):
        (pkg / "__init__.py").touch()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
