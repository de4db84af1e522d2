"""Fuzz every request field through a real server, with raw gRPC stubs.

Hypothesis generates arbitrary field values: unicode, empty, very long and control-character
text, huge and negative int64s, unknown enum numbers, big maps. Whatever comes in, the answer is
a proper status (never INTERNAL or UNKNOWN, and never UNAVAILABLE: the backends are up), and a
request refused with INVALID_ARGUMENT writes nothing: the row counts of the ledger, operations,
accounts, grants and holds tables and the balance of a known account are the same after.

Hypothesis runs synchronously, so the server runs on an event loop of its own in a background
thread, and the test talks to it over a blocking gRPC channel.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from quota.v1 import quota_pb2 as pb
from quota.v1 import quota_pb2_grpc as pb_grpc
from quota_service import embedded
from quota_service.domain.clock import ManualClock

from tests.support.threaded_server import ServerThread, server_settings

T = TypeVar("T")
METER = "ai_dialog"
KNOWN = f"fuzz-{uuid.uuid4().hex[:10]}"  # an account with units, a wallet and open holds
ACCEPTABLE = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
              grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.OUT_OF_RANGE,
              grpc.StatusCode.RESOURCE_EXHAUSTED}
ACCEPTABLE_ITEM_CODES = {c.value[0] for c in ACCEPTABLE}
INT64 = (-(2**63), 2**63 - 1)
INT32 = (-(2**31), 2**31 - 1)


# -- the server, in a thread of its own ----------------------------------------------------------


class ErrorLog(logging.Handler):
    """Keeps the server's error log lines, to show the cause of an INTERNAL."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.records.append(text)


@dataclasses.dataclass
class Fuzz:
    srv: ServerThread
    stub: pb_grpc.QuotaServiceStub
    holds: list[str]
    errors: ErrorLog
    channel: grpc.Channel

    def counts(self) -> tuple[int, ...]:
        assert self.srv.pg is not None
        row = self.srv.call(self.srv.pg.fetchrow(
            # the sweeper's expire rows are left out: they are no one's request
            "SELECT (SELECT count(*) FROM ledger WHERE kind <> 'expire') AS ledger,"
            " (SELECT count(*) FROM operations) AS ops, (SELECT count(*) FROM accounts) AS accounts,"
            " (SELECT count(*) FROM grants) AS grants, (SELECT count(*) FROM holds) AS holds"))
        return tuple(row)

    def balance(self) -> pb.Balance:
        return self.stub.GetBalance(pb.GetBalanceRequest(account_id=KNOWN), timeout=20)


@pytest.fixture(scope="module")
def fuzz(valkey: embedded.ValkeyProcess, pg_dsn: str) -> Iterator[Fuzz]:
    srv = ServerThread(server_settings(valkey.url, pg_dsn), ManualClock())
    errors = ErrorLog()
    logging.getLogger("quota_service").addHandler(errors)
    channel = grpc.insecure_channel(srv.target)
    try:
        stub = pb_grpc.QuotaServiceStub(channel)
        stub.CreateAccount(pb.CreateAccountRequest(
            account_id=KNOWN, idempotency_key="create", policies=[
                pb.MeterPolicy(meter=METER, overage_price_minor=7, overage_currency="IDR",
                               exhausted_action=pb.HANDOFF_TO_AGENT, alert_pct_left=[50, 10, 0]),
                pb.MeterPolicy(meter="sms")]), timeout=20)
        stub.TopUp(pb.TopUpRequest(account_id=KNOWN, idempotency_key="units", grant=pb.GrantSpec(
            meter=METER, amount=1_000_000, source="plan", overdraft_limit=10)), timeout=20)
        stub.TopUp(pb.TopUpRequest(account_id=KNOWN, idempotency_key="wallet", grant=pb.GrantSpec(
            currency="IDR", amount=1_000_000)), timeout=20)
        holds = [stub.Reserve(pb.ReserveRequest(account_id=KNOWN, meter=METER, amount=1 + i,
                                                idempotency_key=f"hold-{i}", ttl_ms=3_600_000),
                              timeout=20).reservation_id for i in range(5)]
        yield Fuzz(srv, stub, holds, errors, channel)
    finally:
        channel.close()
        logging.getLogger("quota_service").removeHandler(errors)
        srv.close()


# -- strategies ---------------------------------------------------------------------------------

ID_CHARS = "ABCXYZabcxyz0189._:@-"
valid_ids = st.text(alphabet=ID_CHARS, min_size=1, max_size=128)
control_text = st.text(alphabet=st.characters(max_codepoint=0x1F), min_size=1, max_size=20)
long_text = st.builds(lambda chunk, n: (chunk * (2000 // max(len(chunk), 1) + 1))[:n],
                      st.text(min_size=1, max_size=5), st.integers(120, 2000))
odd_text = st.sampled_from(["", " ", "\x00", "a\x00b", "\n", "\u200b", "é", "😀", "\ufeff", "null", "$IDR", "IDR",
                            "'; DROP TABLE ledger; --", "%s", "{}", "a" * 128, "a" * 129, "a" * 255, "a" * 256,
                            "\\u0000", "\u2028", "\uff41", "a|b", "a{b}c", "*"])
junk = st.one_of(st.text(max_size=40), control_text, long_text, odd_text)


def ids(*known: str) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(known), valid_ids, junk) if known else st.one_of(valid_ids, junk)


def int64s(*interesting: int) -> st.SearchStrategy[int]:
    edges = [0, 1, -1, 2, 10**12, 10**12 + 1, 10**13, 10**13 + 1, 10**15, 2**53, 2**53 + 1, 2**31 - 1,
             2**31, -(2**31), *INT64, 86_400_000, 86_400_001, 253_402_300_799_000, 253_402_300_799_001]
    return st.one_of(st.sampled_from(edges + list(interesting)), st.integers(-3, 50), st.integers(*INT64))


int32s = st.one_of(st.sampled_from([0, 1, -1, 100, 101, 1_000_000, 1_000_001, -1_000_000, -1_000_001, *INT32]),
                   st.integers(*INT32))
enum_ints = st.one_of(st.integers(-2, 5), st.integers(*INT32))
meters = st.one_of(st.sampled_from([METER, "sms", "$IDR", "IDR", "unknown_meter"]), junk, valid_ids)
idem_keys = st.one_of(st.sampled_from(["k1", "k2", "k3"]), st.uuids().map(str), junk,
                      st.text(min_size=250, max_size=260))
attributes = st.one_of(
    st.dictionaries(st.one_of(valid_ids, junk), st.one_of(st.text(max_size=30), long_text, odd_text), max_size=40),
    st.dictionaries(st.text(alphabet=ID_CHARS, min_size=1, max_size=64), st.text(max_size=256), max_size=17),
)


@st.composite
def mutated(draw: st.DrawFn, ctor: Callable[..., Any], valid: dict[str, st.SearchStrategy[Any]],
            fuzzed: dict[str, st.SearchStrategy[Any]]) -> Any:
    """A valid request with none, one or a few of its fields replaced by fuzz."""
    values = {name: draw(s, label=name) for name, s in valid.items()}
    for name in draw(st.lists(st.sampled_from(sorted(fuzzed)), max_size=3, unique=True), label="fuzzed fields"):
        values[name] = draw(fuzzed[name], label=f"fuzzed {name}")
    return ctor(**values)


uuid_keys = st.uuids().map(str)
small_attrs = st.dictionaries(st.sampled_from(["room_id", "channel", "bot"]), st.text(max_size=10), max_size=3)


def reserve_requests(fuzz: Fuzz) -> st.SearchStrategy[pb.ReserveRequest]:
    return mutated(
        pb.ReserveRequest,
        dict(account_id=st.just(KNOWN), meter=st.just(METER), amount=st.integers(1, 5), idempotency_key=uuid_keys,
             ttl_ms=st.sampled_from([0, 1, 60_000]), dedup_key=st.just(""), dedup_window_s=st.just(0),
             attributes=small_attrs),
        dict(account_id=ids(KNOWN), meter=meters, amount=int64s(), idempotency_key=idem_keys, ttl_ms=int64s(),
             dedup_key=st.one_of(st.sampled_from(["visitor-1", "visitor-2"]), ids()),
             dedup_window_s=int64s(60), attributes=attributes))


def grant_specs() -> st.SearchStrategy[pb.GrantSpec]:
    return mutated(
        pb.GrantSpec,
        dict(grant_id=st.just(""), meter=st.just(METER), currency=st.just(""), amount=st.integers(1, 100),
             source=st.sampled_from(["", "plan", "topup"]), priority=st.integers(0, 200),
             overdraft_limit=st.integers(0, 5), starts_at_ms=st.just(0), expires_at_ms=st.just(0),
             label=st.text(max_size=10)),
        dict(grant_id=ids(), meter=st.one_of(st.just(""), meters),
             currency=st.one_of(st.sampled_from(["IDR", "USD", "usd", "EURO"]), junk), amount=int64s(),
             source=st.one_of(st.sampled_from(["", "plan", "topup", "overdraft", "adjustment", "bogus"]), junk),
             priority=int32s, overdraft_limit=int64s(), starts_at_ms=int64s(), expires_at_ms=int64s(),
             label=st.one_of(st.text(max_size=30), long_text, odd_text, control_text)))


def policies() -> st.SearchStrategy[pb.MeterPolicy]:
    return mutated(
        pb.MeterPolicy,
        dict(meter=st.sampled_from([METER, "sms", "voice"]), overage_price_minor=st.sampled_from([0, 5]),
             overage_currency=st.just("IDR"), exhausted_action=st.integers(0, 2),
             alert_pct_left=st.lists(st.integers(0, 100), max_size=3)),
        dict(meter=meters, overage_price_minor=int64s(),
             overage_currency=st.one_of(st.sampled_from(["", "IDR", "usd"]), junk),
             exhausted_action=enum_ints, alert_pct_left=st.lists(int32s, max_size=20)))


def requests(kind: str, fuzz: Fuzz) -> st.SearchStrategy[tuple[str, Any]]:
    """(RPC name, request) pairs of one kind."""
    if kind in ("Reserve", "Consume", "Check"):
        return st.tuples(st.just(kind), reserve_requests(fuzz))
    if kind == "Commit":
        return st.tuples(st.just(kind), mutated(
            pb.CommitRequest,
            dict(account_id=st.just(KNOWN), reservation_id=st.sampled_from(fuzz.holds),
                 actual_amount=st.integers(0, 8), idempotency_key=uuid_keys),
            dict(account_id=ids(KNOWN), reservation_id=ids(*fuzz.holds), actual_amount=int64s(),
                 idempotency_key=idem_keys)))
    if kind == "Release":
        return st.tuples(st.just(kind), mutated(
            pb.ReleaseRequest,
            dict(account_id=st.just(KNOWN), reservation_id=st.sampled_from(fuzz.holds), idempotency_key=uuid_keys),
            dict(account_id=ids(KNOWN), reservation_id=ids(*fuzz.holds), idempotency_key=idem_keys)))
    if kind == "TopUp":
        return st.tuples(st.just(kind), mutated(
            pb.TopUpRequest,
            dict(account_id=st.just(KNOWN), grant=grant_specs(), idempotency_key=uuid_keys),
            dict(account_id=ids(KNOWN, "no-such-account"), grant=st.one_of(st.none(), grant_specs()),
                 idempotency_key=idem_keys)))
    if kind == "CreateAccount":
        return st.tuples(st.just(kind), mutated(
            pb.CreateAccountRequest,
            dict(account_id=uuid_keys, org_id=st.just(""), time_zone=st.sampled_from(["", "UTC", "Asia/Jakarta"]),
                 policies=st.lists(policies(), max_size=3, unique_by=lambda p: p.meter), idempotency_key=uuid_keys),
            dict(account_id=ids(KNOWN), org_id=ids(),
                 time_zone=st.one_of(st.sampled_from(["utc", "Mars/Olympus", "Europe/Berlin"]), junk),
                 policies=st.lists(policies(), max_size=30), idempotency_key=idem_keys)))
    if kind == "SetAccountStatus":
        return st.tuples(st.just(kind), mutated(
            pb.SetAccountStatusRequest,
            dict(account_id=st.just("no-such-account"), status=st.integers(1, 3), idempotency_key=uuid_keys),
            dict(account_id=ids(), status=enum_ints, idempotency_key=idem_keys)))
    if kind == "GetBalance":
        return st.tuples(st.just(kind), mutated(
            pb.GetBalanceRequest, dict(account_id=st.just(KNOWN), meter=st.sampled_from(["", METER, "$IDR"])),
            dict(account_id=ids(KNOWN), meter=meters)))
    if kind == "ReserveBatch":
        many = st.builds(lambda item, n: [item] * n, reserve_requests(fuzz), st.sampled_from([1000, 1001, 1500]))
        return st.tuples(st.just(kind), mutated(
            pb.ReserveBatchRequest,
            dict(items=st.lists(reserve_requests(fuzz), min_size=1, max_size=8), mode=st.integers(0, 3)),
            dict(items=st.one_of(st.lists(reserve_requests(fuzz), max_size=12), many), mode=enum_ints)))
    raise AssertionError(kind)


def nul_item(key: str) -> pb.ReserveRequest:
    return pb.ReserveRequest(account_id=KNOWN, meter=METER, amount=1, idempotency_key=key,
                             attributes={"bot": "a\x00b"})


# Found by this fuzzing, kept as explicit examples so every run tries them: a NUL character in
# an attribute value or a grant label passes validation, then Postgres refuses it (INTERNAL).
EXAMPLES: dict[str, list[tuple[str, Any]]] = {
    "Reserve": [("Reserve", nul_item(f"nul-{uuid.uuid4()}"))],
    "Consume": [("Consume", nul_item(f"nul-{uuid.uuid4()}"))],
    "ReserveBatch": [("ReserveBatch", pb.ReserveBatchRequest(items=[nul_item(f"nul-{uuid.uuid4()}")],
                                                             mode=pb.CONSUME))],
    "TopUp": [("TopUp", pb.TopUpRequest(account_id=KNOWN, idempotency_key=f"nul-{uuid.uuid4()}",
                                        grant=pb.GrantSpec(meter=METER, amount=1, label="x\x00y")))],
}

KINDS = ["Reserve", "Consume", "Check", "Commit", "Release", "TopUp", "CreateAccount", "SetAccountStatus",
         "GetBalance", "ReserveBatch"]


def send(fuzz: Fuzz, name: str, request: Any) -> tuple[grpc.StatusCode, str, Any]:
    method: Callable[..., Any] = getattr(fuzz.stub, name)
    try:
        return grpc.StatusCode.OK, "", method(request, timeout=30)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or "", None


@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@pytest.mark.parametrize("kind", KINDS)
def test_fuzz_requests(fuzz: Fuzz, kind: str) -> None:
    """No input makes the service fail, and a refused request writes nothing."""

    @settings(max_examples=20, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(call=requests(kind, fuzz))
    def run(call: tuple[str, Any]) -> None:
        name, request = call
        if name == "SetAccountStatus" and request.account_id == KNOWN:
            return  # keep the known account active
        before = fuzz.counts()
        balance_before = fuzz.balance()
        logged = len(fuzz.errors.records)
        code, details, response = send(fuzz, name, request)
        server_log = "\n".join(fuzz.errors.records[logged:])
        event(f"{name}: {code.name}")
        assert code in ACCEPTABLE, f"{name} answered {code.name}: {details}\nserver log:\n{server_log}"
        if name == "ReserveBatch" and response is not None:
            bad = [r for r in response.results if r.HasField("error") and r.error.code not in ACCEPTABLE_ITEM_CODES]
            assert not bad, f"batch items failed with {bad[:3]}\nserver log:\n{server_log}"
            if all(r.HasField("error") for r in response.results):
                assert fuzz.counts() == before, "a batch whose every item failed wrote rows"
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            assert details, "INVALID_ARGUMENT names the field"
            assert fuzz.counts() == before, f"{name} refused with INVALID_ARGUMENT ({details}) but wrote rows"
            assert fuzz.balance() == balance_before, f"{name} refused ({details}) but the balance changed"

    for call in EXAMPLES.get(kind, []):
        run = example(call=call)(run)
    run()


@pytest.mark.parametrize(("mode", "n"), [(pb.CHECK, 1000), (pb.RESERVE, 150)], ids=["CHECK-1000", "RESERVE-150"])
def test_batch_of_many_valid_items_answers_every_item(fuzz: Fuzz, mode: int, n: int) -> None:
    """Found by the fuzzing above: up to 1000 items are allowed, and with Redis up no item may be
    UNAVAILABLE (it was "redis: Too many connections" past the 100th item)."""
    items = [pb.ReserveRequest(account_id=KNOWN, meter=METER, amount=1, idempotency_key=f"many-{uuid.uuid4()}")
             for _ in range(n)]
    response = fuzz.stub.ReserveBatch(pb.ReserveBatchRequest(items=items, mode=mode), timeout=60)
    assert len(response.results) == n
    errors = Counter((r.error.code, r.error.message) for r in response.results if r.HasField("error"))
    assert not errors, f"items failed: {dict(errors)}"
    assert all(r.decision.status == pb.GRANTED for r in response.results)


# -- byte-level fuzzing: what the wire may carry, not only well-formed messages ------------------

SERVICE = pb.DESCRIPTOR.services_by_name["QuotaService"]
METHODS = sorted(m.name for m in SERVICE.methods)
LONG_LIVED = {"WatchAlerts"}  # a request that decodes may leave the stream open until its deadline


def _with_bad_string(descriptor: Any, bad: bytes) -> bytes:
    """A field of the message (its first string, else one inside its first message field) holding `bad`."""
    for f in descriptor.fields:
        if f.type == f.TYPE_STRING:
            return _tag(f.number, 2) + bytes([len(bad)]) + bad
    inner = next(f for f in descriptor.fields if f.type == f.TYPE_MESSAGE)
    body = _with_bad_string(inner.message_type, bad)
    return _tag(inner.number, 2) + bytes([len(body)]) + body


def _valid_bytes(name: str) -> bytes:
    """A request of the method that decodes, with a few fields set."""
    method = SERVICE.methods_by_name[name]
    message = getattr(pb, method.input_type.name)()
    for f in method.input_type.fields:
        if f.type == f.TYPE_STRING and not f.is_repeated:
            setattr(message, f.name, KNOWN if f.name == "account_id" else "x")
    return bytes(message.SerializeToString())


def _tag(number: int, wire_type: int) -> bytes:
    value, out = (number << 3) | wire_type, bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@st.composite
def wire_bytes(draw: st.DrawFn, name: str) -> bytes:
    """Garbage, truncated messages, invalid UTF-8 in a string field, deeply nested groups."""
    input_type = SERVICE.methods_by_name[name].input_type
    valid = _valid_bytes(name)
    kind = draw(st.sampled_from(["garbage", "truncated", "utf8", "nested", "flipped"]), label="kind")
    if kind == "garbage":
        return draw(st.binary(min_size=1, max_size=300))
    if kind == "truncated":
        return valid[:draw(st.integers(0, max(len(valid) - 1, 0)))] or b"\x0a"
    if kind == "utf8":
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"a\xf0\x28\x8c\xbc", b"\xe2\x82"]))
        return valid + _with_bad_string(input_type, bad)
    if kind == "nested":  # an unknown field holding groups nested deeper than the decoder allows
        depth = draw(st.integers(101, 2000))
        return valid + _tag(999, 3) * depth + _tag(999, 4) * depth
    data = bytearray(valid or b"\x08\x01")
    data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    return bytes(data)


def send_raw(fuzz: Fuzz, name: str, data: bytes) -> tuple[grpc.StatusCode, str]:
    """The bytes as the request of `name`, over a raw channel with identity serializers."""
    method = SERVICE.methods_by_name[name]
    path = f"/{SERVICE.full_name}/{name}"
    channel = fuzz.channel
    timeout = 3 if name in LONG_LIVED else 30
    try:
        if method.client_streaming:
            for _ in channel.stream_stream(path)(iter([data]), timeout=timeout):
                pass
        elif method.server_streaming:
            for _ in channel.unary_stream(path)(data, timeout=timeout):
                pass
        else:
            channel.unary_unary(path)(data, timeout=timeout)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def decodes(name: str, data: bytes) -> bool:
    try:
        getattr(pb, SERVICE.methods_by_name[name].input_type.name).FromString(data)
    except Exception:
        return False
    return True


@pytest.mark.parametrize("name", METHODS)
def test_n5_malformed_bytes_are_invalid_argument(fuzz: Fuzz, name: str) -> None:
    """Bytes that are not a valid request message are INVALID_ARGUMENT naming the request, never
    UNKNOWN ("Unexpected DecodeError"), and write nothing; bytes that decode get a proper status."""

    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(data=wire_bytes(name))
    def run(data: bytes) -> None:
        before = fuzz.counts()
        code, details = send_raw(fuzz, name, data)
        event(f"{name}: {code.name}")
        if not decodes(name, data):
            assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{name} answered {code.name}: {details}"
            assert details.startswith("request:"), details
            assert fuzz.counts() == before, f"{name}: malformed bytes wrote rows"
        else:
            allowed = ACCEPTABLE | ({grpc.StatusCode.DEADLINE_EXCEEDED} if name in LONG_LIVED else set())
            assert code in allowed, f"{name} answered {code.name}: {details}"

    for data in (b"\xff", b"\x0a\x05ab", b"\x0a\x02\xff\xfe", _tag(999, 3) * 200 + _tag(999, 4) * 200):
        run = example(data=data)(run)
    run()


def test_n5_malformed_item_in_a_stream_ends_it_with_invalid_argument(fuzz: Fuzz) -> None:
    """A ReserveStream whose second message is not a valid message: the first is answered, then the
    stream ends with INVALID_ARGUMENT on `request` (it ended with OK, the bad message unanswered)."""
    good = pb.StreamReserveRequest(item=pb.ReserveRequest(account_id=KNOWN, meter=METER, amount=1,
                                                          idempotency_key=f"s-{uuid.uuid4()}"),
                                   mode=pb.CHECK, tag=7).SerializeToString()
    call = fuzz.channel.stream_stream(f"/{SERVICE.full_name}/ReserveStream")(iter([good, b"\x0a\x05ab"]), timeout=30)
    answers = []
    with pytest.raises(grpc.RpcError) as err:
        for raw in call:
            answers.append(pb.ItemResult.FromString(raw))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("request:")
    assert [a.tag for a in answers] in ([7], [])  # the good one may or may not be answered before the end


@pytest.mark.parametrize("name", ["Check", "Watch"])
def test_n5_malformed_bytes_to_the_health_service_are_invalid_argument(fuzz: Fuzz, name: str) -> None:
    """The health service (probes) decodes through the same tolerant decoder: never UNKNOWN."""
    path = "/grpc.health.v1.Health/" + name
    for data in (b"\xff", b"\x0a\x05ab", b"\x0a\x02\xff\xfe", _tag(999, 3) * 200 + _tag(999, 4) * 200):
        with pytest.raises(grpc.RpcError) as err:
            if name == "Check":
                fuzz.channel.unary_unary(path)(data, timeout=10)
            else:
                for _ in fuzz.channel.unary_stream(path)(data, timeout=10):
                    pass
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (data, err.value.details())
        assert (err.value.details() or "").startswith("request:")
