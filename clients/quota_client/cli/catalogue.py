"""`quota-cli catalogue`: the products, plans, packs and top-up kinds an operator can sell.

The API has no call that lists the catalogue, so this command reads the catalogue directory itself
(`--catalogues`, else `QUOTA_CATALOGUE_DIR`, else the service's default: the shipped `deploy/catalogues`)
with the service's own loader: what it shows is what a service started with that directory loads.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from rich.console import RenderableType

from quota_client.cli.parse import UsageError
from quota_client.cli.render import record, table


def catalogue_dir(given: str | None) -> str:
    if given:
        return given
    if "QUOTA_CATALOGUE_DIR" in os.environ:
        return os.environ["QUOTA_CATALOGUE_DIR"]
    from quota_service.settings import Settings

    return str(next(f.default for f in dataclasses.fields(Settings) if f.name == "catalogue_dir"))


def load(directory: str) -> Mapping[str, Any]:
    """Every catalogue of the directory by product; a broken file is a usage error naming every problem."""
    from quota_service.catalogue import CatalogueError, load_directory

    if not directory:
        raise UsageError("no catalogue directory: pass --catalogues DIR or set QUOTA_CATALOGUE_DIR")
    try:
        found: Mapping[str, Any] = load_directory(directory)
        return found
    except CatalogueError as exc:
        raise UsageError(f"the catalogue in {directory} is not valid:\n{exc}") from None


def _amounts(amount: Mapping[str, int]) -> str:
    """Per billing interval; one number when every interval has the same."""
    values = set(amount.values())
    if len(amount) > 1 and len(values) == 1:
        return f"{values.pop()} (any interval)"
    return ", ".join(f"{v} {k}" for k, v in amount.items())


def plan_summary(plan: Any) -> dict[str, Any]:
    """A plan as plain data: what it grants per cycle and once, its capacity and features."""
    return {
        "plan": plan.name, "title": plan.title, "kind": plan.kind, "intervals": list(plan.intervals),
        "grants": [{"id": g.id, "bucket": g.bucket, "amount": dict(g.amount), "at_cycle_end": g.at_cycle_end,
                    "label": g.label} for g in plan.grants],
        "one_time_grants": [{"id": g.id, "bucket": g.bucket, "amount": g.amount, "label": g.label}
                            for g in plan.one_time_grants],
        "capacity": dict(plan.capacity), "features": dict(plan.features),
        "trial": {"meter": plan.trial.meter, "total": plan.trial.total, "duration_days": plan.trial.duration_days}
        if plan.trial else None,
    }


def product_summary(cat: Any) -> dict[str, Any]:
    """A product's catalogue as plain data: plans, packs and the wallets' top-up kinds."""
    return {
        "product": cat.product, "title": cat.title, "version": cat.version, "file": cat.file,
        "meters": {m.name: {"kind": m.kind, "unit": m.unit} for m in cat.meters.values()},
        "plans": [plan_summary(p) for p in cat.plans.values()],
        "packs": [{"pack": p.name, "title": p.title, "meter": p.meter, "amount": dict(p.amount),
                   "price_minor": dict(p.price_minor), "currency": p.price_currency, "recurrence": p.recurrence,
                   "plans": list(p.plans), "self_service": p.self_service} for p in cat.packs.values()],
        "top_ups": [{"kind": t.id, "currency": w.currency, "min_amount_minor": t.min_amount_minor,
                     "max_amount_minor": t.max_amount_minor, "priority": t.priority, "label": t.label,
                     "self_service": t.self_service} for w in cat.wallets.values() for t in w.top_ups.values()],
    }


def summaries(catalogues: Mapping[str, Any], product: str) -> list[dict[str, Any]]:
    if product and product not in catalogues:
        known = ", ".join(sorted(catalogues)) or "none"
        raise UsageError(f"no product {product!r} in the catalogue (products: {known})")
    return [product_summary(catalogues[p]) for p in sorted(catalogues) if not product or p == product]


def show(products: list[dict[str, Any]], *, detail: bool) -> list[RenderableType]:
    """Every product with its plans; with `detail` (one product asked for), its grants, packs and top-ups."""
    out: list[RenderableType] = []
    for prod in products:
        out.append(record([("product", prod["product"]), ("title", prod["title"]), ("version", prod["version"])]))
        grants = {p["plan"]: "; ".join(f"{g['bucket']} {_amounts(g['amount'])}" for g in p["grants"])
                  for p in prod["plans"]}
        out.append(table(["plan", "title", "kind", "intervals", "per cycle"],
                         [[p["plan"], p["title"], p["kind"], ", ".join(p["intervals"]) or "-", grants[p["plan"]] or "-"]
                          for p in prod["plans"]]))
        if detail and prod["packs"]:
            out.append(table(["pack", "meter", "units", "price", "recurrence", "plans"],
                             [[k["pack"], k["meter"], _amounts(k["amount"]),
                               f"{_amounts(k['price_minor'])} {k['currency']}".strip(), k["recurrence"],
                               ", ".join(k["plans"]) or "any"] for k in prod["packs"]], title="packs"))
        if detail and prod["top_ups"]:
            out.append(table(["kind", "currency", "min", "max", "priority", "label", "self service"],
                             [[t["kind"], t["currency"], t["min_amount_minor"], t["max_amount_minor"], t["priority"],
                               t["label"], "yes" if t["self_service"] else "no"] for t in prod["top_ups"]],
                             title="top-up kinds (minor units)", numeric=["min", "max", "priority"]))
    return out
