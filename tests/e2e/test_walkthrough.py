"""The README's walk-through program runs as written against a real server."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from quota_service.server import QuotaServer


async def test_walkthrough_program(server: QuotaServer, account_id: str, root: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(root / "clients/examples/walkthrough.py"), f"127.0.0.1:{server.port}", account_id,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "QUOTA_API_KEY": ""})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines() == ["charged 1 dialog, 99 left (99%)",
                                         "ai_dialog: granted=100 used=1 held=0 remaining=99"]
