"""deploy/grafana-dashboard.json and deploy/alerts.yml query only metrics a live server exports,
and the metrics added for them (audit, balances, fan-out, feed health) carry real values."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import yaml

from tests.betting_fixtures import insert_market
from tests.conftest import PlayerFactory, ServerFactory
from tests.e2e.test_cli import thisthat
from tests.feed_fixtures import eventually
from tests.players import Player

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
ALERTS = DEPLOY / "alerts.yml"

# Series Prometheus makes itself rather than scraping them.
SYNTHETIC = {"up"}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "inf", "nan",
}  # fmt: skip
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads (functions, labels and keywords removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings: label values, legends
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", expr):
        name, is_call = match.group(1), match.group(2)
        if not is_call and name.lower() not in PROMQL_WORDS:
            names.add(name)
    return names


def dashboard_exprs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for value in node.values() for e in dashboard_exprs(value)]
    if isinstance(node, list):
        return [e for value in node for e in dashboard_exprs(value)]
    return []


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def exported(text: str) -> tuple[dict[str, str], set[str]]:
    """(family -> type from `# TYPE` lines, names of the samples present)."""
    families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    samples = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.MULTILINE))
    return families, samples


def is_exported(name: str, families: dict[str, str], samples: set[str]) -> bool:
    if name in samples or name in families or name in SYNTHETIC:
        return True
    base = next((name.removesuffix(s) for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
    return base is not None and families.get(base) == "histogram"


def test_promql_names_are_extracted_without_functions_labels_or_keywords() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, event) (rate(a_seconds_bucket{x="y z"}[5m]))) > 1'
        " and on(instance) b_total offset 5m / ignoring(code) c_up"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c_up"}


def test_alert_rules_are_well_formed() -> None:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    names = set()
    for group in document["groups"]:
        assert set(group) <= {"name", "rules", "interval"} and group["rules"], group
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert rule["alert"] not in names, f"duplicate alert {rule['alert']}"
            names.add(rule["alert"])
            assert metric_names(rule["expr"]), rule["alert"]
            assert rule["labels"]["severity"] in {"page", "warn"}
            assert {"summary", "description"} <= set(rule["annotations"])
            if "for" in rule:
                assert re.fullmatch(r"\d+[smhd]", rule["for"]), rule["for"]
    wanted = {
        "SocketAckSlow", "RestResponseSlow", "ErrorRateHigh", "DatabasePoolExhausted",
        "PolymarketUnreachable", "OddsStale", "RedisUnreachable", "RedisErrors", "AuditFailed",
        "NodeDown", "TooFewNodes",
    }  # fmt: skip
    assert wanted <= names
    promtool = shutil.which("promtool")
    if promtool:  # the full PromQL check where Prometheus' own tool is installed
        result = subprocess.run(  # noqa: S603 - fixed arguments
            [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_node_down_alerts_watch_the_scrape_job_of_every_node() -> None:
    """A node that stops answering is seen by Prometheus' own `up`, scraped as deploy/prometheus.yml
    names the job; a rule on the node's own metrics would go silent with it."""
    rules = {rule["alert"]: rule for rule in alert_rules()}
    scrape = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = [j["job_name"] for j in scrape["scrape_configs"] if j["job_name"] == "thisthat"]
    down, few = rules["NodeDown"], rules["TooFewNodes"]
    assert re.fullmatch(rf'up\{{job="{job}"\}} == 0', down["expr"].strip())
    assert down["for"] == "1m" and down["labels"]["severity"] == "page"
    assert metric_names(few["expr"]) == {"up"} and f'job="{job}"' in few["expr"]
    # Fewer than two answering, or none scraped at all (then `up` has no series to sum).
    assert re.search(r"sum\(up\{[^}]*\}\) < 2", few["expr"])
    assert "absent(up{" in few["expr"]
    assert metric_names(down["expr"]) <= SYNTHETIC


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus)"
)
def test_node_down_alerts_fire_when_a_node_stops_answering(tmp_path: Path) -> None:
    """Prometheus' rule unit tests: node1 stops answering at 2m45s; a minute later both alerts
    fire, and with no node scraped at all TooFewNodes still does."""
    rules = {rule["alert"]: rule for rule in alert_rules()}

    def expected(name: str, **labels: str) -> dict[str, Any]:
        annotations = {
            key: text.replace("{{ $labels.instance }}", labels.get("instance", ""))
            for key, text in rules[name]["annotations"].items()
        }
        return {
            "exp_labels": {**rules[name]["labels"], **labels},
            "exp_annotations": annotations,
        }

    down = {"job": "thisthat", "instance": "node1:3000"}
    tests = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": [
                    {"series": 'up{job="thisthat", instance="node1:3000"}', "values": "1x10 0x10"},
                    {"series": 'up{job="thisthat", instance="node2:3000"}', "values": "1x20"},
                ],
                "alert_rule_test": [
                    {"eval_time": "2m", "alertname": "NodeDown", "exp_alerts": []},
                    {"eval_time": "2m", "alertname": "TooFewNodes", "exp_alerts": []},
                    {"eval_time": "3m", "alertname": "NodeDown", "exp_alerts": []},
                    {
                        "eval_time": "4m",
                        "alertname": "NodeDown",
                        "exp_alerts": [expected("NodeDown", **down)],
                    },
                    {
                        "eval_time": "4m",
                        "alertname": "TooFewNodes",
                        "exp_alerts": [expected("TooFewNodes")],
                    },
                ],
            },
            {
                "interval": "15s",
                "input_series": [{"series": 'thisthat_redis_up{job="other"}', "values": "1x10"}],
                "alert_rule_test": [
                    {
                        "eval_time": "2m",
                        "alertname": "TooFewNodes",
                        "exp_alerts": [expected("TooFewNodes", job="thisthat")],
                    }
                ],
            },
        ],
    }
    path = tmp_path / "alerts_test.yml"
    path.write_text(yaml.safe_dump(tests))
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [str(PROMTOOL), "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert {"h", "w", "x", "y"} <= set(panel["gridPos"])


async def scrape(http: aiohttp.ClientSession, base_url: str) -> str:
    async with http.get(base_url + "/metrics") as response:
        assert response.status == 200
        return await response.text()


def value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert match, f"{sample} not in /metrics"
    return float(match.group(1))


@pytest.mark.timeout(60)
async def test_every_metric_in_the_dashboard_and_alerts_is_served(
    start_server: ServerFactory, db: asyncpg.Pool, http: aiohttp.ClientSession
) -> None:
    base_url, _ = await start_server(
        feed="replay:feeds/timelines/sample.jsonl", feed_odds_interval_s=0.2
    )
    player = await Player(base_url, http).signup()
    await player.connect()
    market = str(await insert_market(db))
    await player.ok(
        "bet:place", {"marketId": market, "side": "this", "amount": 10, "clientBetId": "d1"}
    )
    await player.error(
        "bet:place", {"marketId": market, "side": "this", "amount": 5, "clientBetId": "d2"}
    )
    await player.ok("leaderboard:get", {"period": "all"})

    async def feed_reported() -> bool:
        return "thisthat_feed_last_success_timestamp_seconds{" in await scrape(http, base_url)

    await eventually(feed_reported)
    families, samples = exported(await scrape(http, base_url))

    used: dict[str, set[str]] = {}
    for expr in dashboard_exprs(json.loads(DASHBOARD.read_text())):
        for name in metric_names(expr):
            used.setdefault(name, set()).add("dashboard")
    for rule in alert_rules():
        for name in metric_names(rule["expr"]):
            used.setdefault(name, set()).add(f"alert {rule['alert']}")
    missing = {
        name: where for name, where in used.items() if not is_exported(name, families, samples)
    }
    assert not missing, f"not in /metrics: {missing}"
    assert len(used) >= 25
    # What the issue asks the dashboard to show is there, by name.
    for name in (
        "thisthat_socket_event_seconds_bucket", "thisthat_errors_total",
        "thisthat_connected_sockets", "thisthat_active_users",
        "thisthat_push_fanout_seconds_bucket", "thisthat_feed_last_success_timestamp_seconds",
        "thisthat_cache_lookups_total", "thisthat_db_pool_in_use", "thisthat_db_query_seconds_bucket",
        "thisthat_event_loop_lag_seconds", "thisthat_bets_shed_total",
        "thisthat_user_balance_credits_bucket", "thisthat_audit_violations", "thisthat_redis_up",
    ):  # fmt: skip
        assert name in used, name
    await player.close()


async def test_metrics_report_fanout_pool_cache_and_balances(
    server: tuple[str, Any],
    new_player: PlayerFactory,
    db: asyncpg.Pool,
    http: aiohttp.ClientSession,
) -> None:
    rich = await new_player()
    await new_player()
    market = str(await insert_market(db))
    before = await scrape(http, server[0])
    await rich.ok(
        "bet:place", {"marketId": market, "side": "this", "amount": 100, "clientBetId": "f1"}
    )
    await rich.ok("reward:claim")
    await rich.next("balance")  # the push that crossed Redis and came back to this node
    await rich.ok("leaderboard:get", {"period": "all"})
    for _ in range(2):
        await rich.ok("market:get", {"marketId": market})
    after = await scrape(http, server[0])

    def grew(sample: str) -> float:
        return (value(after, sample) if sample in after else 0) - (
            value(before, sample) if sample in before else 0
        )

    assert grew("thisthat_push_fanout_seconds_count") >= 1
    assert grew("thisthat_db_query_seconds_count") >= 1
    # The market was inserted behind the cache's back: a miss, then read from the cache.
    assert grew('thisthat_cache_lookups_total{cache="markets",result="miss"}') >= 1
    assert grew('thisthat_cache_lookups_total{cache="markets",result="hit"}') >= 1
    assert grew('thisthat_cache_lookups_total{cache="leaderboard",result="hit"}') == 0
    assert value(after, "thisthat_db_pool_max") == 20
    assert value(after, "thisthat_redis_up") == 1
    assert value(after, "thisthat_markets_open") == 1
    # Balances were read at the first scrape (refreshed once a minute): two players at 1000.
    assert value(before, 'thisthat_user_balance_credits_bucket{le="500"}') == 0
    assert value(before, 'thisthat_user_balance_credits_bucket{le="1000"}') == 2
    assert value(before, "thisthat_user_balance_credits_count") == 2
    assert value(before, "thisthat_user_balance_credits_sum") == 2000


async def test_audit_result_reaches_metrics_on_every_node(
    service_urls: tuple[str, str],
    tmp_path: Path,
    server: tuple[str, Any],
    new_player: PlayerFactory,
    db: asyncpg.Pool,
    http: aiohttp.ClientSession,
) -> None:
    player = await new_player()
    code, _ = await thisthat(service_urls, tmp_path, "audit")
    assert code == 0
    passed = await scrape(http, server[0])
    assert value(passed, "thisthat_audit_violations") == 0
    assert value(passed, "thisthat_audit_last_run_timestamp_seconds") > 0

    await db.execute("UPDATE users SET balance = balance + 1 WHERE id = $1", player.user["id"])
    code, _ = await thisthat(service_urls, tmp_path, "audit")
    assert code == 1
    assert value(await scrape(http, server[0]), "thisthat_audit_violations") >= 1
