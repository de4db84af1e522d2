"""`quota-cli`: the operator's command line. Rich tables by default, --json (anywhere on the line) for scripts.

    quota-cli [--target HOST:PORT] [--json] COMMAND ... [--json]

Times are given as ISO 8601 (2026-11-01, 2026-11-01T09:30, 2026-11-01T09:30+07:00; without an
offset they are UTC) or as milliseconds since the epoch, and shown in the account's time zone.
docs/CLI.md is the tour.
"""

from quota_client.cli.app import main, parser
from quota_client.cli.parse import when_ms

__all__ = ["main", "parser", "when_ms"]
