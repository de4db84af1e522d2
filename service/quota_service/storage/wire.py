"""The JSON formats between the service, its Lua scripts and the ledger, typed, and their codecs.

Every key of these formats, with its meaning and unit, is listed in ``storage/lua/README.md``. The
keys are short because Redis keeps them in every grant and hold and the scripts encode them on every
call. Decoding happens here, once, when a script answers: the hot path reads typed values only.

Formats fixed by Postgres (the ledger entry that ``quota_apply`` reads, a decision's JSON stored as
``operations.response`` and read by the alert trigger, a policy stored in ``accounts.policies``, a
hold's rows) keep their keys; those that live only between the service and Redis name each thing
once (an error is ``err``, a request fingerprint ``fp``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict, cast

from quota_service.domain.model import (
    ACTIONS,
    DENIED,
    GRANTED,
    Alert,
    Decision,
    GrantState,
    MeterPolicy,
    Part,
    PriceTablePolicy,
    PriceTableVersion,
)
from quota_service.storage.keys import Keys

# -- grants and holds in Redis (and in the snapshot that loads them) -------------------------------


class GrantJSON(TypedDict):
    """A grant in the account's grants hash; amounts in units (minor units for a wallet)."""

    b: str  # bucket: a meter, or "$<currency>" for a wallet
    p: int  # priority, lower first
    s: int  # starts_ms
    e: int  # expires_ms, 0 = never
    o: int  # creation order
    gr: int  # granted
    u: int  # used
    h: int  # held
    od: int  # overdraft limit
    src: NotRequired[str]  # source (plan, topup ...)
    lb: NotRequired[str]  # label


class PartJSON(TypedDict):
    """Units taken from one grant by a reservation."""

    g: str  # grant id
    b: str  # the grant's bucket
    a: int  # units (minor units from a wallet)


class DeltaJSON(TypedDict):
    """A commit's or release's change to one grant."""

    g: str
    b: str
    du: int  # used, units
    dh: int  # held, units


class HoldJSON(TypedDict):
    """A hold in the account's holds hash (the snapshot's holds name the dedup key ``dk`` instead)."""

    m: str  # meter
    amt: int  # units held
    rows: list[PartJSON]
    ou: int  # overage units
    pr: int  # price, minor units per overage unit
    exp: int  # expires_ms
    ddk: NotRequired[str | None]  # the dedup mark's key name it set
    dde: NotRequired[int | None]  # that mark's window end ms
    dk: NotRequired[str | None]  # (snapshot) the business dedup key, made a key name before loading


class SnapshotJSON(TypedDict):
    """An account's state read from Postgres, as load.lua installs it."""

    st: str  # account status
    pol: dict[str, PolicyJSON]  # meter -> policy
    k: list[str]  # every bucket the account knows
    g: dict[str, GrantJSON]
    h: dict[str, HoldJSON]
    d: list[list[Any]]  # dedup marks: [meter, business key, window_end_ms], then [key name, window_end_ms, ttl_ms]
    ce: int  # the current cycle's end ms, 0 = no subscription
    lost: NotRequired[int]  # ms the state was found missing (absent when it was only refreshed)


# -- policies (accounts.policies, and the meta hash's pol:<meter>) ----------------------------------


class PriceTableJSON(TypedDict):
    """A price table as the scripts read it (QC10; see price_category in _reserve.lua)."""

    v: list[list[Any]]  # versions: [start ms, {category: charging rule}, {country: {category: price}}]
    ca: str  # the request attribute naming the category ("" = cf)
    cf: str  # the one fixed category
    co: str  # the table's one country ("" = from the request)
    cu: str  # currency
    sw: str  # the meter whose dedup window is the customer-service window
    g: NotRequired[list[Any]]  # group messages: [most members, the category they are priced as]


class PolicyJSON(TypedDict):
    """A meter's policy as the scripts read it (see MeterPolicy for the meaning of each part)."""

    p: int  # overage price, minor units per unit (0: no overage)
    c: str  # overage currency
    x: int  # index in ACTIONS of the action when the meter runs out
    al: list[int]  # alert thresholds, percent left
    f: NotRequired[dict[str, str]]  # feature -> charge mode
    dr: NotRequired[str]  # denial reason when the meter runs out
    u: NotRequired[dict[str, Any]]  # unique meter: {w window kind, a attribute names}
    xf: NotRequired[dict[str, int]]  # feature -> action index
    cap: NotRequired[int]  # 1: a capacity meter
    sl: NotRequired[int]  # a duration meter's slice, seconds
    anm: NotRequired[dict[str, str]]  # threshold (percent left) -> the catalogue's alert name (alert events)
    pt: NotRequired[PriceTableJSON]  # price table (see _reserve.lua, price_category)
    an: NotRequired[dict[str, list[str]]]  # percent left -> delivery channels


def price_table_json(t: PriceTablePolicy) -> PriceTableJSON:
    out: PriceTableJSON = {
        "v": [[v.starts_ms, dict(v.charging), {c: dict(p) for c, p in v.prices_minor.items()}] for v in t.versions],
        "ca": t.category_attribute, "cf": t.category, "co": t.country, "cu": t.currency,
        "sw": t.service_window_meter}
    if t.group_messages is not None:  # (no null in the JSON: the scripts' cjson null is truthy)
        out["g"] = [t.group_messages[0], t.group_messages[1]]
    return out


def price_table_of(raw: PriceTableJSON) -> PriceTablePolicy:
    g = raw.get("g")
    return PriceTablePolicy(
        tuple(PriceTableVersion(int(start), dict(charging), {c: dict(p) for c, p in prices.items()})
              for start, charging, prices in raw["v"]),
        raw.get("ca", ""), raw.get("cf", ""), raw.get("co", ""), raw.get("cu", ""), raw.get("sw", ""),
        (int(g[0]), str(g[1])) if g else None)


def policy_json(p: MeterPolicy) -> PolicyJSON:
    """A policy as accounts.policies and the scripts hold it."""
    out: PolicyJSON = {"p": p.overage_price_minor, "c": p.overage_currency, "x": ACTIONS.index(p.exhausted_action),
                       "al": list(p.alert_pct_left)}
    if p.features is not None:
        out["f"] = dict(p.features)
    if p.denial_reason:
        out["dr"] = p.denial_reason
    if p.unique is not None:
        out["u"] = {"w": p.unique[0], "a": list(p.unique[1])}
    if p.action_by_feature:
        out["xf"] = {f: ACTIONS.index(a) for f, a in p.action_by_feature}
    if p.capacity:
        out["cap"] = 1
    if p.slice_s:
        out["sl"] = p.slice_s
    if p.price_table is not None:
        out["pt"] = price_table_json(p.price_table)
    if p.alert_notify:
        out["an"] = {str(pct): list(channels) for pct, channels in p.alert_notify}
    if p.alert_names:
        out["anm"] = {str(pct): name for pct, name in p.alert_names}
    return out


def policy_from_json(meter: str, raw: Mapping[str, Any]) -> MeterPolicy:
    """A stored policy (accounts.policies) as the domain's MeterPolicy."""
    features = None if raw.get("f") is None else tuple(sorted(raw["f"].items()))
    unique = None if raw.get("u") is None else (raw["u"]["w"], tuple(raw["u"]["a"]))
    by_feature = tuple(sorted((f, ACTIONS[int(a)]) for f, a in (raw.get("xf") or {}).items()))
    return MeterPolicy(
        meter, int(raw["p"]), raw["c"], ACTIONS[int(raw["x"])], tuple(int(a) for a in raw["al"]), features,
        raw.get("dr", ""), unique, by_feature, bool(raw.get("cap")), int(raw.get("sl", 0)),
        price_table_of(raw["pt"]) if raw.get("pt") else None,
        tuple((int(p), tuple(c)) for p, c in sorted((raw.get("an") or {}).items(), key=lambda kv: int(kv[0]))),
        tuple(sorted((int(p), str(n)) for p, n in (raw.get("anm") or {}).items())))


def policies_from_json(raw: Mapping[str, Any] | None) -> dict[str, MeterPolicy]:
    """An account's stored policies (accounts.policies: meter -> policy JSON), by meter."""
    return {m: policy_from_json(m, p) for m, p in sorted((raw or {}).items())}


def policies_json(policies: Mapping[str, MeterPolicy]) -> dict[str, PolicyJSON]:
    return {m: policy_json(p) for m, p in policies.items()}


# -- script answers -------------------------------------------------------------------------------


class AlertJSON(TypedDict):
    m: str  # meter
    t: int  # threshold crossed, percent left


class DecisionJSON(TypedDict):
    """A decision of reserve.lua, reserve_many.lua or resolve.lua; stored as the ledger's answer."""

    st: str  # 'G' granted or 'D' denied
    rs: str  # denial reason
    ac: int  # index in ACTIONS
    amt: int  # units charged or held (0 when denied or free)
    dd: bool  # dedup hit
    ov: int  # overage, minor units
    oc: str  # overage currency (a denial for want of money names it)
    al: list[AlertJSON] | dict[str, Any]  # cjson writes an empty list as {}
    rows: list[Any] | dict[str, Any]  # PartJSON (reserve) or DeltaJSON (commit, release)
    ep: int  # the account's epoch
    hid: str  # hold id
    exp: int  # hold expires_ms
    rem: int  # units left
    pct: float  # percent left
    sq: NotRequired[int]  # mutation sequence: present when Redis changed (to be made durable)
    chk: NotRequired[bool]  # ask the ledger: Redis may have lost this key's recorded answer
    cd: NotRequired[bool]  # denied after the cycle end, before the roll-over
    dk: NotRequired[str]  # the business dedup key a unique meter or price table made
    dde: NotRequired[int]  # the dedup mark's window end ms
    ou: NotRequired[int]  # overage units
    pr: NotRequired[int]  # overage price, minor units per unit
    m: NotRequired[str]  # (commit, release) the hold's meter
    lf: NotRequired[list[AlertJSON] | dict[str, Any]]  # (commit, release) thresholds lifted back above


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer of a reservation or resolve script, decoded: exactly one of decision, replay and
    error is set."""

    decision: DecisionJSON | None = None  # decided now
    replay: DecisionJSON | None = None  # the answer stored under the idempotency key
    error: str = ""  # NOT_LOADED, RELOAD, IN_PROGRESS, IDEM_MISMATCH, UNKNOWN_METER, CAPACITY, ...
    first_fp: str = ""  # IDEM_MISMATCH or a replay from the ledger: the key's first request fingerprint
    attr: str = ""  # MISSING_ATTRIBUTE: the attribute
    max_members: int = 0  # BAD_GROUP: the most members a group message may name (0: none allowed)
    price_key: str = ""  # UNKNOWN_PRICE: "country/category"
    avail: int = 0  # OVER: units a commit could take beyond its hold

    @property
    def changed(self) -> bool:
        """A fresh decision that changed Redis: it must be made durable in the ledger."""
        return self.decision is not None and "sq" in self.decision


def decode_answer(raw: dict[str, Any]) -> Answer:
    """A script's answer object ({err}, {rp} or a decision) as an Answer."""
    if "err" in raw:
        return Answer(error=raw["err"], first_fp=raw.get("fp", ""), attr=raw.get("attr", ""),
                      max_members=int(raw.get("gmax", 0)), price_key=raw.get("cat", ""),
                      avail=int(raw.get("avail", 0)))
    if "rp" in raw:
        return Answer(replay=json.loads(raw["rp"]))
    return Answer(decision=cast(DecisionJSON, raw))


def answer_from_text(text: str) -> Answer:
    return decode_answer(json.loads(text))


def answers_from_text(text: str) -> list[Answer] | Answer:
    """reserve_many.lua's reply: one answer per item, or one error for the whole account."""
    raw = json.loads(text)
    if isinstance(raw, list):
        return [decode_answer(a) for a in raw]
    return decode_answer(raw)


def replay_of(response: str, first_fp: str) -> Answer:
    """The ledger's stored answer to a key (operations.response), as a replay."""
    return Answer(replay=json.loads(response), first_fp=first_fp)


def _items(value: Any) -> list[Any]:
    # Lua's cjson encodes an empty table as an object.
    return value if isinstance(value, list) else []


def decision_of(raw: DecisionJSON, *, replayed: bool = False) -> Decision:
    """A script's decision (fresh or stored) as the domain's Decision."""
    parts: list[Part] = []
    for r in _items(raw.get("rows")):
        # reserve rows carry "a"; resolve rows carry used/held deltas and report what was used
        amount = int(r["a"]) if "a" in r else int(r.get("du", 0))
        if amount:
            parts.append(Part(r["g"], r["b"], amount))
    return Decision(
        status=GRANTED if raw["st"] == "G" else DENIED,
        reason=raw.get("rs") or "",
        action=ACTIONS[int(raw.get("ac") or 0)],
        reservation_id=raw.get("hid") or "",
        amount=int(raw.get("amt") or 0),
        remaining=int(raw.get("rem") or 0),
        remaining_pct=float(raw.get("pct") or 0.0),
        dedup_hit=bool(raw.get("dd")),
        overage_minor=int(raw.get("ov") or 0),
        overage_currency=raw.get("oc") or "",
        alerts=tuple(Alert(a["m"], int(a["t"])) for a in _items(raw.get("al"))),
        lifted=tuple(Alert(a["m"], int(a["t"])) for a in _items(raw.get("lf"))),
        parts=tuple(parts),
        expires_at_ms=int(raw.get("exp") or 0),
        replayed=replayed,
        cycle_due=bool(raw.get("cd")),
    )


# -- balance.lua ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BalanceAnswer:
    """balance.lua's answer: an error (NOT_LOADED, RELOAD), or the account's status, grants and buckets."""

    error: str = ""
    status: str = ""
    grants: tuple[GrantState, ...] = ()
    buckets: tuple[str, ...] = ()  # every meter and wallet the account knows
    alert_thresholds: dict[str, tuple[int, ...]] = field(default_factory=dict)  # meter -> percent left


def grant_state(grant_id: str, g: GrantJSON) -> GrantState:
    return GrantState(grant_id, g["b"], g.get("src", ""), g["p"], g["gr"], g["u"], g["h"], g["od"],
                      g["s"], g["e"], g.get("lb", ""))


def balance_from_text(text: str) -> BalanceAnswer:
    raw = json.loads(text)
    if "err" in raw:
        return BalanceAnswer(error=raw["err"])
    grants: dict[str, GrantJSON] = raw["g"] or {}
    # cjson writes an empty table as {}: a missing or empty k is no buckets
    alerts: dict[str, list[int]] = raw.get("al") or {}
    return BalanceAnswer(status=raw["st"], grants=tuple(grant_state(gid, g) for gid, g in grants.items()),
                         buckets=tuple(_items(raw.get("k"))),
                         alert_thresholds={m: tuple(int(t) for t in al) for m, al in alerts.items()})


# -- the ledger entry (read by quota_apply in Postgres) -------------------------------------------


class HoldEntry(TypedDict):
    id: str
    exp: int  # expires_ms
    ou: int  # overage units
    pr: int  # price, minor units per overage unit
    rows: list[PartJSON]


class DedupEntry(TypedDict):
    k: str  # the business dedup key
    end: int  # window end ms


class LedgerEntry(TypedDict):
    """One mutation for the ledger, built by domain.entries.entry from a decision."""

    a: str  # account id
    k: str  # idempotency key
    op: str  # reserve, consume, commit or release
    h: str  # request fingerprint
    r: str  # the decision's JSON, stored as the key's answer
    ep: int  # epoch the decision was made under
    sq: int  # its sequence in that epoch
    t: int  # decided at, ms
    m: str  # meter
    amt: int  # units
    rows: list[DeltaJSON]
    attrs: dict[str, str] | None
    hold: NotRequired[HoldEntry]  # reserve
    close: NotRequired[str]  # commit, release: the hold id
    dd: NotRequired[DedupEntry]  # the dedup mark it set


def ledger_entry(raw: dict[str, Any]) -> LedgerEntry:
    """domain.entries.entry's dict, typed (the keys are those quota_apply reads)."""
    return cast(LedgerEntry, raw)


def snapshot_for_redis(raw: dict[str, Any], keys: Keys, account_id: str, now_ms: int, *, lost: bool) -> SnapshotJSON:
    """The ledger's snapshot (PostgresLedger.snapshot) as load.lua takes it, changed in place: dedup
    keys become key names (a mark's TTL at least 1 ms), and `lost` is stamped when Redis had no state."""
    snap = cast(SnapshotJSON, raw)
    for h in snap["h"].values():
        dk = h.pop("dk", None)
        if dk:
            h["ddk"] = keys.dedup(account_id, h["m"], dk)
    snap["d"] = [[keys.dedup(account_id, m, k), end, max(end - now_ms, 1)] for m, k, end in snap["d"]]
    if lost:
        snap["lost"] = now_ms
    return snap
