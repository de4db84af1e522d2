"""Load plan catalogues from YAML, validate them, and swap a directory of them atomically (A2).

A file is checked in two passes. The first checks the shape of every entry (keys, types, ranges,
allowed values) and keeps going after a broken entry, so one run reports every broken entry; the
second checks references between entries (a grant's meter exists, a plan's feature is declared, a
pack's plans exist, ...). A reference to an entry that is itself broken is not reported again.

Every problem names the file, the path inside it (``plans.boost.grants[0].amount``), the line
when known, and the reason. The format is documented in docs/CATALOGUE.md.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml  # type: ignore[import-untyped]

from quota_service.catalogue.errors import CatalogueError, Problem
from quota_service.catalogue.model import (
    ACTIONS,
    ALERT_WHEN,
    CHARGE_MODES,
    CHARGING_RULES,
    CYCLE_END,
    DEDUP_WINDOWS,
    FORMAT,
    INTERVALS,
    METER_KINDS,
    NOTIFY,
    ONCE_PER,
    PLAN_KINDS,
    PRICE_CATEGORIES,
    RECURRENCE,
    REPORT_KINDS,
    SOURCES,
    TRIAL_DENIALS,
    AlertRule,
    AutoTopUp,
    Catalogue,
    Dedup,
    Feature,
    Grant,
    GroupMessages,
    Meter,
    MeterPolicySpec,
    OneTimeGrant,
    Overage,
    Pack,
    Plan,
    PriceTable,
    PriceVersion,
    Report,
    Settlement,
    TopUp,
    Trial,
    Wallet,
)
from quota_service.domain.validation import MAX_GRANT, MAX_PRICE_MINOR

MAX_FILE_BYTES = 1 << 20
MAX_AMOUNT = MAX_GRANT  # units or minor units of one grant, pack or top-up: 1e13, as the service allows
MAX_PRIORITY = 1_000_000
MAX_VERSION = 2**53 - 1  # exact in JSON everywhere
MAX_CYCLES = 120
MAX_DAYS = 3_660

_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_ATTRIBUTE = re.compile(r"[A-Za-z0-9._:@-]{1,64}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_COUNTRY = re.compile(r"[A-Z]{2}")

T = TypeVar("T")


class _Invalid(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _fail(path: str, reason: str) -> NoReturn:
    raise _Invalid(path, reason)


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def _parent(path: str) -> str:
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


def _what(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {value!r}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, dt.date):
        return f"the date {value.isoformat()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _hint(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---------------------------------------------------------------------------------------------
# YAML with line numbers, duplicate keys refused
# ---------------------------------------------------------------------------------------------


class _YamlProblem(Exception):
    def __init__(self, path: str, line: int | None, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.line = line
        self.reason = reason


def _parse_yaml(text: str) -> tuple[Any, dict[str, int]]:
    """The document's data and the 1-based line of every path in it.

    PyYAML keeps the last of duplicate keys silently; here a duplicate is an error, as are aliases
    (each entry is written out, so a diff shows every change and nothing expands unboundedly) and
    keys that YAML reads as something other than a string (``no:``, ``2024:``).
    """
    lines: dict[str, int] = {}
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            raise _YamlProblem("", mark.line + 1 if mark else None, f"is not valid YAML: {exc.problem or exc.context}") from None
        except yaml.YAMLError as exc:
            raise _YamlProblem("", None, f"is not valid YAML: {exc}") from None
        if root is None:
            return None, lines
        seen: set[int] = set()

        def convert(node: Any, path: str) -> Any:
            if id(node) in seen:
                _fail(path, "anchors and aliases (&name, *name) are not supported: write the entry out")
            seen.add(id(node))
            lines.setdefault(path, node.start_mark.line + 1)
            if isinstance(node, yaml.MappingNode):
                out: dict[str, Any] = {}
                for key_node, value_node in node.value:
                    shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                    child = _join(path, shown)
                    lines.setdefault(child, key_node.start_mark.line + 1)
                    if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                        _fail(child, f"keys must be plain strings (quote {shown!r} if it is meant as one)")
                    if shown in out:
                        lines[child] = key_node.start_mark.line + 1
                        _fail(child, "duplicate key")
                    out[shown] = convert(value_node, child)
                return out
            if isinstance(node, yaml.SequenceNode):
                return [convert(item, _index(path, i)) for i, item in enumerate(node.value)]
            try:
                return loader.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                _fail(path, f"cannot read this value: {getattr(exc, 'problem', None) or exc}")

        try:
            return convert(root, ""), lines
        except _Invalid as exc:
            raise _YamlProblem(exc.path, lines.get(exc.path), exc.reason) from None
    finally:
        loader.dispose()


# ---------------------------------------------------------------------------------------------
# Field checks: each returns the value or raises _Invalid(path, reason)
# ---------------------------------------------------------------------------------------------


def _mapping(value: Any, path: str, required: Iterable[str] = (), optional: Iterable[str] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(path, f"must be a mapping, not {_what(value)}")
    required = tuple(required)
    allowed = set(required) | set(optional)
    for key in value:
        if key not in allowed:
            _fail(_join(path, key), f"unknown key{_hint(key, allowed)}; allowed here: {', '.join(sorted(allowed))}")
    for key in required:
        if key not in value:
            _fail(_join(path, key), "is required")
    return value


def _entries(value: Any, path: str) -> dict[str, Any]:
    """A mapping whose keys are names chosen by the author (checked by the caller)."""
    if not isinstance(value, dict):
        _fail(path, f"must be a mapping, not {_what(value)}")
    return value


def _list(value: Any, path: str, *, min_len: int = 0) -> list[Any]:
    if not isinstance(value, list):
        _fail(path, f"must be a list, not {_what(value)}")
    if len(value) < min_len:
        _fail(path, f"must have at least {min_len} item{'s' if min_len > 1 else ''}")
    return value


def _int(value: Any, path: str, *, lo: int = 0, hi: int = MAX_AMOUNT, money: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if money and isinstance(value, float):
            _fail(path, f"must be an integer number of minor units (30 for 30 cents), not {_what(value)}: money is never a float")
        _fail(path, f"must be an integer, not {_what(value)}")
    if value < lo:
        _fail(path, "must not be negative" if lo == 0 else f"must be at least {lo}")
    if value > hi:
        _fail(path, f"must be at most {hi:_}")
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        _fail(path, f"must be true or false, not {_what(value)}")
    return value


def _text(value: Any, path: str, *, max_len: int = 500) -> str:
    if not isinstance(value, str):
        _fail(path, f"must be a string, not {_what(value)}")
    if len(value) > max_len:
        _fail(path, f"is longer than {max_len} characters")
    return value


def _name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        _fail(path, f"must be a name of 1-64 lower-case letters, digits and _ starting with a letter, not {_what(value)}")
    return value


def _attribute(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _ATTRIBUTE.fullmatch(value):
        _fail(path, f"must be a request attribute name (1-64 of A-Z a-z 0-9 . _ : @ -), not {_what(value)}")
    return value


def _currency(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        _fail(path, f"must be a three-letter ISO 4217 currency code such as USD or IDR, not {_what(value)}")
    return value


def _choice(value: Any, path: str, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        hint = _hint(value, allowed) if isinstance(value, str) else ""
        _fail(path, f"must be one of {', '.join(allowed)}, not {_what(value)}{hint}")
    return value


def _date(value: Any, path: str) -> dt.date:
    if isinstance(value, dt.datetime):
        _fail(path, "must be a date (YYYY-MM-DD) without a time: it takes effect at 00:00 in the table's time zone")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    _fail(path, f"must be a date (YYYY-MM-DD), not {_what(value)}")


def _unique(items: list[Any], path: str, check: Callable[[Any, str], T]) -> tuple[T, ...]:
    out: list[T] = []
    for i, item in enumerate(items):
        value = check(item, _index(path, i))
        if value in out:
            _fail(_index(path, i), f"{value!r} is listed twice")
        out.append(value)
    return tuple(out)


def _frozen(d: Mapping[str, T]) -> Mapping[str, T]:
    return MappingProxyType(dict(d))


def _per_interval(value: Any, path: str, intervals: tuple[str, ...], *, lo: int, hi: int, money: bool) -> Mapping[str, int]:
    """One integer for every interval, or a mapping interval -> integer covering exactly ``intervals``."""
    if not isinstance(value, dict):
        n = _int(value, path, lo=lo, hi=hi, money=money)
        return _frozen({iv: n for iv in intervals})
    out: dict[str, int] = {}
    for key, item in value.items():
        if key not in intervals:
            if key in INTERVALS:
                _fail(_join(path, key), f"is not an interval here (intervals: {', '.join(intervals)})")
            _fail(_join(path, key), f"unknown billing interval{_hint(key, INTERVALS)}; allowed: {', '.join(INTERVALS)}")
        out[key] = _int(item, _join(path, key), lo=lo, hi=hi, money=money)
    for iv in intervals:
        if iv not in out:
            _fail(_join(path, iv), f"is required: one value for each interval ({', '.join(intervals)})")
    return _frozen({iv: out[iv] for iv in intervals})


# ---------------------------------------------------------------------------------------------
# The file parser
# ---------------------------------------------------------------------------------------------

TOP_REQUIRED = ("format", "product", "version", "title", "meters", "plans")
TOP_OPTIONAL = ("description", "features", "packs", "wallets", "price_tables", "reports")
SECTIONS = ("meters", "features", "wallets", "price_tables", "plans", "packs", "reports")


class _Parser:
    def __init__(self, file: str, lines: dict[str, int]) -> None:
        self.file = file
        self.lines = lines
        self.problems: list[Problem] = []
        self.objects: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
        self.broken: dict[str, set[str]] = {s: set() for s in SECTIONS}
        self.section_broken: set[str] = set()

    # -- bookkeeping ----------------------------------------------------------------------------

    def problem(self, path: str, reason: str) -> None:
        probe = path
        while probe and probe not in self.lines:
            probe = _parent(probe)
        self.problems.append(Problem(self.file, path, reason, self.lines.get(probe)))

    def attempt(self, fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except _Invalid as exc:
            self.problem(exc.path, exc.reason)
            return None

    def ref(self, section: str, name: str, path: str, what: str) -> Any:
        """The entry ``name`` of ``section``, or None (reported unless that entry is itself broken)."""
        if name in self.objects[section]:
            return self.objects[section][name]
        if section not in self.section_broken and name not in self.broken[section]:
            self.problem(path, f"unknown {what} {name!r}{_hint(name, self.objects[section])}")
        return None

    # -- entry point ----------------------------------------------------------------------------

    def parse(self, data: Any, content_hash: str) -> Catalogue | None:
        if data is None:
            self.problem("", "the file is empty")
            return None
        if not isinstance(data, dict):
            self.problem("", f"must be a mapping of the catalogue's keys, not {_what(data)}")
            return None
        allowed = set(TOP_REQUIRED) | set(TOP_OPTIONAL)
        for key in data:
            if key not in allowed:
                self.problem(key, f"unknown key{_hint(key, allowed)}; allowed here: {', '.join(sorted(allowed))}")
        for key in TOP_REQUIRED:
            if key not in data:
                self.problem(key, "is required")
                if key in SECTIONS:
                    self.section_broken.add(key)  # not "unknown meter" at every reference as well
        fmt = self.attempt(lambda: self.format(data["format"])) if "format" in data else None
        product = self.attempt(lambda: _name(data["product"], "product")) if "product" in data else None
        version = self.attempt(lambda: _int(data["version"], "version", lo=1, hi=MAX_VERSION)) if "version" in data else None
        title = self.attempt(lambda: _text(data["title"], "title", max_len=200)) if "title" in data else None
        if "description" in data:
            self.attempt(lambda: _text(data["description"], "description", max_len=4000))

        parsers: dict[str, Callable[[str, Any, str], Any]] = {
            "meters": self.meter, "features": self.feature, "wallets": self.wallet,
            "price_tables": self.price_table, "plans": self.plan, "packs": self.pack, "reports": self.report,
        }
        for section in SECTIONS:
            self.section(section, data.get(section, {}), parsers[section])
        self.check_references()

        if self.problems or fmt is None or product is None or version is None or title is None:
            return None
        o = self.objects
        return Catalogue(
            product=product, version=version, title=title, file=self.file, content_hash=content_hash,
            meters=_frozen(o["meters"]), features=_frozen(o["features"]), plans=_frozen(o["plans"]),
            packs=_frozen(o["packs"]), wallets=_frozen(o["wallets"]), price_tables=_frozen(o["price_tables"]),
            reports=_frozen(o["reports"]),
        )

    @staticmethod
    def format(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value != FORMAT:
            _fail("format", f"must be {FORMAT}, the only catalogue format this service reads, not {_what(value)}")
        return FORMAT

    def section(self, section: str, raw: Any, parse: Callable[[str, Any, str], Any]) -> None:
        if not isinstance(raw, dict):
            self.problem(section, f"must be a mapping of name to entry, not {_what(raw)}")
            self.section_broken.add(section)
            return
        for name, entry in raw.items():
            path = _join(section, name)
            try:
                if section == "wallets":
                    _currency(name, path)
                else:
                    _name(name, path)
                self.objects[section][name] = parse(name, entry, path)
            except _Invalid as exc:
                self.problem(exc.path, exc.reason)
                self.broken[section].add(name)

    # -- meters and features --------------------------------------------------------------------

    def meter(self, name: str, raw: Any, path: str) -> Meter:
        base = ("kind", "unit", "description")
        m = _mapping(raw, path, ("kind", "unit"), ("description", "dedup", "slice_s", "roles"))
        kind = _choice(m["kind"], _join(path, "kind"), METER_KINDS)
        extra = {"unique": ("dedup",), "duration": ("slice_s",), "capacity": ("roles",), "count": ()}[kind]
        for key in m:
            if key not in base and key not in extra:
                _fail(_join(path, key), f"is not used by a {kind} meter")
        unit = _text(m["unit"], _join(path, "unit"), max_len=64)
        description = _text(m.get("description", ""), _join(path, "description"), max_len=2000)
        if kind == "unique":
            if "dedup" not in m:
                _fail(_join(path, "dedup"), "is required for a unique meter: the window and the attributes of the key")
            dp = _join(path, "dedup")
            d = _mapping(m["dedup"], dp, ("window", "key_attributes"))
            window = _choice(d["window"], _join(dp, "window"), DEDUP_WINDOWS)
            keys = _unique(_list(d["key_attributes"], _join(dp, "key_attributes"), min_len=1), _join(dp, "key_attributes"),
                           _attribute)
            return Meter(name, kind, unit, description, dedup=Dedup(window, keys))
        if kind == "duration":
            if "slice_s" not in m:
                _fail(_join(path, "slice_s"), "is required for a duration meter: the length of one unit in seconds")
            slice_s = _int(m["slice_s"], _join(path, "slice_s"), lo=1, hi=86_400)
            return Meter(name, kind, unit, description, slice_s=slice_s)
        if kind == "capacity":
            roles = _unique(_list(m.get("roles", []), _join(path, "roles")), _join(path, "roles"), _name)
            return Meter(name, kind, unit, description, roles=roles)
        return Meter(name, kind, unit, description)

    def feature(self, name: str, raw: Any, path: str) -> Feature:
        f = _mapping(raw, path, (), ("meter", "description"))
        meter = _name(f["meter"], _join(path, "meter")) if "meter" in f else None
        return Feature(name, meter, _text(f.get("description", ""), _join(path, "description"), max_len=2000))

    # -- wallets and price tables ---------------------------------------------------------------

    def wallet(self, currency: str, raw: Any, path: str) -> Wallet:
        w = _mapping(raw, path, ("title", "exponent", "carry_over"), ("top_ups", "auto_top_up", "settlement"))
        title = _text(w["title"], _join(path, "title"), max_len=200)
        exponent = _int(w["exponent"], _join(path, "exponent"), hi=4)
        carry_over = _bool(w["carry_over"], _join(path, "carry_over"))
        top_ups: dict[str, TopUp] = {}
        tp = _join(path, "top_ups")
        for tid, traw in _entries(w.get("top_ups", {}), tp).items():
            p = _join(tp, tid)
            _name(tid, p)
            t = _mapping(traw, p, ("self_service", "min_amount_minor", "max_amount_minor", "priority"),
                         ("overdraft_limit_minor", "label"))
            lo = _int(t["min_amount_minor"], _join(p, "min_amount_minor"), lo=1, money=True)
            hi = _int(t["max_amount_minor"], _join(p, "max_amount_minor"), lo=1, money=True)
            if hi < lo:
                _fail(_join(p, "max_amount_minor"), f"must be at least min_amount_minor ({lo})")
            top_ups[tid] = TopUp(
                tid, _bool(t["self_service"], _join(p, "self_service")), lo, hi,
                _int(t.get("overdraft_limit_minor", 0), _join(p, "overdraft_limit_minor"), money=True),
                _int(t["priority"], _join(p, "priority"), hi=MAX_PRIORITY),
                _text(t.get("label", ""), _join(p, "label"), max_len=64))
        auto = None
        if "auto_top_up" in w:
            ap = _join(path, "auto_top_up")
            a = _mapping(w["auto_top_up"], ap, ("amount_minor", "max_per_cycle", "priority"), ("carry_over_cycles",))
            cycles = None
            if "carry_over_cycles" in a:
                if not carry_over:
                    _fail(_join(ap, "carry_over_cycles"), "needs carry_over: true on the wallet")
                cycles = _int(a["carry_over_cycles"], _join(ap, "carry_over_cycles"), lo=1, hi=MAX_CYCLES)
            auto = AutoTopUp(
                _int(a["amount_minor"], _join(ap, "amount_minor"), lo=1, money=True),
                _int(a["max_per_cycle"], _join(ap, "max_per_cycle"), lo=1, hi=1_000),
                _int(a["priority"], _join(ap, "priority"), hi=MAX_PRIORITY), cycles)
        settlement = None
        if "settlement" in w:
            sp = _join(path, "settlement")
            s = _mapping(w["settlement"], sp, ("negative", "from"))
            negative = _name(s["negative"], _join(sp, "negative"))
            source = _name(s["from"], _join(sp, "from"))
            if negative == source:
                _fail(_join(sp, "from"), "must differ from negative")
            settlement = Settlement(negative, source)
        return Wallet(currency, title, exponent, carry_over, _frozen(top_ups), auto, settlement)

    def price_table(self, name: str, raw: Any, path: str) -> PriceTable:
        t = _mapping(raw, path, ("currency", "time_zone", "versions"), ("group_messages",))
        currency = _currency(t["currency"], _join(path, "currency"))
        tz = _text(t["time_zone"], _join(path, "time_zone"), max_len=64)
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            _fail(_join(path, "time_zone"), f"{tz!r} is not an IANA time zone name such as Asia/Jakarta")
        versions: list[PriceVersion] = []
        vp = _join(path, "versions")
        for i, vraw in enumerate(_list(t["versions"], vp, min_len=1)):
            p = _index(vp, i)
            v = _mapping(vraw, p, ("effective_from", "charging", "prices_minor"))
            start = _date(v["effective_from"], _join(p, "effective_from"))
            if versions and start <= versions[-1].effective_from:
                _fail(_join(p, "effective_from"), f"must be after the previous version's ({versions[-1].effective_from})")
            cp = _join(p, "charging")
            charging = {_choice(c, _join(cp, c), PRICE_CATEGORIES): _choice(rule, _join(cp, c), CHARGING_RULES)
                        for c, rule in _mapping(v["charging"], cp, (), PRICE_CATEGORIES).items()}
            if not charging:
                _fail(cp, "must name at least one category")
            pp = _join(p, "prices_minor")
            prices: dict[str, Mapping[str, int]] = {}
            countries = _entries(v["prices_minor"], pp)
            if not countries:
                _fail(pp, "must give the prices of at least one country")
            for country, row in countries.items():
                cp2 = _join(pp, country)
                if not _COUNTRY.fullmatch(country):
                    _fail(cp2, "must be an ISO 3166 alpha-2 country code such as ID")
                r = _mapping(row, cp2, tuple(charging), ())
                prices[country] = _frozen({c: _int(r[c], _join(cp2, c), hi=MAX_PRICE_MINOR, money=True) for c in charging})
            versions.append(PriceVersion(start, _frozen(charging), _frozen(prices)))
        group = None
        if "group_messages" in t:
            gp = _join(path, "group_messages")
            g = _mapping(t["group_messages"], gp, ("max_members", "priced_as"))
            priced_as = _choice(g["priced_as"], _join(gp, "priced_as"), PRICE_CATEGORIES)
            for version in versions:
                if priced_as not in version.charging:
                    _fail(_join(gp, "priced_as"), f"the version from {version.effective_from} has no price for {priced_as!r}")
            group = GroupMessages(_int(g["max_members"], _join(gp, "max_members"), lo=1, hi=1_024), priced_as)
        return PriceTable(name, currency, tz, tuple(versions), group)

    # -- plans ------------------------------------------------------------------------------------

    def plan(self, name: str, raw: Any, path: str) -> Plan:
        p = _mapping(raw, path, ("title",), ("kind", "description", "intervals", "features", "grants",
                                             "one_time_grants", "capacity", "policies", "trial"))
        title = _text(p["title"], _join(path, "title"), max_len=200)
        _text(p.get("description", ""), _join(path, "description"), max_len=4000)
        kind = _choice(p.get("kind", "subscription"), _join(path, "kind"), PLAN_KINDS)
        trial, intervals = self._plan_kind(p, path, kind)

        fp = _join(path, "features")
        features = {_name(f, _join(fp, f)): _choice(mode, _join(fp, f), CHARGE_MODES)
                    for f, mode in _entries(p.get("features", {}), fp).items()}
        grants, once = self._plan_grants(p, path, intervals)

        cp = _join(path, "capacity")
        capacity = {_name(m, _join(cp, m)): _int(v, _join(cp, m))
                    for m, v in _entries(p.get("capacity", {}), cp).items()}

        pp = _join(path, "policies")
        policies = {}
        raw_policies = _entries(p.get("policies", {}), pp)
        for meter, praw in raw_policies.items():
            policies[_name(meter, _join(pp, meter))] = self.policy(meter, praw, _join(pp, meter), intervals, kind)
        return Plan(name, title, kind, intervals, _frozen(features), tuple(grants), tuple(once), _frozen(capacity),
                    _frozen(policies), trial)

    @staticmethod
    def _plan_kind(p: dict[str, Any], path: str, kind: str) -> tuple[Trial | None, tuple[str, ...]]:
        """A plan's trial allowance (a trial plan) or billing intervals (any other plan): the two
        exclude each other, and a trial has no grants of its own."""
        if kind != "trial":
            if "trial" in p:
                _fail(_join(path, "trial"), "only a plan of kind trial has a trial allowance")
            if "intervals" not in p:
                _fail(_join(path, "intervals"), "is required: the billing intervals the plan is sold with")
            ip = _join(path, "intervals")
            return None, _unique(_list(p["intervals"], ip, min_len=1), ip, lambda v, q: _choice(v, q, INTERVALS))
        for key in ("intervals", "grants", "one_time_grants"):
            if key in p:
                _fail(_join(path, key), "a trial has no billing intervals or grants: its allowance is trial.total")
        if "trial" not in p:
            _fail(_join(path, "trial"), "is required for a trial plan")
        tp = _join(path, "trial")
        t = _mapping(p["trial"], tp, ("meter", "total", "denial_reason"), ("duration_days",))
        trial = Trial(_name(t["meter"], _join(tp, "meter")), _int(t["total"], _join(tp, "total"), lo=1),
                      _choice(t["denial_reason"], _join(tp, "denial_reason"), TRIAL_DENIALS),
                      _int(t["duration_days"], _join(tp, "duration_days"), lo=1, hi=MAX_DAYS)
                      if "duration_days" in t else None)
        return trial, ()

    def _plan_grants(self, p: dict[str, Any], path: str,
                     intervals: tuple[str, ...]) -> tuple[list[Grant], list[OneTimeGrant]]:
        """A plan's grants per cycle and its one-time grants; a grant id names one grant of the plan."""
        ids: set[str] = set()
        grants = []
        gp = _join(path, "grants")
        for i, graw in enumerate(_list(p.get("grants", []), gp)):
            grant = self.grant(graw, _index(gp, i), intervals)
            if grant.id in ids:
                _fail(_join(_index(gp, i), "id"), f"grant id {grant.id!r} is used twice in this plan")
            ids.add(grant.id)
            grants.append(grant)
        once = []
        op = _join(path, "one_time_grants")
        for i, oraw in enumerate(_list(p.get("one_time_grants", []), op)):
            g1 = self.one_time_grant(oraw, _index(op, i))
            if g1.id in ids:
                _fail(_join(_index(op, i), "id"), f"grant id {g1.id!r} is used twice in this plan")
            ids.add(g1.id)
            once.append(g1)
        return grants, once

    @staticmethod
    def _target(g: dict[str, Any], path: str) -> tuple[str | None, str | None, str, str]:
        """(meter, wallet, amount key, overdraft key) of a grant: exactly one of meter and wallet."""
        if ("meter" in g) == ("wallet" in g):
            _fail(_join(path, "meter"), "a grant names exactly one of meter (units) or wallet (money)")
        if "meter" in g:
            for key in ("amount_minor", "overdraft_limit_minor"):
                if key in g:
                    _fail(_join(path, key), "is for wallet grants; a meter grant has amount and overdraft_limit (units)")
            return _name(g["meter"], _join(path, "meter")), None, "amount", "overdraft_limit"
        for key in ("amount", "overdraft_limit"):
            if key in g:
                _fail(_join(path, key), "is for meter grants; a wallet grant has amount_minor and overdraft_limit_minor (money)")
        return None, _currency(g["wallet"], _join(path, "wallet")), "amount_minor", "overdraft_limit_minor"

    def grant(self, raw: Any, path: str, intervals: tuple[str, ...]) -> Grant:
        g = _mapping(raw, path, ("id", "source", "priority", "at_cycle_end"),
                     ("meter", "wallet", "amount", "amount_minor", "overdraft_limit", "overdraft_limit_minor",
                      "carry_over_cycles", "withheld_by", "label"))
        gid = _name(g["id"], _join(path, "id"))
        meter, wallet, amount_key, overdraft_key = self._target(g, path)
        if amount_key not in g:
            _fail(_join(path, amount_key), "is required")
        amount = _per_interval(g[amount_key], _join(path, amount_key), intervals, lo=0, hi=MAX_AMOUNT, money=wallet is not None)
        at_end = _choice(g["at_cycle_end"], _join(path, "at_cycle_end"), CYCLE_END)
        cycles = self._carry_cycles(g, path, at_end)
        withheld: tuple[str, ...] = ()
        if at_end == "reset_withheld_while_negative":
            if "withheld_by" not in g:
                _fail(_join(path, "withheld_by"), "is required with reset_withheld_while_negative: the grants or packs "
                      "whose negative remainder withholds the reset")
            wp = _join(path, "withheld_by")
            withheld = _unique(_list(g["withheld_by"], wp, min_len=1), wp, _name)
        elif "withheld_by" in g:
            _fail(_join(path, "withheld_by"), "is only used with at_cycle_end: reset_withheld_while_negative")
        return Grant(gid, meter, wallet, amount, _choice(g["source"], _join(path, "source"), SOURCES),
                     _int(g["priority"], _join(path, "priority"), hi=MAX_PRIORITY),
                     _int(g.get(overdraft_key, 0), _join(path, overdraft_key), money=wallet is not None),
                     at_end, cycles, withheld, _text(g.get("label", ""), _join(path, "label"), max_len=64))

    @staticmethod
    def _carry_cycles(g: dict[str, Any], path: str, at_end: str) -> int | None:
        if "carry_over_cycles" not in g:
            return None
        if at_end != "carry_over":
            _fail(_join(path, "carry_over_cycles"), "is only used with at_cycle_end: carry_over")
        return _int(g["carry_over_cycles"], _join(path, "carry_over_cycles"), lo=1, hi=MAX_CYCLES)

    def one_time_grant(self, raw: Any, path: str) -> OneTimeGrant:
        g = _mapping(raw, path, ("id", "source", "priority", "once_per"),
                     ("meter", "wallet", "amount", "amount_minor", "forfeit_when_purchased", "valid_days", "label"))
        gid = _name(g["id"], _join(path, "id"))
        meter, wallet, amount_key, _ = self._target(g, path)
        if amount_key not in g:
            _fail(_join(path, amount_key), "is required")
        amount = _int(g[amount_key], _join(path, amount_key), money=wallet is not None)
        fp = _join(path, "forfeit_when_purchased")
        forfeit = _unique(_list(g.get("forfeit_when_purchased", []), fp), fp, _name)
        return OneTimeGrant(gid, meter, wallet, amount, _choice(g["source"], _join(path, "source"), SOURCES),
                            _int(g["priority"], _join(path, "priority"), hi=MAX_PRIORITY),
                            _choice(g["once_per"], _join(path, "once_per"), ONCE_PER), forfeit,
                            _int(g["valid_days"], _join(path, "valid_days"), lo=1, hi=MAX_DAYS) if "valid_days" in g else None,
                            _text(g.get("label", ""), _join(path, "label"), max_len=64))

    def policy(self, meter: str, raw: Any, path: str, intervals: tuple[str, ...], kind: str) -> MeterPolicySpec:
        p = _mapping(raw, path, ("overage",), ("exhausted_action", "exhausted_action_by_feature", "alerts"))
        op = _join(path, "overage")
        overage = None
        if p["overage"] != "none":
            if kind == "trial":
                _fail(op, "a trial has no overage: when its total is spent it denies (write overage: none)")
            o = _mapping(p["overage"], op, ("currency",),
                         ("price_minor", "price_table", "category", "category_attribute", "label"))
            currency = _currency(o["currency"], _join(op, "currency"))
            label = _text(o.get("label", ""), _join(op, "label"), max_len=64)
            if ("price_minor" in o) == ("price_table" in o):
                _fail(_join(op, "price_minor"), "give exactly one of price_minor (a price per unit) or price_table")
            if "price_minor" in o:
                for key in ("category", "category_attribute"):
                    if key in o:
                        _fail(_join(op, key), "is only used with price_table")
                price = _per_interval(o["price_minor"], _join(op, "price_minor"), intervals, lo=1, hi=MAX_PRICE_MINOR,
                                      money=True)
                overage = Overage(currency, price, label=label)
            else:
                if ("category" in o) == ("category_attribute" in o):
                    _fail(_join(op, "category"), "give exactly one of category (fixed) or category_attribute (from the request)")
                overage = Overage(
                    currency, _frozen({}), _name(o["price_table"], _join(op, "price_table")),
                    _choice(o["category"], _join(op, "category"), PRICE_CATEGORIES) if "category" in o else None,
                    _attribute(o["category_attribute"], _join(op, "category_attribute")) if "category_attribute" in o else None,
                    label)
        fp = _join(path, "exhausted_action_by_feature")
        by_feature = {_name(f, _join(fp, f)): _choice(a, _join(fp, f), ACTIONS)
                      for f, a in _entries(p.get("exhausted_action_by_feature", {}), fp).items()}
        alerts: list[AlertRule] = []
        ap = _join(path, "alerts")
        for i, araw in enumerate(_list(p.get("alerts", []), ap)):
            q = _index(ap, i)
            a = _mapping(araw, q, ("name", "when"), ("threshold_pct", "notify"))
            alert_name = _name(a["name"], _join(q, "name"))
            if any(x.name == alert_name for x in alerts):
                _fail(_join(q, "name"), f"alert {alert_name!r} is defined twice for this meter")
            when = _choice(a["when"], _join(q, "when"), ALERT_WHEN)
            threshold = None
            if when == "exhausted":
                if "threshold_pct" in a:
                    _fail(_join(q, "threshold_pct"), "is not used with when: exhausted (it fires when nothing is left)")
            else:
                if "threshold_pct" not in a:
                    _fail(_join(q, "threshold_pct"), f"is required with when: {when}")
                threshold = _int(a["threshold_pct"], _join(q, "threshold_pct"), lo=1, hi=99)
            notify = _unique(_list(a.get("notify", []), _join(q, "notify")), _join(q, "notify"),
                             lambda v, r: _choice(v, r, NOTIFY))
            alerts.append(AlertRule(alert_name, when, threshold, notify))
        action = _choice(p.get("exhausted_action", "NONE"), _join(path, "exhausted_action"), ACTIONS)
        return MeterPolicySpec(meter, overage, action, _frozen(by_feature), tuple(alerts))

    # -- packs and reports -------------------------------------------------------------------------

    def pack(self, name: str, raw: Any, path: str) -> Pack:
        k = _mapping(raw, path, ("title", "meter", "amount", "price", "recurrence", "at_cycle_end", "priority"),
                     ("carry_over_cycles", "overdraft_limit", "source",
                      "self_service", "plans", "label", "description"))
        _text(k.get("description", ""), _join(path, "description"), max_len=4000)
        recurrence = _choice(k["recurrence"], _join(path, "recurrence"), RECURRENCE)
        at_end = _choice(k["at_cycle_end"], _join(path, "at_cycle_end"), ("reset", "carry_over", "expire"))
        pp = _join(path, "price")
        price = _mapping(k["price"], pp, ("currency", "amount_minor"))
        plans_path = _join(path, "plans")
        plans = _unique(_list(k["plans"], plans_path, min_len=1), plans_path, _name) if "plans" in k else ()
        self_service = _bool(k.get("self_service", False), _join(path, "self_service"))
        if self_service and recurrence == "every_cycle":
            _fail(_join(path, "self_service"), "a pack that renews every cycle is bought and reduced with ChangePlan, "
                  "which is the admin's: only a pack bought once can be a self-service top-up")
        return Pack(
            name, _text(k["title"], _join(path, "title"), max_len=200), _name(k["meter"], _join(path, "meter")),
            self._by_interval(k["amount"], _join(path, "amount"), money=False),
            _currency(price["currency"], _join(pp, "currency")),
            self._by_interval(price["amount_minor"], _join(pp, "amount_minor"), money=True),
            recurrence, at_end, self._carry_cycles(k, path, at_end),
            _int(k.get("overdraft_limit", 0), _join(path, "overdraft_limit")),
            _int(k["priority"], _join(path, "priority"), hi=MAX_PRIORITY),
            _choice(k.get("source", "pack"), _join(path, "source"), SOURCES),
            self_service,
            plans, _text(k.get("label", ""), _join(path, "label"), max_len=64))

    @staticmethod
    def _by_interval(value: Any, path: str, *, money: bool) -> Mapping[str, int]:
        """A pack's amount or price: one integer (every interval) or some intervals.

        Which intervals are needed is known once the plans that sell the pack are (second pass).
        """
        lo = 0 if money else 1
        if not isinstance(value, dict):
            n = _int(value, path, lo=lo, money=money)
            return _frozen({iv: n for iv in INTERVALS})
        out = {}
        for key, item in value.items():
            _choice(key, _join(path, key), INTERVALS)
            out[key] = _int(item, _join(path, key), lo=lo, money=money)
        return _frozen(out)

    def report(self, name: str, raw: Any, path: str) -> Report:
        r = _mapping(raw, path, ("kind", "meters"), ("max_range_days", "max_range_months", "description"))
        _text(r.get("description", ""), _join(path, "description"), max_len=2000)
        if "max_range_days" in r and "max_range_months" in r:
            _fail(_join(path, "max_range_months"), "give at most one of max_range_days and max_range_months")
        mp = _join(path, "meters")
        return Report(name, _choice(r["kind"], _join(path, "kind"), REPORT_KINDS),
                      _unique(_list(r["meters"], mp, min_len=1), mp, _name),
                      _int(r["max_range_days"], _join(path, "max_range_days"), lo=1, hi=MAX_DAYS)
                      if "max_range_days" in r else None,
                      _int(r["max_range_months"], _join(path, "max_range_months"), lo=1, hi=MAX_CYCLES)
                      if "max_range_months" in r else None)

    # -- second pass: references ----------------------------------------------------------------

    def check_references(self) -> None:
        o = self.objects
        for name, feature in o["features"].items():
            if feature.meter is not None:
                self.ref("meters", feature.meter, f"features.{name}.meter", "meter")
        for name, plan in o["plans"].items():
            self.check_plan(name, plan)
        for name, pack in o["packs"].items():
            self.check_pack(name, pack)
        for currency, wallet in o["wallets"].items():
            self.check_wallet(currency, wallet)
        for name, table in o["price_tables"].items():
            self.ref("wallets", table.currency, f"price_tables.{name}.currency", "wallet (currency)")
        for name, report in o["reports"].items():
            for i, meter in enumerate(report.meters):
                self.ref("meters", meter, f"reports.{name}.meters[{i}]", "meter")

    def unit_meter(self, meter: str, path: str) -> Meter | None:
        m: Meter | None = self.ref("meters", meter, path, "meter")
        if m is not None and m.kind == "capacity":
            self.problem(path, f"{meter!r} is a capacity meter: its limit goes in the plan's capacity, not in a grant")
            return None
        return m

    def check_plan(self, name: str, plan: Plan) -> None:
        path = f"plans.{name}"
        used: dict[str, str] = {}  # meter -> where the plan uses it
        for feature_name, mode in plan.features.items():
            fp = f"{path}.features.{feature_name}"
            feature: Feature | None = self.ref("features", feature_name, fp, "feature")
            if feature is None:
                continue
            if feature.meter is None:
                if mode != "included":
                    self.problem(fp, f"feature {feature_name!r} has no meter: it can only be included")
                continue
            used.setdefault(feature.meter, fp)
            if plan.trial is not None and mode != "free" and feature.meter != plan.trial.meter:
                self.problem(fp, f"feature {feature_name!r} charges {feature.meter!r}, but the trial's allowance is of "
                                 f"{plan.trial.meter!r}")
            if mode == "always_charged":
                policy = plan.policies.get(feature.meter)
                if policy is not None and policy.overage is None:
                    self.problem(fp, f"always_charged needs a priced overage for meter {feature.meter!r} in this plan's policies")
        for i, grant in enumerate(plan.grants):
            gp = f"{path}.grants[{i}]"
            self.check_target(grant.meter, grant.wallet, gp)
            if grant.meter is not None:
                used.setdefault(grant.meter, gp)
                for j, ref in enumerate(grant.withheld_by):
                    self.check_withheld(plan, grant, ref, f"{gp}.withheld_by[{j}]")
        for i, once in enumerate(plan.one_time_grants):
            op = f"{path}.one_time_grants[{i}]"
            self.check_target(once.meter, once.wallet, op)
            if once.meter is not None:
                used.setdefault(once.meter, op)
            for j, pack_name in enumerate(once.forfeit_when_purchased):
                pack: Pack | None = self.ref("packs", pack_name, f"{op}.forfeit_when_purchased[{j}]", "pack")
                if pack is not None and once.meter is not None and pack.meter != once.meter:
                    self.problem(f"{op}.forfeit_when_purchased[{j}]",
                                 f"pack {pack_name!r} sells {pack.meter!r}, not this grant's meter {once.meter!r}")
        for meter_name in plan.capacity:
            m: Meter | None = self.ref("meters", meter_name, f"{path}.capacity.{meter_name}", "meter")
            if m is not None and m.kind != "capacity":
                self.problem(f"{path}.capacity.{meter_name}", f"{meter_name!r} is a {m.kind} meter, not a capacity meter")
        if plan.trial is not None:
            self.unit_meter(plan.trial.meter, f"{path}.trial.meter")
            used.setdefault(plan.trial.meter, f"{path}.trial.meter")
        for meter_name, policy in plan.policies.items():
            self.check_policy(plan, meter_name, policy, f"{path}.policies.{meter_name}")
        for meter_name, where in used.items():
            if meter_name not in plan.policies and meter_name in self.objects["meters"]:
                self.problem(f"{path}.policies", f"has no entry for meter {meter_name!r} (used at {where}): every meter a plan "
                             "grants or charges states its overage, exhausted action and alerts")

    def check_target(self, meter: str | None, wallet: str | None, path: str) -> None:
        if meter is not None:
            self.unit_meter(meter, f"{path}.meter")
        if wallet is not None:
            self.ref("wallets", wallet, f"{path}.wallet", "wallet (currency)")

    def check_withheld(self, plan: Plan, grant: Grant, ref: str, path: str) -> None:
        other = next((g for g in plan.grants if g.id == ref), None)
        if other is not None:
            if other.id == grant.id:
                self.problem(path, "a grant cannot withhold its own reset")
            elif other.meter != grant.meter:
                self.problem(path, f"grant {ref!r} is not of meter {grant.meter!r}")
            return
        pack: Pack | None = self.objects["packs"].get(ref)
        if pack is None:
            if ref not in self.broken["packs"] and "packs" not in self.section_broken:
                known = [g.id for g in plan.grants] + list(self.objects["packs"])
                self.problem(path, f"unknown grant or pack {ref!r}{_hint(ref, known)}")
            return
        if pack.meter != grant.meter:
            self.problem(path, f"pack {ref!r} sells {pack.meter!r}, not {grant.meter!r}")

    def check_policy(self, plan: Plan, meter_name: str, policy: MeterPolicySpec, path: str) -> None:
        meter: Meter | None = self.ref("meters", meter_name, path, "meter")
        overage = policy.overage
        if overage is not None:
            if meter is not None and meter.kind == "capacity":
                self.problem(f"{path}.overage", "a capacity meter has no overage: write overage: none")
            self.ref("wallets", overage.currency, f"{path}.overage.currency", "wallet (currency)")
            if overage.price_table is not None:
                table: PriceTable | None = self.ref("price_tables", overage.price_table, f"{path}.overage.price_table",
                                                    "price table")
                if table is not None:
                    if table.currency != overage.currency:
                        self.problem(f"{path}.overage.price_table",
                                     f"price table {table.name!r} is in {table.currency}, the overage in {overage.currency}")
                    if overage.category is not None and any(overage.category not in v.charging for v in table.versions):
                        self.problem(f"{path}.overage.category",
                                     f"not priced in every version of price table {table.name!r}")
        for feature_name in policy.exhausted_action_by_feature:
            fp = f"{path}.exhausted_action_by_feature.{feature_name}"
            feature: Feature | None = self.ref("features", feature_name, fp, "feature")
            if feature is None:
                continue
            if feature.meter != meter_name:
                self.problem(fp, f"feature {feature_name!r} does not charge meter {meter_name!r}")
            elif feature_name not in plan.features:
                self.problem(fp, f"feature {feature_name!r} is not in this plan's features")

    def check_pack(self, name: str, pack: Pack) -> None:
        path = f"packs.{name}"
        self.unit_meter(pack.meter, f"{path}.meter")
        plans = self.objects["plans"]
        selling: list[Plan] = []
        if pack.plans:
            for i, plan_name in enumerate(pack.plans):
                plan: Plan | None = self.ref("plans", plan_name, f"{path}.plans[{i}]", "plan")
                if plan is not None:
                    if plan.kind == "trial":
                        self.problem(f"{path}.plans[{i}]", f"{plan_name!r} is a trial: packs are bought on subscriptions")
                    else:
                        selling.append(plan)
        else:
            selling = [p for p in plans.values() if p.kind == "subscription"]
        for plan in selling:
            for iv in plan.intervals:
                if iv not in pack.amount:
                    self.problem(f"{path}.amount", f"has no amount for interval {iv!r} of plan {plan.name!r}")
                if iv not in pack.price_minor:
                    self.problem(f"{path}.price.amount_minor", f"has no price for interval {iv!r} of plan {plan.name!r}")

    def check_wallet(self, currency: str, wallet: Wallet) -> None:
        if wallet.settlement is None:
            return
        ids = set(wallet.top_ups)
        for plan in self.objects["plans"].values():
            ids.update(g.id for g in plan.grants if g.wallet == currency)
            ids.update(g.id for g in plan.one_time_grants if g.wallet == currency)
        for key, value in (("negative", wallet.settlement.negative), ("from", wallet.settlement.from_)):
            if value not in ids and not self.broken["plans"] and "plans" not in self.section_broken:
                self.problem(f"wallets.{currency}.settlement.{key}",
                             f"{value!r} is neither a top-up of this wallet nor a plan grant in {currency}{_hint(value, ids)}")


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def _content_hash(data: Any) -> str:
    def default(value: object) -> str:
        if isinstance(value, dt.date):
            return value.isoformat()
        raise TypeError(type(value).__name__)

    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=default)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def parse_catalogue(text: str | bytes, file: str) -> Catalogue:
    """Validate one catalogue given as text; ``file`` is the name problems are reported under.

    Raises CatalogueError listing every problem found.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_FILE_BYTES:
            raise CatalogueError([Problem(file, "", f"is larger than {MAX_FILE_BYTES} bytes")])
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CatalogueError([Problem(file, "", f"is not UTF-8 text (byte {exc.start})")]) from None
    try:
        data, lines = _parse_yaml(text)
    except _YamlProblem as exc:
        raise CatalogueError([Problem(file, exc.path, exc.reason, exc.line)]) from None
    parser = _Parser(file, lines)
    catalogue = parser.parse(data, _content_hash(data))
    if catalogue is None:
        raise CatalogueError(parser.problems)
    return catalogue


def load_catalogue(path: str | Path) -> Catalogue:
    """Read and validate one catalogue file. Raises CatalogueError listing every problem found."""
    file = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CatalogueError([Problem(file, "", f"cannot be read: {exc.strerror or exc}")]) from None
    return parse_catalogue(data, file)


def load_directory(directory: str | Path) -> dict[str, Catalogue]:
    """Every ``*.yaml`` file of a directory, by product. All valid or CatalogueError with every problem.

    A ``*.yml`` file is an error rather than silently skipped; so are two files of one product.
    """
    root = Path(directory)
    if not root.is_dir():
        raise CatalogueError([Problem(str(root), "", "is not a directory")])
    problems: list[Problem] = []
    found: dict[str, Catalogue] = {}
    files = sorted(p for p in root.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith("."))
    for path in files:
        if path.suffix == ".yml":
            problems.append(Problem(str(path), "", "catalogue files end in .yaml: rename it (it would otherwise be ignored)"))
            continue
        try:
            catalogue = load_catalogue(path)
        except CatalogueError as exc:
            problems.extend(exc.problems)
            continue
        if catalogue.product in found:
            problems.append(Problem(str(path), "product", f"product {catalogue.product!r} is also defined in "
                                                          f"{found[catalogue.product].file}"))
            continue
        found[catalogue.product] = catalogue
    if not files:
        problems.append(Problem(str(root), "", "has no catalogue files (*.yaml)"))
    if problems:
        raise CatalogueError(problems)
    return found


class CatalogueSet:
    """The catalogues of one directory, replaced as a whole by ``reload()``.

    Readers take ``catalogues`` (or ``get``) and see one consistent set: a reload builds a new set
    and swaps a single reference, so no reader ever sees a mix of old and new files. Reloads are
    serialized by a lock. Reading files blocks: from asyncio, call ``reload`` in a thread
    (``asyncio.to_thread``).
    """

    def __init__(self, directory: str | Path) -> None:
        """Load the directory; raises CatalogueError when any file is invalid (fail fast at start)."""
        self._directory = Path(directory)
        self._lock = threading.Lock()
        self._catalogues: Mapping[str, Catalogue] = MappingProxyType(load_directory(self._directory))

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def catalogues(self) -> Mapping[str, Catalogue]:
        """The current set, by product (a read-only snapshot)."""
        return self._catalogues

    def get(self, product: str) -> Catalogue | None:
        return self._catalogues.get(product)

    def __getitem__(self, product: str) -> Catalogue:
        return self._catalogues[product]

    def reload(self) -> tuple[Problem, ...]:
        """Load the directory again and switch to it if every file is valid.

        Returns the problems found (empty when the new set is in use). On any problem the old set
        stays in use, unchanged. Besides the files' own validity, a reload refuses a product whose
        content changed without a higher ``version``, a version that went down, and a product
        whose file disappeared (accounts may be on it: removing a product needs a restart).
        """
        with self._lock:
            try:
                new = load_directory(self._directory)
            except CatalogueError as exc:
                return exc.problems
            problems: list[Problem] = []
            for product, old in self._catalogues.items():
                fresh = new.get(product)
                if fresh is None:
                    problems.append(Problem(str(self._directory), "", f"product {product!r} (was {old.file}) is missing; "
                                                                      "a reload does not remove products"))
                elif fresh.version < old.version:
                    problems.append(Problem(fresh.file, "version", f"went down from {old.version} to {fresh.version}: "
                                                                   "versions only go up (a rollback is a new version)"))
                elif fresh.version == old.version and fresh.content_hash != old.content_hash:
                    problems.append(Problem(fresh.file, "version", f"is still {old.version} but the content changed: "
                                                                   "bump version on every change"))
            if problems:
                return tuple(problems)
            self._catalogues = MappingProxyType(new)
            return ()
