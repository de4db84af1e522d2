"""Fixtures of the fault suite: a Postgres the suite owns (scenario (b) stops it), and the figures table."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault.scenarios import FIGURES, format_table
from tests.support.owned_backends import OwnedPostgres


@pytest.fixture(scope="session")
def owned_pg() -> Iterator[OwnedPostgres]:
    # Not under pytest's basetemp: as root the server runs as another OS user, which must be able to
    # traverse to its data, and every pytest session that starts (other people's included) makes
    # /tmp/pytest-of-<user> private again (chmod 700) - the server then PANICs on its own files.
    root = Path(tempfile.mkdtemp(prefix="quota-fault-pg-"))
    pg = OwnedPostgres(root)
    try:
        yield pg.start()
    finally:
        pg.close()
        shutil.rmtree(root, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("fault figures (tests/fault)")
        terminalreporter.write_line(format_table(FIGURES))
