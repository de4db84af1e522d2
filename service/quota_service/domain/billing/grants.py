"""Plain facts about grants that every planner uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quota_service.catalogue import Plan


def remaining(row: Mapping[str, Any]) -> int:
    """What a grant has left: granted - used - held (negative: a debt)."""
    return int(row["granted"]) - int(row["used"]) - int(row["held"])


def item_of(plan: Plan, name: str) -> str:
    """The catalogue item ``withheld_by`` names: a grant of the plan or a pack."""
    return f"plan:{name}" if any(g.id == name for g in plan.grants) else f"pack:{name}"
