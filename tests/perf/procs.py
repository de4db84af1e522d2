"""CPU time of the processes sharing the machine's cores, read from /proc at the edges of a window.

Components: the service process, the Valkey process, Postgres (see PostgresProcs), the load
generator (this process), h2load (a reaped child, from its rusage), and the whole machine
(/proc/stat), so that what "other processes" used can be reported too.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, field

import asyncpg
import psutil

CLK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def proc_cpu_split(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds of a live process (all its threads); None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    return int(rest[11]) / CLK, int(rest[12]) / CLK


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a live process (all its threads), in seconds; None if it is gone."""
    split = proc_cpu_split(pid)
    return None if split is None else split[0] + split[1]


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent not idle (all cores), since boot."""
    with open("/proc/stat") as f:
        parts = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in parts[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK


def children_cpu_s() -> float:
    """CPU seconds of this process's reaped children (h2load runs)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class PostgresProcs:
    """Postgres CPU attributable to the benchmark's database.

    Postgres is one process per connection plus shared background processes. Counted: the
    postmaster itself, every backend connected to our database, and the background processes
    that serve every database (WAL writer, checkpointer, background writer, autovacuum launcher).
    Backends of other databases on a shared server are left out (they show up as "other").
    """

    def __init__(self, conn: asyncpg.Connection, dbname: str, postmaster_pid: int) -> None:
        self.conn = conn
        self.dbname = dbname
        self.postmaster_pid = postmaster_pid

    @classmethod
    async def attach(cls, dsn: str) -> PostgresProcs:
        conn = await asyncpg.connect(dsn)
        dbname = await conn.fetchval("SELECT current_database()")
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        postmaster = psutil.Process(backend).ppid()
        return cls(conn, dbname, postmaster)

    async def pids(self) -> list[int]:
        rows = await self.conn.fetch("SELECT pid, datname, backend_type FROM pg_stat_activity")
        out = [self.postmaster_pid]
        for r in rows:
            if r["datname"] == self.dbname or (r["datname"] is None and r["backend_type"] != "client backend"):
                out.append(r["pid"])
        return out

    async def sample(self) -> dict[int, float]:
        out = {}
        for pid in await self.pids():
            t = proc_cpu_s(pid)
            if t is not None:
                out[pid] = t
        return out

    async def close(self) -> None:
        await self.conn.close()


@dataclass
class Snapshot:
    service: float
    service_sys: float
    redis: float
    postgres: dict[int, float]
    loadgen: float
    children: float
    machine: float


@dataclass
class CpuDelta:
    """CPU seconds used by each component over a window of `wall` seconds."""

    wall: float = 0.0
    service: float = 0.0
    service_sys: float = 0.0  # the kernel's share of `service` (system calls: sockets, epoll)
    redis: float = 0.0
    postgres: float = 0.0
    loadgen: float = 0.0
    h2load: float = 0.0
    machine: float = 0.0

    @property
    def other(self) -> float:
        ours = self.service + self.redis + self.postgres + self.loadgen + self.h2load
        return max(self.machine - ours, 0.0)

    def add(self, other: CpuDelta) -> None:
        for name in ("wall", "service", "service_sys", "redis", "postgres", "loadgen", "h2load", "machine"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Sampler:
    service_pid: int
    redis_pid: int
    pg: PostgresProcs
    total: CpuDelta = field(default_factory=CpuDelta)

    async def snap(self) -> Snapshot:
        pg = await self.pg.sample()
        user, system = proc_cpu_split(self.service_pid) or (0.0, 0.0)
        return Snapshot(service=user + system, service_sys=system, redis=proc_cpu_s(self.redis_pid) or 0.0,
                        postgres=pg, loadgen=sum(os.times()[:2]), children=children_cpu_s(),
                        machine=machine_busy_s())

    def delta(self, a: Snapshot, b: Snapshot, wall: float) -> CpuDelta:
        pg = sum(t - a.postgres.get(pid, 0.0) for pid, t in b.postgres.items())
        d = CpuDelta(wall=wall, service=b.service - a.service, service_sys=b.service_sys - a.service_sys,
                     redis=b.redis - a.redis, postgres=pg,
                     loadgen=b.loadgen - a.loadgen, h2load=b.children - a.children, machine=b.machine - a.machine)
        self.total.add(d)
        return d
