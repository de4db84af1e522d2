"""The command line of `quota-cli`: argparse parsers, value types, and a suggestion for a mistyped command.

Global options (`--json`, `--target`, `--api-key`, `--timeout`) are accepted before or after the
command: each command's parser knows them too, with defaults that do not override what was given
before the command.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

# the options of the command line as a whole that take a value: skipped when looking for the command
_GLOBAL_VALUE_OPTIONS = ("--target", "--api-key", "--timeout")


class UsageError(Exception):
    """A command line that cannot be run (exit code 2)."""


def when_ms(text: str) -> int:
    """ISO 8601 date or date-time (UTC unless it has an offset), or milliseconds since the epoch."""
    if text.isdigit():
        return int(text)
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an ISO 8601 time nor milliseconds") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def pair(text: str) -> tuple[str, str]:
    """KEY=VALUE, as --attr and --pack take them."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE")
    return key, value


def pack(text: str) -> tuple[str, int]:
    """NAME=QUANTITY of a pack (0 removes it in change-plan)."""
    name, value = pair(text)
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: the quantity must be a whole number")
    return name, int(value)


_DURATION = re.compile(r"^(\d+)(ms|s|m|h)?$")
_DURATION_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def duration_ms(text: str) -> int:
    """A duration: 90 or 90s (seconds), 1500ms, 5m, 2h."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 90s, 1500ms, 5m, 2h)")
    return int(match.group(1)) * _DURATION_MS[match.group(2) or "s"]


def add_globals(p: argparse.ArgumentParser, *, top: bool) -> None:
    """The options of the whole command line; on a command's parser they default to 'not given' so that
    a value given before the command stands."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    p.add_argument("--json", action="store_true", default=default(False), help="print JSON instead of tables")
    p.add_argument("--target", default=default(os.environ.get("QUOTA_TARGET", "127.0.0.1:50051")),
                   help="host:port of the service (env QUOTA_TARGET)")
    p.add_argument("--api-key", default=default(None), help="API key qk_... (env QUOTA_API_KEY)")
    p.add_argument("--timeout", type=float, default=default(5.0), help="deadline of each call in seconds")


def command_of(argv: Sequence[str]) -> str | None:
    """The command word of a command line: the first word that is neither an option nor its value."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in _GLOBAL_VALUE_OPTIONS:
            skip = True
        elif not word.startswith("-"):
            return word
    return None


def check_command(argv: Sequence[str], commands: Sequence[str]) -> None:
    """Refuse an unknown command with the closest known one, rather than argparse's list of every choice."""
    word = command_of(argv)
    if word is None or word in commands:
        return
    close = difflib.get_close_matches(word, commands, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else "see quota-cli --help"
    raise UsageError(f"unknown command {word!r}; {hint}")


Builder = Callable[[argparse.ArgumentParser], None]


def build(commands: Sequence[tuple[str, str, Builder]]) -> argparse.ArgumentParser:
    """The parser of `quota-cli` with every command: (name, help, a function adding its arguments)."""
    p = argparse.ArgumentParser(prog="quota-cli", description="Operate the quota service.")
    add_globals(p, top=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text, add in commands:
        c = sub.add_parser(name, help=text, description=text)
        add(c)
        add_globals(c, top=False)
    return p
