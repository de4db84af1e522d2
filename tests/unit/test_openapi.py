"""clients/quota/v1/openapi.json: the OpenAPI 3.1 document of the Connect JSON endpoints, generated from the .proto
by proto/openapi.py, is current, valid, describes every RPC, field and error, and its schemas accept
exactly what protobuf's JSON mapping writes."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import jsonschema
import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from openapi_spec_validator import OpenAPIV31SpecValidator
from quota.v1 import quota_pb2
from quota_service import errors
from quota_service.api import errors as api_errors

ROOT = Path(__file__).resolve().parents[2]
DOC: dict[str, Any] = json.loads((ROOT / "clients" / "quota" / "v1" / "openapi.json").read_text())
SCHEMAS: dict[str, Any] = DOC["components"]["schemas"]
SERVICE = quota_pb2.DESCRIPTOR.services_by_name["QuotaService"]


def test_openapi_check_passes() -> None:
    proc = subprocess.run([sys.executable, "proto/openapi.py", "--check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOC["openapi"].startswith("3.1")
    problems = [str(e.message) for e in OpenAPIV31SpecValidator(DOC).iter_errors()]
    assert problems == []


def test_every_rpc_is_a_post_path_and_streams_are_connect_streams() -> None:
    for method in SERVICE.methods:
        op = DOC["paths"][f"/quota.v1.QuotaService/{method.name}"]["post"]
        request = op["requestBody"]["content"]
        answer = op["responses"]["200"]["content"]
        if method.server_streaming:
            assert set(request) == set(answer) == {"application/connect+json"}, method.name
        else:
            assert "application/json" in request and set(answer) == {"application/json"}, method.name
            assert {"400", "401", "403", "404", "409", "429", "500", "503", "504"} <= set(op["responses"]), method.name
        assert request[next(iter(request))]["schema"] == {"$ref": f"#/components/schemas/{method.input_type.full_name}"}
        assert op["description"].strip(), method.name
    assert {"/v1/accounts/{account}/usage.csv"} <= set(DOC["paths"])


def quota_properties() -> list[tuple[str, str, dict[str, Any]]]:
    return [(name, prop, spec) for name, schema in SCHEMAS.items() if name.startswith("quota.v1.")
            for prop, spec in schema.get("properties", {}).items()]


def test_every_field_is_described_from_the_proto() -> None:
    props = quota_properties()
    assert len(props) > 200
    assert [f"{n}.{p}" for n, p, spec in props if not spec.get("description", "").strip()] == []
    reserve = SCHEMAS["quota.v1.ReserveRequest"]["properties"]
    assert reserve["ttlMs"]["description"].startswith("how long the hold lives before it expires")
    assert reserve["amount"]["description"] == "units to hold; 1..1e12"
    # a trailing comment that goes on over the next lines is kept whole
    assert "(channel, room_id" in SCHEMAS["quota.v1.UsageFilter"]["properties"]["attributes"]["description"]
    assert "whether it is allowed" in reserve["feature"]["description"]
    # ... and such a continuation is not taken for the next field's own comment
    transaction = SCHEMAS["quota.v1.Transaction"]["properties"]
    assert transaction["kind"]["description"].endswith("plan_change, charge ...")
    assert transaction["grantId"]["description"] == "the grant it changed"
    assert SCHEMAS["quota.v1.VerifyDifference"]["properties"]["expected"]["description"].startswith("from the ledger")
    assert SCHEMAS["quota.v1.GrantBalance"]["properties"]["held"]["description"] == \
        "units or minor units held by open reservations"
    assert "Units:" in DOC["info"]["description"], "the .proto's opening comment (units) is the API's description"


def test_every_error_code_and_reason_is_described() -> None:
    error = SCHEMAS["connect.Error"]
    codes = set(error["properties"]["code"]["enum"])
    assert {rule.code.name.lower() for rule in [*api_errors.RULES, api_errors.INTERNAL_RULE]} <= codes
    assert "out_of_range" in codes  # ReserveBatch's cap
    responses = DOC["components"]["responses"]
    described = " ".join(r["description"] for r in responses.values())
    for code in codes:
        assert f"`{code}`" in described, code
    for rule in api_errors.RULES:
        assert f"`{rule.reason}`" in described, rule.reason
    assert set(SCHEMAS["google.rpc.ErrorInfo"]["properties"]["reason"]["enum"]) == \
        {r.reason for r in [*api_errors.RULES, api_errors.INTERNAL_RULE]}
    assert responses["Error400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/connect.Error"}


def test_bearer_security_applies_to_every_operation() -> None:
    assert DOC["components"]["securitySchemes"]["bearer"] == {
        **DOC["components"]["securitySchemes"]["bearer"], "type": "http", "scheme": "bearer"}
    assert DOC["security"] == [{"bearer": []}]


def test_usage_csv_parameters_are_the_ones_the_http_port_reads() -> None:
    from quota_service.api import http_app

    op = DOC["paths"]["/v1/accounts/{account}/usage.csv"]["get"]
    names = {p["name"] for p in op["parameters"] if p["in"] == "query"}
    assert names == {"from", "to", "meter", "columns", "raw"}
    for name in names:
        assert name in http_app.CSV_PARAMETERS
    assert "attr.<name>" in op["description"] and "attr.<name>" in http_app.CSV_PARAMETERS
    assert set(op["responses"]["200"]["content"]) == {"text/csv"}


# -- the schemas accept what json_format writes, and refuse what it would not ---------------------------

def filled(descriptor: Descriptor, depth: int = 0) -> Message:
    """A message of this type with every field set (non-default), nested messages to a small depth."""
    message = GetMessageClass(descriptor)()
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            target = getattr(message, field.name)
            if value.message_type is not None:
                if depth < 2:
                    target[sample(key)].CopyFrom(filled(value.message_type, depth + 1))
            else:
                target[sample(key)] = sample(value)
        elif field.message_type is not None:
            if depth < 2:
                child = filled(field.message_type, depth + 1)
                if field.is_repeated:
                    getattr(message, field.name).add().CopyFrom(child)
                else:
                    getattr(message, field.name).CopyFrom(child)
        elif field.is_repeated:
            getattr(message, field.name).append(sample(field))
        else:
            setattr(message, field.name, sample(field))
    return message


def sample(field: FieldDescriptor) -> Any:
    if field.enum_type is not None:
        return field.enum_type.values[-1].number
    return {FieldDescriptor.CPPTYPE_STRING: "x" if field.type == FieldDescriptor.TYPE_STRING else b"\x01\x02",
            FieldDescriptor.CPPTYPE_BOOL: True, FieldDescriptor.CPPTYPE_DOUBLE: 1.5, FieldDescriptor.CPPTYPE_FLOAT: 1.5,
            FieldDescriptor.CPPTYPE_INT32: -7, FieldDescriptor.CPPTYPE_INT64: -9_007_199_254_740_993,
            FieldDescriptor.CPPTYPE_UINT32: 7, FieldDescriptor.CPPTYPE_UINT64: 18_446_744_073_709_551_615,
            }[field.cpp_type]


def validator(type_name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**DOC, "$ref": f"#/components/schemas/{type_name}"})


MESSAGES = sorted(quota_pb2.DESCRIPTOR.message_types_by_name.values(), key=lambda d: d.name)


@pytest.mark.parametrize("descriptor", MESSAGES, ids=lambda d: d.name)
def test_schema_accepts_the_messages_json(descriptor: Descriptor) -> None:
    as_json = json_format.MessageToDict(filled(descriptor))
    assert as_json, descriptor.name
    problems = [f"{list(e.path)}: {e.message}" for e in validator(descriptor.full_name).iter_errors(as_json)]
    assert problems == []


def test_schema_refuses_what_the_json_mapping_does_not_write() -> None:
    reserve = validator("quota.v1.ReserveRequest")
    assert reserve.is_valid({"accountId": "acme", "meter": "ai_dialog", "amount": 1})  # the README's curl body
    assert reserve.is_valid({"accountId": "acme", "amount": "1000000000000"})
    assert not reserve.is_valid({"accountId": "acme", "amount": "one"})
    assert not reserve.is_valid({"accountId": "acme", "amout": 1})
    assert not validator("quota.v1.Decision").is_valid({"status": "MAYBE"})


def test_connect_error_schema_holds_the_services_details() -> None:
    failure = api_errors.failure_for(errors.InvalidArgument("amount", "must be greater than 0"))
    status = api_errors.to_rpc_status(failure)
    body = {"code": grpc.StatusCode(failure.code).name.lower(), "message": failure.message,
            "details": [{"type": d.TypeName(), "value": base64.b64encode(d.value).decode().rstrip("=")} for d in status.details]}
    assert validator("connect.Error").is_valid(body)
    assert not validator("connect.Error").is_valid({"code": "teapot"})
