"""The proto other languages build on: `buf lint` (STANDARD rules, each exception with its reason) and
`buf breaking` (FILE rules) against the previous commit, with the buf of clients/typescript's lock file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "clients" / "typescript" / "node_modules" / ".bin" / "buf"
PROTO = "proto/quota/v1/quota.proto"
# File options a proto gets once, when it first names its Go and Java packages: FILE_SAME_* reports
# the change from unset, which breaks no code built before (there was none in those languages).
INTRODUCED_OPTIONS = {"FILE_SAME_GO_PACKAGE", "FILE_SAME_JAVA_PACKAGE", "FILE_SAME_JAVA_MULTIPLE_FILES"}


def buf(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    assert BUF.exists(), "run `npm ci` in clients/typescript (./run test does)"
    return subprocess.run([str(BUF), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def findings(proc: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def test_buf_lint_is_clean() -> None:
    proc = buf("lint", "proto", "--error-format", "json")
    assert (proc.returncode, findings(proc)) == (0, []), proc.stderr


def test_lint_uses_standard_and_every_exception_has_its_reason() -> None:
    lines = (ROOT / "proto" / "buf.yaml").read_text(encoding="utf-8").splitlines()
    text = "\n".join(lines)
    assert re.search(r"^lint:\n  use:\n    - STANDARD$", text, re.M)
    assert re.search(r"^breaking:\n(  #.*\n)*  use:\n    - FILE$", text, re.M)
    start = lines.index("  except:")
    for i in range(start + 1, len(lines)):
        if not lines[i].startswith("    "):
            break
        if lines[i].startswith("    - "):
            # the comment above this rule, or above the group of rules it belongs to
            j = i - 1
            while lines[j].startswith("    - "):
                j -= 1
            assert lines[j].startswith("    #"), f"no reason given for {lines[i].strip()}"


def baseline() -> str:
    """The previous commit (CI's clean clone: what the last commit changed), else HEAD (a single commit)."""
    return "HEAD~1" if git("rev-parse", "--verify", "--quiet", "HEAD~1").returncode == 0 else "HEAD"


def test_buf_breaking_against_the_previous_commit() -> None:
    ref = baseline()
    proc = buf("breaking", "proto", "--against", f".git#ref={ref},subdir=proto", "--error-format", "json")
    assert proc.returncode in (0, 100), proc.stderr  # 100: findings
    before = git("show", f"{ref}:{PROTO}").stdout
    allowed = INTRODUCED_OPTIONS if "option go_package" not in before else set()
    breaking = [f for f in findings(proc) if f["type"] not in allowed]
    assert breaking == [], "\n".join(str(f["message"]) for f in breaking)


def test_buf_breaking_catches_a_removed_field(tmp_path: Path) -> None:
    """The check above can fail: a field taken out of a copy of the proto is a FILE break."""
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    copy = tmp_path / PROTO
    text = copy.read_text(encoding="utf-8")
    changed = re.sub(r"^\s*string dedup_key = 6;.*\n", "", text, count=1, flags=re.M)
    assert changed != text
    copy.write_text(changed, encoding="utf-8")
    proc = buf("breaking", str(tmp_path / "proto"), "--against", str(ROOT / "proto"), "--error-format", "json")
    assert proc.returncode == 100, proc.stdout + proc.stderr
    assert "FIELD_NO_DELETE" in {f["type"] for f in findings(proc)}


@pytest.mark.parametrize("option", ["go_package", "java_package", "java_multiple_files"])
def test_the_proto_names_its_packages_for_go_and_java(option: str) -> None:
    assert re.search(rf"^option {option} = \S.*;$", (ROOT / PROTO).read_text(encoding="utf-8"), re.M)
