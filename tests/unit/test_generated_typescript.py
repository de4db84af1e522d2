"""The committed TypeScript code (clients/typescript/src/gen) is what `buf generate` makes of the .proto now."""

from __future__ import annotations

import filecmp
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "typescript"
BUF = CLIENT / "node_modules" / ".bin" / "buf"


def files(folder: Path) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()}


def test_buf_generate_gives_the_committed_code(tmp_path: Path) -> None:
    assert BUF.exists(), "run `npm ci` in clients/typescript (./run test does)"
    # buf.gen.yaml's plugin writes to src/gen under the output folder; protoc-gen-es runs from node_modules
    proc = subprocess.run([str(BUF), "generate", "--template", "buf.gen.yaml", "-o", str(tmp_path)], cwd=CLIENT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PATH": f"{CLIENT / 'node_modules' / '.bin'}{os.pathsep}{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr
    fresh, committed = files(tmp_path / "src" / "gen"), files(CLIENT / "src" / "gen")
    assert sorted(fresh) == sorted(committed) == ["google/rpc/error_details_pb.ts", "quota/v1/quota_pb.ts"]
    stale = [name for name in fresh if not filecmp.cmp(fresh[name], committed[name], shallow=False)]
    assert stale == [], f"src/gen is out of date: {stale}; run `npm run generate` in clients/typescript"
