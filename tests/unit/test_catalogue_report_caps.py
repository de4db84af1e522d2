"""Range caps of the usage reports, from the catalogue's ``reports:`` section (QA4, QC8, QC9, R3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from quota_service.catalogue import DEFAULT_REPORT_RANGE_DAYS, CatalogueError, load_directory, parse_catalogue
from quota_service.catalogue.model import longest_days_in_months
from quota_service.reports.usage_range import range_cap

CATALOGUES = Path(__file__).resolve().parents[2] / "deploy" / "catalogues"

BASE = """\
format: 1
product: demo
version: 1
title: Demo
meters:
  msgs: {kind: count, unit: message}
  calls: {kind: count, unit: call}
plans:
  basic:
    title: Basic
    intervals: [monthly]
    grants:
      - {id: included, meter: msgs, amount: 100, source: plan, priority: 10, at_cycle_end: reset}
    policies:
      msgs: {overage: none, exhausted_action: NONE}
"""


def test_qa4_qc8_the_seed_caps() -> None:
    cats = load_directory(CATALOGUES)
    days, report = cats["ai_chatbot"].range_cap("csv", "ai_dialog")
    assert days == 90 and report is not None and report.name == "usage_csv"  # QA4: "a maximum period of 90 days"
    assert cats["ai_chatbot"].range_cap("csv")[0] == 90  # no meter asked for: the strictest csv report
    assert cats["conversation"].range_cap("trend", "wa_message")[0] == 92  # QC8: "a maximum filter of 3 months"
    # QC9 gives the CSV downloads no cap: the service default bounds them
    assert cats["conversation"].range_cap("csv", "wa_message") == (DEFAULT_REPORT_RANGE_DAYS, None)
    assert cats["bot_sessions"].range_cap("csv") == (92, None)


def test_months_count_as_their_longest_span() -> None:
    assert [longest_days_in_months(n) for n in (1, 2, 3, 6, 12)] == [31, 62, 92, 184, 366]
    assert DEFAULT_REPORT_RANGE_DAYS == longest_days_in_months(3)


def test_the_strictest_cap_of_the_reports_covering_the_meter_applies() -> None:
    c = parse_catalogue(BASE + """\
reports:
  all_csv: {kind: csv, meters: [msgs, calls], max_range_days: 60}
  msgs_csv: {kind: csv, meters: [msgs], max_range_days: 30}
  calls_trend: {kind: trend, meters: [calls], max_range_months: 1}
  uncapped: {kind: csv, meters: [calls]}
""", "demo.yaml")
    assert c.range_cap("csv", "msgs")[0] == 30
    assert c.range_cap("csv", "calls")[0] == 60
    assert c.range_cap("csv")[0] == 30
    assert c.range_cap("trend", "calls")[0] == 31
    assert c.range_cap("trend", "msgs") == (DEFAULT_REPORT_RANGE_DAYS, None), "no trend report covers msgs"
    cap = range_cap(c, "demo", "csv", "msgs")
    assert (cap.days, cap.source) == (30, "report msgs_csv of the demo catalogue")
    assert range_cap(None, None, "csv", "").source == "the service default: the account has no subscription"
    assert range_cap(None, "gone", "csv", "").days == DEFAULT_REPORT_RANGE_DAYS


@pytest.mark.parametrize(("reports", "path", "reason"), [
    ("  r: {kind: csv, meters: [msgs], max_range_days: 0}\n", "reports.r.max_range_days", "must be at least 1"),
    ("  r: {kind: csv, meters: [msgs], max_range_days: 10, max_range_months: 1}\n", "reports.r.max_range_months",
     "at most one of"),
    ("  r: {kind: pdf, meters: [msgs]}\n", "reports.r.kind", "csv"),
    ("  r: {kind: csv, meters: [sms]}\n", "reports.r.meters[0]", "unknown meter 'sms'"),
    ("  r: {kind: csv, meters: [msgs], max_range: 90}\n", "reports.r.max_range", "unknown key"),
])
def test_a_broken_report_names_file_path_and_reason(reports: str, path: str, reason: str) -> None:
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue(BASE + "reports:\n" + reports, "demo.yaml")
    err = caught.value
    assert (err.file, err.path) == ("demo.yaml", path), str(err)
    assert reason in err.reason, str(err)
