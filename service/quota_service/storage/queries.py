"""The named SQL queries: every statement the service runs lives in ``sql/queries/*.sql``.

Each file holds blocks that start with ``-- name: <name>``; ``Q["<name>"]`` is the statement.
A name defined twice (in one file or two) is an error at import, so a query has one home.
"""

from __future__ import annotations

import re
from importlib import resources

_BLOCK = re.compile(r"^-- name: (\w+)\n(.*?)(?=^-- name: |\Z)", re.S | re.M)


def load_queries() -> dict[str, str]:
    """Every named query of ``sql/queries/*.sql``, by name."""
    folder = resources.files("quota_service.storage") / "sql" / "queries"
    out: dict[str, str] = {}
    for f in sorted(folder.iterdir(), key=lambda p: p.name):
        if not f.name.endswith(".sql"):
            continue
        for m in _BLOCK.finditer(f.read_text()):
            name = m.group(1)
            if name in out:
                raise RuntimeError(f"query {name!r} is defined twice (again in {f.name})")
            out[name] = m.group(2).strip()
    return out


Q = load_queries()
