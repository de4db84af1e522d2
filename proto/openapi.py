"""Generate clients/quota/v1/openapi.json: an OpenAPI 3.1 document of quota.v1.QuotaService's Connect JSON endpoints.

Usage: python proto/openapi.py [--check]

The document is built from the .proto itself (compiled with its comments, protoc's source info), so
every field carries the comment that states its unit, and from the service's error table
(quota_service/api/errors.py) and roles (quota_service/auth.py). Every RPC is
`POST /quota.v1.QuotaService/<Method>` with the request message as its JSON body, in protobuf's JSON
mapping (lowerCamelCase names, 64-bit integers as strings, enums by name); server streams are
`application/connect+json` streams. --check builds it in memory and fails if the committed file differs.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PROTO = "quota/v1/quota.proto"
OUT = PROTO_DIR.parent / "clients" / "quota" / "v1" / "openapi.json"
SERVICE = "quota.v1.QuotaService"
FDP = descriptor_pb2.FieldDescriptorProto

# Connect error codes, the HTTP status each is sent with (the Connect protocol's table), and when this
# service answers it.
CONNECT_CODES: list[tuple[str, int, str]] = [
    ("invalid_argument", 400, "Bad input: the message and the BadRequest detail name the field and the reason. "
                              "Nothing was written."),
    ("failed_precondition", 400, "Valid, but the state does not allow it (a hold already resolved or expired, "
                                 "a commit above what is available)."),
    ("out_of_range", 400, "ReserveBatch with more than 1000 items."),
    ("unauthenticated", 401, "No API key, or an unknown, malformed or revoked one."),
    ("permission_denied", 403, "The key lacks the method's role, or the account is outside its scope."),
    ("not_found", 404, "Unknown account, meter, grant or reservation."),
    ("already_exists", 409, "The idempotency key was used before for a different request."),
    ("resource_exhausted", 429, "The caller is over its budget (rate, concurrent calls, open streams), or a "
                                "request is larger than 256 KiB."),
    ("internal", 500, "A fault in the service (it logged the cause)."),
    ("unavailable", 503, "Redis or Postgres cannot be reached. Never a denial: retry with the same "
                         "idempotency key."),
    ("deadline_exceeded", 504, "The call ran past its deadline (connect-timeout-ms) or the server's cap."),
]

# GET /v1/accounts/{account}/usage.csv: its query parameters (the ExportUsage request's, flattened)
TIME = {"type": "string", "examples": ["1793491200000", "2026-11-01", "2026-11-01T00:00:00Z"]}
CSV_PARAMETERS: list[tuple[str, dict[str, Any], str]] = [
    ("from", TIME, "Start of the range, inclusive: milliseconds since the Unix epoch, or an ISO 8601 date "
                   "(UTC midnight) or date-time. Absent: `to` minus the report's range cap."),
    ("to", TIME, "End of the range, exclusive, in the same forms as `from`. Absent: now."),
    ("meter", {"type": "string"}, "Only this meter's rows."),
    ("columns", {"type": "string", "examples": ["room_id,channel"]},
     "Attributes to give their own column, comma-separated (the parameter may be repeated)."),
    ("raw", {"type": "boolean", "default": False},
     "false: a text cell that begins with = + - @ tab or carriage return is written with a single quote in "
     "front, so that no spreadsheet runs it as a formula; true: every value exactly as stored."),
]


# fields that mean the same in every message: one without a comment takes the first one's
SHARED_FIELDS = ("account_id", "idempotency_key", "meter", "org_id", "reservation_id", "currency", "feature",
                 "replayed", "page_token", "next_page_token", "time_zone", "plan", "product", "interval")
# the naming rule of quota.proto's header: a field's unit is in its name
UNITS = {"_at_ms": "milliseconds since the Unix epoch (UTC)", "_ms": "milliseconds",
         "_minor": "an amount in the currency's minor unit", "_s": "seconds", "_id": "an id",
         "_pct": "percent"}


def header(fd: descriptor_pb2.FileDescriptorProto) -> str:
    """The file's opening comment (attached to its syntax statement), as Markdown."""
    loc = next((loc for loc in fd.source_code_info.location if list(loc.path) == [12]), None)
    return "\n".join(line[1:] if line.startswith(" ") else line
                     for line in (loc.leading_comments if loc else "").strip("\n").splitlines())


def descriptor() -> descriptor_pb2.FileDescriptorProto:
    """quota.proto compiled with its comments (protoc --include_source_info)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "quota.pb"
        rc = protoc.main(["grpc_tools.protoc", f"-I{PROTO_DIR}", "--include_source_info",
                          f"--descriptor_set_out={out}", PROTO])
        if rc != 0:
            raise SystemExit(f"protoc failed with exit code {rc}")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]


class Comments:
    """Each element's comment: its leading comment, else its trailing one with the comment lines
    aligned under it (protoc drops those continuation lines when nothing follows in the block)."""

    def __init__(self, fd: descriptor_pb2.FileDescriptorProto) -> None:
        self.lines = (PROTO_DIR / PROTO).read_text().splitlines()
        self.by_path = {tuple(loc.path): loc for loc in fd.source_code_info.location}

    def __call__(self, *path: int) -> str:
        loc = self.by_path.get(path)
        if loc is None:
            return ""
        if loc.leading_comments.strip() and not self._continues_above(loc):
            return _tidy(loc.leading_comments)
        if not loc.trailing_comments.strip():
            return ""
        text = [loc.trailing_comments.strip()]
        if "\n" in text[0]:  # protoc kept the block whole
            return _tidy(text[0])
        end = loc.span[2] if len(loc.span) == 4 else loc.span[0]
        column = self.lines[end].find("//", loc.span[-1])
        for line in self.lines[end + 1:]:
            if column < 0 or not line[:column].isspace() or not line[column:].startswith("//"):
                break
            text.append(line[column + 2:].strip())
        return _tidy("\n".join(text))


    def _continues_above(self, loc: descriptor_pb2.SourceCodeInfo.Location) -> bool:
        """Whether the comment protoc took as this element's leading one goes on the trailing comment of
        the line above it (aligned under it), and so belongs to the element before."""
        first = loc.span[0] - len(loc.leading_comments.rstrip("\n").split("\n"))
        if first < 1:
            return False
        column = self.lines[first].find("//")
        above = self.lines[first - 1]
        return column > 0 and above.find("//", 1) == column and not above[:column].isspace()


def _tidy(comment: str) -> str:
    return re.sub(r"[ \t]*\n[ \t]*", " ", comment.strip())


def _scalar(field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
    t = field.type
    if t in (FDP.TYPE_INT64, FDP.TYPE_SINT64, FDP.TYPE_SFIXED64, FDP.TYPE_UINT64, FDP.TYPE_FIXED64):
        # proto3 JSON: a decimal string in answers; a string or a number is accepted in requests
        return {"type": ["string", "integer"], "format": "uint64" if t in (FDP.TYPE_UINT64, FDP.TYPE_FIXED64)
                else "int64", "pattern": r"^-?[0-9]+$"}
    if t in (FDP.TYPE_INT32, FDP.TYPE_SINT32, FDP.TYPE_SFIXED32):
        return {"type": "integer", "format": "int32"}
    if t in (FDP.TYPE_UINT32, FDP.TYPE_FIXED32):
        return {"type": "integer", "format": "uint32", "minimum": 0}
    if t in (FDP.TYPE_DOUBLE, FDP.TYPE_FLOAT):
        return {"type": "number", "format": "double" if t == FDP.TYPE_DOUBLE else "float"}
    if t == FDP.TYPE_BOOL:
        return {"type": "boolean"}
    if t == FDP.TYPE_BYTES:
        return {"type": "string", "contentEncoding": "base64"}
    return {"type": "string"}


def _ref(type_name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{type_name.lstrip('.')}"}


class Schemas:
    """JSON Schemas of every message and enum of the file, in protobuf's JSON mapping."""

    def __init__(self, fd: descriptor_pb2.FileDescriptorProto, comments: Comments) -> None:
        self.comments = comments
        self.maps: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.out: dict[str, Any] = {}
        self.field_comments: dict[str, str] = {}  # a field name's first comment, for same-named fields
        prefix = f".{fd.package}"
        self._collect_maps(fd.message_type, prefix)
        self._first_comments(fd.message_type, (4,))
        for i, enum in enumerate(fd.enum_type):
            self._enum(enum, f"{fd.package}.{enum.name}", (5, i))
        for i, message in enumerate(fd.message_type):
            self._message(message, f"{fd.package}.{message.name}", (4, i))

    def _collect_maps(self, messages: Any, prefix: str) -> None:
        for message in messages:
            name = f"{prefix}.{message.name}"
            if message.options.map_entry:
                self.maps[name] = message
            self._collect_maps(message.nested_type, name)

    def _first_comments(self, messages: Any, path: tuple[int, ...]) -> None:
        for i, message in enumerate(messages):
            for j, field in enumerate(message.field):
                text = self.comments(*path, i, 2, j)
                if text and field.name in SHARED_FIELDS:
                    self.field_comments.setdefault(field.name, text)
            self._first_comments(message.nested_type, (*path, i, 3))

    def _enum(self, enum: descriptor_pb2.EnumDescriptorProto, name: str, path: tuple[int, ...]) -> None:
        values = [v.name for v in enum.value]
        notes = [f"`{v.name}`: {c}" for j, v in enumerate(enum.value) if (c := self.comments(*path, 2, j))]
        text = " ".join(filter(None, [self.comments(*path), "By name (the number is accepted in requests).",
                                      "; ".join(notes)]))
        self.out[name] = {"type": "string", "enum": values, "description": text}

    def _message(self, message: descriptor_pb2.DescriptorProto, name: str, path: tuple[int, ...]) -> None:
        if message.options.map_entry:
            return
        for i, enum in enumerate(message.enum_type):
            self._enum(enum, f"{name}.{enum.name}", (*path, 4, i))
        for i, nested in enumerate(message.nested_type):
            self._message(nested, f"{name}.{nested.name}", (*path, 3, i))
        properties = {field.json_name: self._field(field, (*path, 2, j)) for j, field in enumerate(message.field)}
        schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
        text = self.comments(*path)
        if text:
            schema["description"] = text
        self.out[name] = schema

    def _field(self, field: descriptor_pb2.FieldDescriptorProto, path: tuple[int, ...]) -> dict[str, Any]:
        text = self.comments(*path) or self.field_comments.get(field.name, "") or self._by_type(field)
        if field.proto3_optional:
            text += " Absent: not set."
        entry = self.maps.get(field.type_name)
        if entry is not None:
            schema: dict[str, Any] = {"type": "object", "additionalProperties": self._value(entry.field[1])}
        elif field.label == FDP.LABEL_REPEATED:
            schema = {"type": "array", "items": self._value(field)}
        else:
            schema = self._value(field)
        return {**schema, "description": text} if "$ref" not in schema else {"allOf": [schema], "description": text}

    def _by_type(self, field: descriptor_pb2.FieldDescriptorProto) -> str:
        """A field without a comment of its own: its type's description, else its name with the unit the
        file's naming rule gives it (*_ms: a time in ms, *_minor: minor units, *_s: seconds)."""
        if field.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM) and field.type_name not in self.maps:
            text = self.out.get(field.type_name.lstrip("."), {}).get("description", "")
            if text:
                return text
            return f"The {field.type_name.rsplit('.', 1)[-1]}{'s' if field.label == FDP.LABEL_REPEATED else ''}."
        words = field.name.replace("_", " ")
        for suffix, unit in UNITS.items():
            if field.name.endswith(suffix):
                return f"{words[: -len(suffix)].capitalize()}: {unit}."
        return f"{words.capitalize()}."

    def _value(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        if field.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM):
            return _ref(field.type_name)
        return _scalar(field)


def error_schemas() -> dict[str, Any]:
    """The Connect error JSON and the google.rpc details this service puts in it."""
    from quota_service.api.errors import DOMAIN

    codes = [code for code, _, _ in CONNECT_CODES]
    return {
        "connect.Error": {
            "type": "object", "required": ["code"],
            "description": "A Connect error: the body of every non-200 answer of a unary call, and the `error` "
                           "of a stream's end message.",
            "properties": {
                "code": {"type": "string", "enum": codes, "description": "The error code (gRPC's, in snake_case)."},
                "message": {"type": "string", "description": "What went wrong, for people; for bad input it starts "
                                                             "with the field's name (`amount: must be ...`)."},
                "details": {"type": "array", "items": {"$ref": "#/components/schemas/connect.ErrorDetail"},
                            "description": "google.rpc.ErrorInfo always; google.rpc.BadRequest for bad input."},
            },
        },
        "connect.ErrorDetail": {
            "type": "object", "required": ["type", "value"],
            "properties": {
                "type": {"type": "string", "enum": ["google.rpc.ErrorInfo", "google.rpc.BadRequest"],
                         "description": "The detail's message type."},
                "value": {"type": "string", "contentEncoding": "base64",
                          "description": "The detail in the protobuf binary format, base64 (unpadded)."},
                "debug": {"anyOf": [{"$ref": "#/components/schemas/google.rpc.ErrorInfo"},
                                    {"$ref": "#/components/schemas/google.rpc.BadRequest"}],
                          "description": "When present, the same detail in JSON, for people; programs decode `value`."},
            },
        },
        "google.rpc.ErrorInfo": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "reason": {"type": "string", "enum": sorted({r for _, rs in _reasons_by_code().items() for r in rs}),
                           "description": "Why, in UPPER_SNAKE_CASE: stable, for programs to branch on."},
                "domain": {"type": "string", "const": DOMAIN},
                "metadata": {"type": "object", "additionalProperties": {"type": "string"},
                             "description": "`field`: the field at fault, when there is one."},
            },
        },
        "google.rpc.BadRequest": {
            "type": "object", "additionalProperties": False,
            "properties": {"fieldViolations": {"type": "array", "items": {
                "type": "object", "properties": {
                    "field": {"type": "string", "description": "The field at fault (its proto name, e.g. "
                                                               "`amount`, `items[2].meter`)."},
                    "description": {"type": "string", "description": "Why it was refused."}}}}},
        },
    }


def _reasons_by_code() -> dict[str, list[str]]:
    """Connect code -> the ErrorInfo reasons this service sends with it (from api/errors.py)."""
    from quota_service.api.errors import INTERNAL_RULE, RULES

    out: dict[str, list[str]] = {}
    for rule in [*RULES, INTERNAL_RULE]:
        out.setdefault(rule.code.name.lower(), []).append(rule.reason)
    return out


def error_responses() -> dict[str, Any]:
    """One response per HTTP status a unary call can fail with, listing its codes and their reasons."""
    reasons = _reasons_by_code()
    by_status: dict[int, list[str]] = {}
    for code, status, meaning in CONNECT_CODES:
        why = ", ".join(f"`{r}`" for r in reasons.get(code, [])) or "none"
        by_status.setdefault(status, []).append(f"`{code}` ({why}): {meaning}")
    return {f"Error{status}": {
        "description": "Connect error. Codes (ErrorInfo reasons): " + " ".join(lines),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/connect.Error"}}},
    } for status, lines in sorted(by_status.items())}


def operation(method: descriptor_pb2.MethodDescriptorProto, index: int, comments: Comments) -> dict[str, Any]:
    from quota_service.auth import METHOD_ROLES

    text = comments(6, 0, 2, index)
    role = METHOD_ROLES.get(method.name, "admin")
    request, response = _ref(method.input_type), _ref(method.output_type)
    op: dict[str, Any] = {
        "operationId": method.name, "tags": ["QuotaService"], "summary": text.split(". ")[0].rstrip("."),
        "description": f"{text}\n\nRole: `{role}` (or `admin`).",
        "parameters": [{"$ref": "#/components/parameters/ConnectTimeout"},
                       {"$ref": "#/components/parameters/ConnectProtocolVersion"}],
    }
    if not method.server_streaming:
        op["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": request}, "application/proto": {"schema": {"type": "string",
                                                                                      "format": "binary"}}}}
        op["responses"] = {"200": {"description": f"The `{method.output_type.lstrip('.')}`.",
                                   "content": {"application/json": {"schema": response}}},
                           **{str(s): {"$ref": f"#/components/responses/Error{s}"}
                              for s in sorted({status for _, status, _ in CONNECT_CODES})}}
        return op
    kind = "bidirectional stream (HTTP/2 only)" if method.client_streaming else "server stream"
    op["description"] += (
        f"\n\nA {kind} in the Connect streaming protocol: the body is a sequence of enveloped messages "
        "(1 flag byte, a 4-byte big-endian length, then the message as JSON). The request is one such "
        "envelope" + (" per message" if method.client_streaming else "") + "; the answer is one envelope per "
        f"`{method.output_type.lstrip('.')}`, then an end message (flag 0x02) whose JSON is "
        "`{\"error\": connect.Error, \"metadata\": {...}}`, without `error` when the call succeeded. Errors of "
        "a stream arrive in that end message, with HTTP status 200.")
    op["requestBody"] = {"required": True, "content": {"application/connect+json": {"schema": request}}}
    op["responses"] = {"200": {
        "description": "The stream: each envelope holds one answer message; the end message may hold a "
                       "`connect.Error`.",
        "content": {"application/connect+json": {"schema": response}}}}
    op["x-connect-streaming"] = "bidi" if method.client_streaming else "server"
    return op


def usage_csv() -> dict[str, Any]:
    parameters = [{"name": "account", "in": "path", "required": True, "schema": {"type": "string"},
                   "description": "The account's id."}]
    parameters += [{"name": name, "in": "query", "required": False, "schema": schema, "description": text}
                   for name, schema, text in CSV_PARAMETERS]
    errors = {str(s): {"$ref": f"#/components/responses/Error{s}"} for s in (400, 401, 403, 404, 429, 503)}
    return {"get": {
        "operationId": "DownloadUsageCsv", "tags": ["Downloads"],
        "summary": "The account's usage rows as a CSV download",
        "description": "The ExportUsage stream as a file, for browsers: the same rows, caps and CSV safety. "
                       "`attr.<name>=<value>` query parameters keep only rows whose attribute <name> has that "
                       "value (e.g. `attr.channel=whatsapp`). Role: `read` (or `admin`).",
        "parameters": parameters,
        "responses": {"200": {
            "description": "UTF-8 CSV (RFC 4180), header row first; sent as it is produced.",
            "headers": {"Content-Disposition": {"schema": {"type": "string"},
                                                "description": "attachment; filename=\"usage-<account>-....csv\""}},
            "content": {"text/csv": {"schema": {"type": "string"}}}}, **errors},
    }}


def document() -> dict[str, Any]:
    fd = descriptor()
    comments = Comments(fd)
    service = next(s for i, s in enumerate(fd.service) if f"{fd.package}.{s.name}" == SERVICE)
    paths: dict[str, Any] = {f"/{SERVICE}/{m.name}": {"post": operation(m, i, comments)}
                             for i, m in enumerate(service.method)}
    paths["/v1/accounts/{account}/usage.csv"] = usage_csv()
    schemas = Schemas(fd, comments).out
    return {
        "openapi": "3.1.0",
        "info": {"title": "Quota service: Connect JSON API", "version": fd.package, "description": header(fd) + "\n\n" + INTRO},
        "servers": [{"url": "http://localhost:8080", "description": "QUOTA_HTTP_PORT of a local server"}],
        "security": [{"bearer": []}],
        "tags": [{"name": "QuotaService", "description": "quota.v1.QuotaService over the Connect protocol."},
                 {"name": "Downloads", "description": "Plain HTTP downloads."}],
        "paths": paths,
        "components": {
            "schemas": {**dict(sorted(schemas.items())), **error_schemas()},
            "responses": error_responses(),
            "parameters": {
                "ConnectTimeout": {"name": "connect-timeout-ms", "in": "header", "required": False,
                                   "schema": {"type": "integer", "minimum": 1},
                                   "description": "The call's deadline in milliseconds (the server caps it)."},
                "ConnectProtocolVersion": {"name": "Connect-Protocol-Version", "in": "header", "required": False,
                                           "schema": {"type": "string", "const": "1"},
                                           "description": "The Connect protocol's version."},
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "qk_<id>_<secret>",
                                           "description": "An API key: `Authorization: Bearer qk_...`."}},
        },
    }


INTRO = (
    "Every RPC of quota.v1.QuotaService is `POST /quota.v1.QuotaService/<Method>` whose body is the request "
    "message in protobuf's JSON mapping: field names in lowerCamelCase (the proto names are accepted too), "
    "64-bit integers as decimal strings (numbers are accepted in requests), enums by name, fields at their "
    "default value (0, \"\", false, empty) left out of answers. A denial is a normal answer "
    "(`decision: DENIED` with a reason), not an error. An error is a `connect.Error` with the HTTP status of "
    "its code, carrying google.rpc.ErrorInfo (a stable `reason`) and, for bad input, google.rpc.BadRequest "
    "(the field at fault). Mutating calls take an `idempotencyKey`: send the same key again on a retry.")


def render() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not OUT.is_file() or OUT.read_text() != text:
            print("clients/quota/v1/openapi.json is out of date; run python proto/openapi.py")
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
