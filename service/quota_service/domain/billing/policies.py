"""A plan's meter as the hot path enforces it: the policy stored on the account (pure)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from zoneinfo import ZoneInfo

from quota_service.catalogue import Catalogue, Plan
from quota_service.domain import validation as v
from quota_service.domain.model import MeterPolicy, PriceTablePolicy, PriceTableVersion

TRIAL = "trial"  # the interval of a trial subscription: one period, until it ends or the account subscribes
DAY_MS = 86_400_000


def policy_of(plan: Plan, meter: str, interval: str, catalogue: Catalogue | None = None) -> MeterPolicy:
    """The hot path's policy for a meter of the plan; alert thresholds as percent left.

    When the catalogue declares features counted on this meter, the policy lists the plan's features
    with their charge modes: a feature the plan does not list is not in the plan (TA3).
    """
    spec = plan.policies[meter]
    features = None
    if catalogue is not None and any(f.meter == meter for f in catalogue.features.values()):
        features = tuple(sorted((name, mode) for name, mode in plan.features.items()
                                if catalogue.features[name].meter == meter))
    denial = plan.trial.denial_reason if plan.trial is not None and plan.trial.meter == meter else ""
    unique = None
    slice_s = 0
    if catalogue is not None and meter in catalogue.meters:
        dedup = catalogue.meters[meter].dedup
        if catalogue.meters[meter].kind == "unique" and dedup is not None:
            unique = (dedup.window, tuple(dedup.key_attributes))
        if catalogue.meters[meter].kind == "duration":
            # KB1, KB2: one unit per started slice of a conversation's bot time (the caller's
            # bot_elapsed_s leaves out the time a human agent had the conversation)
            slice_s = catalogue.meters[meter].slice_s or 0
            unique = ("conversation", ("conversation_id", v.BOT_ELAPSED))
    price, currency = 0, ""
    if spec.overage is not None and spec.overage.price_minor:
        price, currency = spec.overage.price_minor[interval], spec.overage.currency
    table = None
    if spec.overage is not None and spec.overage.price_table and catalogue is not None:
        # priced per event by the table in force at its time (QC10)
        table = price_table_policy(catalogue, spec.overage.price_table, spec.overage.category,
                                   spec.overage.category_attribute)
        currency = spec.overage.currency
    by_feature = tuple(sorted(spec.exhausted_action_by_feature.items()))
    notify: dict[int, set[str]] = defaultdict(set)  # the delivery channels of each threshold (catalogue notify)
    names: dict[int, str] = {}  # the alert's name per threshold (the first rule of a threshold names it)
    for alert in spec.alerts:
        notify[alert.pct_left].update(alert.notify)
        names.setdefault(alert.pct_left, alert.name)
    return MeterPolicy(meter, price, currency, spec.exhausted_action, spec.alert_pct_left, features, denial, unique,
                       by_feature, slice_s=slice_s, price_table=table,
                       alert_notify=tuple((pct, tuple(sorted(ch))) for pct, ch in sorted(notify.items()) if ch),
                       alert_names=tuple(sorted(names.items())))


def price_table_policy(catalogue: Catalogue, name: str, category: str | None,
                       category_attribute: str | None) -> PriceTablePolicy:
    """A price table as the hot path prices with it: every version with its start in ms (00:00 of its
    date in the table's time zone), the charging rule per category and the prices per country."""
    table = catalogue.price_tables[name]
    tz = ZoneInfo(table.time_zone)
    versions = tuple(PriceTableVersion(
        int(dt.datetime.combine(ver.effective_from, dt.time(), tzinfo=tz).timestamp() * 1000), dict(ver.charging),
        {country: dict(prices) for country, prices in ver.prices_minor.items()}) for ver in table.versions)
    countries = {c for ver in table.versions for c in ver.prices_minor}
    window_meters = sorted(m.name for m in catalogue.meters.values()
                           if m.dedup is not None and m.dedup.window == "customer_service_window_24h")
    groups = table.group_messages
    return PriceTablePolicy(versions, category_attribute or "", category or "",
                            next(iter(countries)) if len(countries) == 1 else "", table.currency,
                            window_meters[0] if window_meters else "",
                            (groups.max_members, groups.priced_as) if groups is not None else None)


def capacity_policy(cat: Catalogue, meter: str) -> MeterPolicy:
    """A capacity meter's policy (QC2): Reserve takes a unit while it is in use, Release gives it back.
    The request's `feature` names the user's role: the meter's roles take a unit, an admin none;
    another role is not in the plan."""
    m = cat.meters.get(meter)
    roles = m.roles if m is not None else ()
    features = tuple(sorted([(r, "included") for r in roles] + [("admin", "free")])) if roles else None
    return MeterPolicy(meter, features=features, capacity=True)
