"""Saturation with h2load (Debian: nghttp2-client) and pre-encoded gRPC request bodies.

h2load sends the same body every time, so only calls without an idempotency key make sense:
the no-op Health/Check and the Check dry run. h2load sees HTTP/2 statuses only, not the gRPC
status in the trailers: one call of each kind is checked with a real gRPC client before and after.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from pathlib import Path

from tests.perf.loadgen import Result
from tests.perf.procs import Sampler

INSTALL_HINT = "apt-get install nghttp2-client"


def find() -> str | None:
    return shutil.which("h2load")


def grpc_frame(message: bytes) -> bytes:
    """One uncompressed gRPC message: flag byte, 4-byte big-endian length, the message."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def _command(binary: str, url: str, body: Path, duration: float, clients: int, streams: int,
             log_file: Path | None, metadata: tuple[tuple[str, str], ...]) -> list[str]:
    cmd = [binary, "-D", f"{max(duration, 1):g}", "-c", str(clients), "-m", str(streams), "-t", "1",
           "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers"]
    for k, v in metadata:
        cmd += ["-H", f"{k}: {v}"]
    cmd.append(url)
    if log_file is not None:
        cmd[1:1] = ["--log-file", str(log_file)]
    return cmd


def _parse(out: str) -> dict[str, float]:
    got: dict[str, float] = {}
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    if m:
        got["seconds"] = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
        got["rate"] = float(m.group(3))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", out)
    if m:
        for name, value in zip(("total", "started", "done", "succeeded", "failed", "errored", "timeout"),
                               m.groups(), strict=True):
            got[name] = float(value)
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if m:
        got["non2xx"] = float(sum(int(x) for x in m.groups()[1:]))
    return got


async def run(binary: str, result: Result, sampler: Sampler, *, port: int, path: str, message: bytes,
              tmp: Path, duration: float, warmup: float, clients: int, streams: int,
              metadata: tuple[tuple[str, str], ...] | None = None) -> Result:
    md = metadata or ()
    body = tmp / f"h2load-{result.key}.bin"
    body.write_bytes(grpc_frame(message))
    url = f"http://127.0.0.1:{port}{path}"
    if warmup > 0:
        await asyncio.to_thread(subprocess.run, _command(binary, url, body, warmup, clients, streams, None, md),
                                capture_output=True, check=False)
    log_file = tmp / f"h2load-{result.key}.log"
    a = await sampler.snap()
    t0 = time.perf_counter()
    cmd = _command(binary, url, body, duration, clients, streams, log_file, md)
    proc = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, check=False)
    t1 = time.perf_counter()
    b = await sampler.snap()
    got = _parse(proc.stdout)
    if proc.returncode != 0 or "succeeded" not in got:
        result.aborted = f"h2load failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-300:]}"
        return result
    result.cpu = sampler.delta(a, b, t1 - t0)
    result.window_s = got.get("seconds") or duration
    # requests counted by their end inside the measured duration (the log holds every request)
    lat = []
    for line in log_file.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[1] == "200":
            lat.append(int(parts[2]) / 1e6)
    result.latencies = lat
    result.ok = int(got["succeeded"] - got.get("non2xx", 0))
    result.calls = result.ok
    for name in ("failed", "errored", "timeout", "non2xx"):
        if got.get(name):
            result.errors[f"h2load {name}"] += int(got[name])
    result.extra["h2load"] = {"clients": clients, "streams_per_client": streams, "reported_rate": got.get("rate")}
    return result
