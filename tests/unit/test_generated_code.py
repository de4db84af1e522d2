"""The committed protobuf/gRPC code matches proto/quota/v1/quota.proto."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from quota.v1 import quota_pb2, quota_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto" / "quota" / "v1" / "quota.proto"


RPC = re.compile(r"^\s*rpc\s+(\w+)\s*\(\s*(stream\s+)?([\w.]+)\s*\)\s*returns\s*\(\s*(stream\s+)?([\w.]+)\s*\)", re.M)


def proto_rpcs() -> dict[str, tuple[str, bool, str, bool]]:
    """rpc name -> (request type, client streaming, response type, server streaming), from the .proto text."""
    text = re.sub(r"//[^\n]*", "", PROTO.read_text())
    body = re.search(r"service\s+QuotaService\s*\{(.*?)\n\}", text, re.S)
    assert body is not None, "no service QuotaService in quota.proto"
    return {name: (req, bool(cs), resp, bool(ss)) for name, cs, req, ss, resp in RPC.findall(body.group(1))}


def test_generate_check_passes() -> None:
    proc = subprocess.run([sys.executable, "proto/generate.py", "--check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_descriptor_has_the_service_and_rpcs_of_the_proto() -> None:
    expected = proto_rpcs()
    assert {"Reserve", "Commit", "Release", "Consume", "Check", "GetBalance", "TopUp", "CreateAccount",
            "SetAccountStatus"} <= set(expected)
    fd = quota_pb2.DESCRIPTOR
    assert fd.package == "quota.v1"
    service = fd.services_by_name["QuotaService"]
    assert service.full_name == "quota.v1.QuotaService"
    got = {m.name: (m.input_type.full_name, m.client_streaming, m.output_type.full_name, m.server_streaming)
           for m in service.methods}
    assert got == {name: (f"quota.v1.{req}", cs, f"quota.v1.{resp}", ss)
                   for name, (req, cs, resp, ss) in expected.items()}


def test_stub_and_servicer_expose_every_rpc() -> None:
    servicer = quota_pb2_grpc.QuotaServiceServicer
    for name in proto_rpcs():
        assert callable(getattr(servicer, name)), name
    # the stub builds one multicallable per rpc, with the full method path
    import grpc

    channel = grpc.insecure_channel("127.0.0.1:1")
    try:
        stub = quota_pb2_grpc.QuotaServiceStub(channel)
        for name in proto_rpcs():
            assert hasattr(stub, name), name
    finally:
        channel.close()


def test_the_service_implements_every_rpc_of_the_generated_base() -> None:
    """The generated base servicer answers UNIMPLEMENTED (NotImplementedError) for every RPC; the
    service's servicer must define each one itself."""
    from quota_service.api.servicer import QuotaServicer

    names = [m.name for m in quota_pb2.DESCRIPTOR.services_by_name["QuotaService"].methods]
    missing = [n for n in names if n not in vars(QuotaServicer)]
    assert names and missing == []


def test_connect_code_routes_every_rpc() -> None:
    """quota_connect.py (protoc-gen-connect-python, made by proto/generate.py) serves every RPC of the proto."""
    from quota.v1 import quota_connect

    source = Path(quota_connect.__file__).read_text()
    for name in proto_rpcs():
        assert f'"/quota.v1.QuotaService/{name}"' in source, name
