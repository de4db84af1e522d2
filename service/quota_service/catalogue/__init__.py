"""The plan catalogue as data (A2): one YAML file per product, validated at load, versioned.

``load_catalogue`` reads one file, ``load_directory`` a directory of them, and ``CatalogueSet``
keeps a directory's catalogues and swaps them as a whole on ``reload()``. The format is in
docs/CATALOGUE.md; the example catalogues of the seed products are in deploy/catalogues/.
"""

from quota_service.catalogue.errors import CatalogueError, Problem
from quota_service.catalogue.loader import CatalogueSet, load_catalogue, load_directory, parse_catalogue
from quota_service.catalogue.model import (
    DEFAULT_REPORT_RANGE_DAYS,
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

__all__ = [
    "DEFAULT_REPORT_RANGE_DAYS",
    "AlertRule",
    "AutoTopUp",
    "Catalogue",
    "CatalogueError",
    "CatalogueSet",
    "Dedup",
    "Feature",
    "Grant",
    "GroupMessages",
    "Meter",
    "MeterPolicySpec",
    "OneTimeGrant",
    "Overage",
    "Pack",
    "Plan",
    "PriceTable",
    "PriceVersion",
    "Problem",
    "Report",
    "Settlement",
    "TopUp",
    "Trial",
    "Wallet",
    "load_catalogue",
    "load_directory",
    "parse_catalogue",
]
