"""Logs an operator can parse: JSON lines with UTC millisecond timestamps, native stderr (gRPC core)
turned into JSON lines too, and a backend's change of state logged once with its cause."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from quota_service.server import BackendStates, JsonFormatter

ROOT = Path(__file__).resolve().parents[2]


def test_timestamps_are_utc_to_the_millisecond_with_z() -> None:
    record = logging.LogRecord("quota_service.x", logging.INFO, __file__, 1, "charged %s", ("acme",), None)
    record.created, record.msecs = 1769879109.123456, 123.456  # 2026-01-31T17:05:09.123 UTC
    record.account_id = "acme"
    line = json.loads(JsonFormatter().format(record))
    assert line["ts"] == "2026-01-31T17:05:09.123Z"
    assert line["level"] == "INFO" and line["msg"] == "charged acme" and line["account_id"] == "acme"


def test_what_native_code_writes_to_stderr_becomes_json_lines() -> None:
    script = textwrap.dedent("""
        import logging, os
        import grpc
        from quota_service.server import NativeStderr, configure_logging

        configure_logging("INFO")
        native = NativeStderr()
        channel = grpc.insecure_channel("127.0.0.1:1")  # gRPC core starts, and at DEBUG says so on stderr
        channel.close()
        os.write(2, b"E1203 10:00:00.123456   77 chttp2_transport.cc:12] a core error\\n")
        os.write(2, b"something a C library printed\\n")
        logging.getLogger("quota_service.x").info("ours")
        native.close()
    """)
    env = {**os.environ, "GRPC_VERBOSITY": "debug", "PYTHONPATH": str(ROOT / "service")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stderr.splitlines()]  # every line is JSON, or this raises
    by_msg = {line["msg"]: line for line in lines}
    core = by_msg["E1203 10:00:00.123456   77 chttp2_transport.cc:12] a core error"]
    assert core["level"] == "ERROR" and core["logger"] == "native" and core["ts"].endswith("Z")
    assert by_msg["something a C library printed"]["level"] == "WARNING"
    assert by_msg["ours"]["logger"] == "quota_service.x"
    # gRPC core's own line (the DEBUG verbosity warning) came through the same way
    assert any(line["logger"] == "native" and "log.cc" in line["msg"] for line in lines), lines
    assert sum(1 for line in lines if line["msg"] == "ours") == 1  # the service's lines are not read back


def test_a_backend_state_change_is_logged_once_with_its_cause(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="quota_service.server")
    states = BackendStates()
    states.note("redis", True, "")  # known up at start: nothing to say
    for _ in range(3):
        states.note("redis", False, "no answer to a ping within 0.50 s")
    assert states.up() == {"redis": False, "postgres": False}
    for _ in range(2):
        states.note("redis", True, "no answer to a ping within 0.50 s")
    states.note("postgres", False, "a ledger batch failed")  # down from the first check: said at once
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("ERROR", "redis: down (no answer to a ping within 0.50 s); calls that need it answer UNAVAILABLE"),
        ("WARNING", "redis: back up; serving again"),
        ("ERROR", "postgres: down (a ledger batch failed); calls that need it answer UNAVAILABLE"),
    ]
    assert caplog.records[0].cause == "no answer to a ping within 0.50 s"  # type: ignore[attr-defined]
    assert states.up() == {"redis": True, "postgres": False}
