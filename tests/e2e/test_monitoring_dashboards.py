"""Every PromQL query of the Grafana dashboards (roles/grafana/files/dashboards)
is evaluated by the lab's Prometheus and accepted (status "success"): a
renamed metric still returns an empty result, but a syntax error, an unknown
function or a bad label matcher fails here before anyone opens a dashboard.
Grafana's variables are replaced as Grafana would expand them ($__rate_interval
-> 5m, "All" of a variable -> .*). Queries are sent from the monitoring host
to Prometheus on its private address (traffic stays on the lab network)."""
from __future__ import annotations

import json
import pathlib
import re

import pytest

from labkit.hosts import group_hosts, host_address, lab_exec

DASHBOARDS = pathlib.Path(__file__).resolve().parents[2] / "roles/grafana/files/dashboards"
# Grafana's built-in intervals, and "All" (allValue ".*") for the dashboards' variables.
SUBSTITUTIONS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$instance": ".*", "$tier": ".*"}
PROMETHEUS_PORT = 9090


def dashboard_queries() -> list[tuple[str, str]]:
    """[(id, PromQL)] for every Prometheus target of every dashboard."""
    queries = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        doc = json.loads(path.read_text())
        stack = list(doc["panels"])
        while stack:
            panel = stack.pop(0)
            stack.extend(panel.get("panels", []))
            for target in panel.get("targets", []):
                if target.get("datasource", panel.get("datasource", {})).get("type") != "prometheus":
                    continue
                expr = target["expr"]
                for var, value in SUBSTITUTIONS.items():
                    expr = expr.replace(var, value)
                queries.append((f"{path.stem}:{panel['title']}:{target['refId']}", expr))
    return queries


QUERIES = dashboard_queries()


def test_dashboards_have_queries():
    assert len(QUERIES) >= 30, QUERIES


@pytest.mark.parametrize("query", [q for _, q in QUERIES], ids=[i for i, _ in QUERIES])
def test_dashboard_query_is_accepted_by_prometheus(lab_inventory, query):
    assert not re.search(r"\$\w", query), f"unsubstituted Grafana variable in {query!r}"
    mon = group_hosts(lab_inventory, "monitoring")
    if not mon:
        pytest.skip("no monitoring host in the lab")
    url = f"http://{host_address(lab_inventory, mon[0])}:{PROMETHEUS_PORT}/api/v1/query"
    res = lab_exec(lab_inventory, mon[0], "curl", "-sS", "--max-time", "20", "--data-urlencode", f"query={query}",
                   url, check=False, timeout=40)
    assert res.returncode == 0, f"{mon[0]} cannot query {url}: {res.stderr.strip()}"
    body = json.loads(res.stdout)
    assert body.get("status") == "success", f"{query!r}: {body.get('errorType')}: {body.get('error')}"


# Series that exist only once something happened (a labelled counter has no
# series before its first increment): an empty result is right for them.
EVENT_ONLY = {"socialsphere_unhandled_exceptions_total", "socialsphere_emails_total"}


def metric_names(query: str) -> set[str]:
    """Metric names a PromQL query reads (not functions, labels or keywords)."""
    q = re.sub(r'"[^"]*"', '""', query)                       # string literals
    q = re.sub(r"\{[^}]*\}", "", q)                            # label matchers
    q = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", q)
    q = re.sub(r"\[[^\]]*\]", "", q)                           # range selectors
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", q):
        rest = q[m.end():].lstrip()
        if rest.startswith("(") or "_" not in m.group(0) and ":" not in m.group(0):
            continue
        names.add(m.group(0))
    return names


def test_dashboard_metrics_exist(lab_inventory):
    """A dashboard that names a metric the lab does not have shows an empty
    panel: every metric a query reads must exist (or be a recording rule)."""
    mon = group_hosts(lab_inventory, "monitoring")[0]
    base = f"http://{host_address(lab_inventory, mon)}:{PROMETHEUS_PORT}/api/v1"
    known = set(json.loads(lab_exec(lab_inventory, mon, "curl", "-fsS", f"{base}/label/__name__/values").stdout)["data"])
    rules = json.loads(lab_exec(lab_inventory, mon, "curl", "-fsS", f"{base}/rules").stdout)["data"]["groups"]
    known |= {r["name"] for g in rules for r in g["rules"] if r["type"] == "recording"}
    missing = {}
    for qid, query in QUERIES:
        for name in metric_names(query) - known - EVENT_ONLY:
            missing.setdefault(name, []).append(qid)
    assert not missing, f"metrics the lab's Prometheus does not know: {missing}"
