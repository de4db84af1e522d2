"""The usage CSV (R3, QA4, QC9): RFC 4180 (comma, CRLF, quotes doubled), UTF-8 without a BOM.

Columns, in order:

    entry_id         the ledger entry (one row per grant a charge was taken from)
    occurred_at      when the charge was made (the response date), ISO 8601 UTC: 2026-01-31T17:05:09.123Z
    account_id
    meter            what was charged (ai_dialog, wa_message ...)
    bucket           the meter, or "$" + currency when the row is overage drawn from a wallet
    grant_id
    kind             consume or commit
    amount           the deduction: units, or minor units of the wallet's currency
    running_used     the grant's used units (or minor units) after this row
    idempotency_key  of the charging call
    <attribute>...   one column per requested attribute_columns (room_id, channel ...), "" when absent
    attributes       every attribute of the charge as a JSON object (keys sorted, UTF-8)

The export is meant for spreadsheets, and attributes (and idempotency keys, ids) come from end
users' chats and callers: a cell such as `=HYPERLINK(...)` would run as a formula when the file is
opened. So, by default, a text cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return
gets a single quote in front (OWASP, CSV injection): a spreadsheet shows it as the text it was.
Only text is changed: the numeric columns (entry_id, amount, running_used) are written as numbers,
a negative amount (a refund) included, since a number is never a formula. A text value that looks
like a negative number (an attribute "-5") is text, and is quoted like any other. The attributes
column always begins with "{" and is never changed.

With `raw` (ExportUsageRequest.raw) every value is written exactly as stored, for programs that
parse the file; either way the text is RFC 4180 and round-trips through csv.reader.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence

from quota_service.domain.validation import MAX_ATTRS, ident
from quota_service.errors import InvalidArgument
from quota_service.reports.usage_range import ms_to_dt

# OWASP's list of the first characters that make a spreadsheet read a cell as a formula
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

FIXED_COLUMNS = ("entry_id", "occurred_at", "account_id", "meter", "bucket", "grant_id", "kind", "amount",
                 "running_used", "idempotency_key")
ATTRIBUTES_COLUMN = "attributes"


def header(attribute_columns: Sequence[str]) -> list[str]:
    return [*FIXED_COLUMNS, *attribute_columns, ATTRIBUTES_COLUMN]


def check_attribute_columns(columns: Sequence[str]) -> tuple[str, ...]:
    """The requested attribute columns, validated: attribute keys, distinct, not a fixed column's name."""
    if len(columns) > MAX_ATTRS:
        raise InvalidArgument("attribute_columns", f"at most {MAX_ATTRS} columns")
    seen: set[str] = set()
    for i, name in enumerate(columns):
        field = f"attribute_columns[{i}]"
        ident(field, name, max_len=64)
        if name in FIXED_COLUMNS or name == ATTRIBUTES_COLUMN:
            raise InvalidArgument(field, f"{name!r} is the name of a fixed column; the attribute is in the "
                                         "attributes column")
        if name in seen:
            raise InvalidArgument(field, f"{name!r} is asked for twice")
        seen.add(name)
    return tuple(columns)


def neutralise(value: object) -> object:
    """The value as a spreadsheet should show it: a text cell that would start a formula gets a
    leading single quote; numbers and other text are unchanged (see the module's docstring)."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def iso_utc(ms: int) -> str:
    """2026-01-31T17:05:09.123Z"""
    return ms_to_dt(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CsvWriter:
    """Rows to CSV text, collected until taken."""

    def __init__(self, attribute_columns: Sequence[str], *, raw: bool = False) -> None:
        """raw: write every value as stored; otherwise text cells are neutralised for spreadsheets."""
        self._columns = tuple(attribute_columns)
        self._raw = raw
        self._buf = io.StringIO()
        self._out = csv.writer(self._buf, lineterminator="\r\n")
        self.rows = 0

    def header(self) -> None:
        self._out.writerow(header(self._columns))

    def row(self, values: Iterable[object], attributes: Mapping[str, str]) -> None:
        """One data row: the fixed columns' values (ints for the numeric ones), then the attributes."""
        cells = [*values, *(attributes.get(c, "") for c in self._columns)]
        if not self._raw:
            cells = [neutralise(v) for v in cells]
        self._out.writerow([*cells, json.dumps(dict(attributes), ensure_ascii=False, sort_keys=True,
                                               separators=(",", ":"))])
        self.rows += 1

    def size(self) -> int:
        return self._buf.tell()

    def take(self) -> tuple[bytes, int]:
        """The text written since the last take, as UTF-8, and its data rows."""
        data, rows = self._buf.getvalue().encode(), self.rows
        self._buf.seek(0)
        self._buf.truncate()
        self.rows = 0
        return data, rows
