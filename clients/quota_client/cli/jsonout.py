"""JSON for scripts: every field present (zeros, empty strings and lists included), numbers as numbers.

The client's typed results are dataclasses and convert as they are. A protobuf message (an alert
event) is walked field by field rather than through MessageToDict, which would print 64-bit integers
as strings and leave out fields at their zero value.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message


def plain(value: Any) -> Any:
    """A value made of dicts, lists, strings, numbers and booleans only."""
    if isinstance(value, Message):
        return message_dict(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def message_dict(m: Message) -> dict[str, Any]:
    """Every field of a protobuf message by its .proto name; enums by name, int64 as a number."""
    return {f.name: _field(f, getattr(m, f.name)) for f in m.DESCRIPTOR.fields}


def _field(f: FieldDescriptor, value: Any) -> Any:
    if f.message_type is not None and f.message_type.GetOptions().map_entry:
        value_field = f.message_type.fields_by_name["value"]
        return {str(k): _scalar(value_field, v) for k, v in value.items()}
    if f.is_repeated:
        return [_scalar(f, v) for v in value]
    return _scalar(f, value)


def _scalar(f: FieldDescriptor, value: Any) -> Any:
    if isinstance(value, Message):
        return message_dict(value)
    if f.enum_type is not None:
        known = f.enum_type.values_by_number.get(value)
        return known.name if known is not None else value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def dumps(value: Any, *, indent: int | None = 2) -> str:
    return json.dumps(plain(value), indent=indent, ensure_ascii=False)
