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


def quote_ident(name: str) -> str:
    """`name` as a Postgres identifier: double-quoted, inner double quotes doubled, so no name can
    end the identifier and become SQL."""
    if "\0" in name:
        raise ValueError("an identifier cannot hold a NUL character")
    return '"' + name.replace('"', '""') + '"'


def template(name: str, **identifiers: str) -> str:
    """The named query `name` with its ``{placeholder}``s filled by quoted identifiers (DDL that names
    a table or a database, which no bind parameter can). A template holds no other braces."""
    return Q[name].format(**{k: quote_ident(v) for k, v in identifiers.items()})
