"""The monitoring kit against the real thing: a real Prometheus (the Debian `prometheus` package,
installed by `./run test` when missing) scrapes a running service, and every PromQL expression of
the dashboard and of the alerting rules returns data; `promtool test rules` passes."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from quota_client import AsyncQuotaClient
from quota_service import embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import make_account, test_settings

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
PROMETHEUS, PROMTOOL = Path("/usr/bin/prometheus"), Path("/usr/bin/promtool")
RATE_INTERVAL = "1m"  # what Grafana's $__rate_interval stands for here
# an alert is "<expression> <comparison> <number>"; with `bool` the comparison keeps every series (0 or 1)
ALERT_SHAPE = re.compile(r"^(?P<lhs>.*\S)\s*(?P<op>==|!=|>=|<=|>|<)\s*(?P<threshold>[0-9.eE+-]+)\s*$", re.DOTALL)


def binary(path: Path) -> Path:
    assert path.is_file(), f"{path} is missing: `./run test` installs the Debian package prometheus"
    return path


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    return [t["expr"].replace("$__rate_interval", RATE_INTERVAL).replace("$instance", ".*")
            for p in dashboard["panels"] for t in p["targets"]]


def rule_expressions() -> list[str]:
    """Every alert's expression with its threshold made a `bool` comparison: data whether it fires or not."""
    out = []
    for group in yaml.safe_load((MONITORING / "rules.yaml").read_text())["groups"]:
        for rule in group["rules"]:
            m = ALERT_SHAPE.match(rule["expr"].strip())
            assert m is not None, f"{rule['alert']}: not '<expression> <comparison> <number>'"
            out.append(f"{m['lhs']} {m['op']} bool {m['threshold']}")
    return out


def api(base: str, path: str, **params: str) -> Any:
    with urllib.request.urlopen(f"{base}{path}?{urllib.parse.urlencode(params)}", timeout=10) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]


async def until(predicate: Any, what: str, within_s: float = 60) -> None:
    """Poll Prometheus' API until predicate() holds: Prometheus has no push notification of a scrape."""
    async with asyncio.timeout(within_s):
        while not await asyncio.to_thread(predicate):
            await asyncio.sleep(0.2)


@pytest.fixture
async def scraped(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock,
                  tmp_path: Path) -> AsyncIterator[tuple[QuotaServer, str]]:
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, metrics_port=embedded.free_port()), clock=clock)
    await srv.start()
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())  # the shipped example, pointed here
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(MONITORING / "rules.yaml")]
    [job] = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{srv.metrics_port}"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = embedded.free_port()
    with (tmp_path / "prometheus.log").open("w") as log:
        proc = subprocess.Popen([str(binary(PROMETHEUS)), f"--config.file={tmp_path / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                                 "--log.level=warn"], stdout=subprocess.DEVNULL, stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            await until(lambda: ready(base, proc, tmp_path / "prometheus.log"), "Prometheus ready")
            yield srv, base
        finally:
            proc.terminate()
            proc.wait(30)
            await srv.stop(1)


def ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> bool:
    assert proc.poll() is None, f"prometheus exited: {log.read_text()}"
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as resp:
            return resp.status == 200
    except OSError:  # not listening yet (URLError is an OSError), or 503 while it starts
        return False


def instant(base: str, expr: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = api(base, "/api/v1/query", query=expr)["result"]
    return result


async def drive_traffic(client: AsyncQuotaClient, account_id: str, clock: ManualClock) -> None:
    """Grants, denials, holds committed, released and expired, a consume: every panel has something."""
    await make_account(client, account_id, units=5)
    held = await client.reserve(account_id, "ai_dialog", 1, ttl_ms=1000)
    assert held.granted
    await client.commit(account_id, held.reservation_id, actual_amount=1)
    assert (await client.consume(account_id, "ai_dialog", 1)).granted
    released = await client.reserve(account_id, "ai_dialog", 1)
    await client.release(account_id, released.reservation_id)
    assert (await client.reserve(account_id, "ai_dialog", 1, ttl_ms=1000)).granted
    clock.advance(2000)  # the sweeper returns the last hold at its TTL
    assert not (await client.reserve(account_id, "ai_dialog", 5)).granted
    await client.balance(account_id)


async def test_every_dashboard_and_rule_expression_returns_data_from_a_real_scrape(
        scraped: tuple[QuotaServer, str], clock: ManualClock, account_id: str) -> None:
    srv, base = scraped
    async with AsyncQuotaClient(f"127.0.0.1:{srv.port}", timeout_s=10) as client:
        await until(lambda: any(r["value"][1] == "1" for r in instant(base, 'up{job="quota-service"}')), "first scrape")
        await drive_traffic(client, account_id, clock)
        # rate() needs two scrapes after the traffic inside its window
        await until(lambda: bool(instant(base, 'sum(quota_decisions_total{status="DENIED",reason="QUOTA_EXHAUSTED"}) > 0'))
                    and bool(instant(base, 'count_over_time(up{job="quota-service"}[1m]) >= 4')), "scrapes after traffic")
    empty = [expr for expr in dashboard_expressions() + rule_expressions() if not instant(base, expr)]
    assert not empty, "expressions without data:\n" + "\n".join(empty)
    # the ones that must show this traffic do
    decisions = instant(base, 'sum by (status, reason) (increase(quota_decisions_total[1m])) > 0')
    assert {(r["metric"]["status"], r["metric"]["reason"]) for r in decisions} >= {("GRANTED", "none"),
                                                                                  ("DENIED", "QUOTA_EXHAUSTED")}
    assert {r["metric"]["backend"]: r["value"][1] for r in instant(base, "min by (backend) (quota_backend_up)")} == {
        "redis": "1", "postgres": "1"}
    # and the rules loaded: Prometheus evaluates them, none fires against a healthy service
    groups = api(base, "/api/v1/rules")["groups"]
    assert {r["name"] for g in groups for r in g["rules"]} >= {"QuotaBackendDown", "QuotaLedgerLag", "QuotaErrorRatio",
                                                              "QuotaUnconfirmedMutationOld", "QuotaWebhookBacklog"}
    assert api(base, "/api/v1/alerts")["alerts"] == []

    sys.path.insert(0, str(MONITORING))
    try:
        import draw_panels
    finally:
        sys.path.remove(str(MONITORING))
    svg = await asyncio.to_thread(draw_panels.draw, base, json.loads((MONITORING / "dashboard.json").read_text()),
                                  draw_panels.MAIN_PANELS, 2, 1, RATE_INTERVAL)
    tree = ET.fromstring(svg)
    texts = {t.text for t in tree.iter("{http://www.w3.org/2000/svg}text")}
    assert set(draw_panels.MAIN_PANELS) <= texts
    assert len(list(tree.iter("{http://www.w3.org/2000/svg}polyline"))) >= len(draw_panels.MAIN_PANELS)


def test_promtool_unit_tests_of_the_alerting_rules_pass() -> None:
    out = subprocess.run([str(binary(PROMTOOL)), "test", "rules", "rules_test.yaml"], cwd=MONITORING,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    tested = set(re.findall(r"alertname: (\w+)", (MONITORING / "rules_test.yaml").read_text()))
    alerts = {r["alert"] for g in yaml.safe_load((MONITORING / "rules.yaml").read_text())["groups"] for r in g["rules"]}
    assert tested == alerts, "every alert has a unit test"


def test_the_example_scrape_configuration_is_valid() -> None:
    out = subprocess.run([str(binary(PROMTOOL)), "check", "config", "prometheus.yml"], cwd=MONITORING,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def k8s_docs() -> Iterator[dict[str, Any]]:
    for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):
        yield from (d for d in yaml.safe_load_all(path.read_text()) if d)


def test_the_service_monitor_scrapes_the_metrics_port_of_the_service() -> None:
    docs = list(k8s_docs())
    [monitor] = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [d for d in docs if d["kind"] == "Service" and selector.items() <= d["metadata"]["labels"].items()]
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    # exactly one selected Service has the port, so each replica is scraped once
    with_port = [s for s in services if any(p["name"] == endpoint["port"] for p in s["spec"]["ports"])]
    assert [s["metadata"]["name"] for s in with_port] == ["quota-service"]  # the job name the rules expect
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert endpoint["port"] in {p["name"] for p in container["ports"]}
