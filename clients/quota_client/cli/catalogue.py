"""`quota-cli catalogue`: the products, plans, packs and top-up kinds an operator can sell, as the
service has loaded them (ListCatalogue): what it shows is what the service sells now.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from rich.console import RenderableType

from quota_client.cli.render import record, table
from quota_client.client import AsyncQuotaClient
from quota_client.results import CatalogueProduct


async def products(c: AsyncQuotaClient, product: str) -> list[dict[str, Any]]:
    """Every product (or one) as plain data; an unknown product is NOT_FOUND naming the known ones."""
    return [product_summary(p) for p in await c.catalogue(product)]


def _amounts(amount: Mapping[str, int]) -> str:
    """Per billing interval; one number when every interval has the same."""
    values = set(amount.values())
    if len(amount) > 1 and len(values) == 1:
        return f"{values.pop()} (any interval)"
    return ", ".join(f"{v} {k}" for k, v in amount.items())


def product_summary(p: CatalogueProduct) -> dict[str, Any]:
    """A product as plain data, for --json: the API's fields, zeros and empty lists present."""
    return dataclasses.asdict(p)


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
        if detail and prod["top_up_kinds"]:
            out.append(table(["kind", "currency", "min", "max", "priority", "label", "self service"],
                             [[t["kind"], t["currency"], t["min_amount_minor"], t["max_amount_minor"], t["priority"],
                               t["label"], "yes" if t["self_service"] else "no"] for t in prod["top_up_kinds"]],
                             title="top-up kinds (minor units)", numeric=["min", "max", "priority"]))
    return out
