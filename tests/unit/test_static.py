"""The house style holds: ruff and mypy --strict pass on service/ and clients/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=root, capture_output=True, text=True, timeout=300)


def test_ruff(root: Path) -> None:
    result = run(root, "ruff", "check", "service", "clients")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict(root: Path) -> None:
    result = run(root, "mypy")
    assert result.returncode == 0, result.stdout + result.stderr
