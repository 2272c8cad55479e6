"""Alerts that fire, notify and resolve, in the lab (in CI, last of `make test-e2e`;
about 4 min). PostgreSQL stopped on the replica fires the replication alert in
Alertmanager within its `for` plus an evaluation interval (plus the scrape that
sees it), its email reaches the SMTP sink and its page the webhook sink;
Gunicorn stopped on one app host fires HAProxy's backend-down alert and its
email. Both faults run at once (they are independent) and are undone; each
alert then resolves, with a RESOLVED email. Figures (fault -> alert -> email)
are printed. Traffic stays on lab addresses."""
from __future__ import annotations

import time

import pytest

from labkit.db import Cluster
from labkit.hosts import group_hosts, lab_exec
from labkit.monitoring import Monitoring

FAULT_TIMEOUT = 300


@pytest.fixture(scope="module")
def mon(lab_inventory):
    return Monitoring(lab_inventory)


def _primary_and_replica():
    """The primary and a replica that streams from it right now (db.Cluster)."""
    cluster = Cluster()
    primary = cluster.primary()
    replicas = [h for h in cluster.db if h != primary]
    if primary is None or not replicas:
        pytest.fail(f"needs one primary and a replica: primary {primary}, db hosts {cluster.db}")
    cluster.wait_streaming(primary, replicas[0], timeout=30)
    return primary, replicas[0]


def _sink_files(inv, host, directory):
    res = lab_exec(inv, host, "find", directory, "-type", "f", "-printf", "%f\\n", check=False)
    return set(res.stdout.split())


def _grep_new(inv, host, directory, before, *needles):
    """Names of files in directory that were not in `before` and contain every needle."""
    hits = []
    for name in sorted(_sink_files(inv, host, directory) - before):
        body = lab_exec(inv, host, "cat", f"{directory}/{name}", check=False).stdout
        if all(n in body for n in needles):
            hits.append(name)
    return hits


@pytest.fixture(scope="module")
def faults(lab_inventory, mon):
    """Stop PostgreSQL on the replica and Gunicorn on one app host together;
    record when each alert fires, notifies and resolves; always undo both."""
    inv = lab_inventory
    svc = group_hosts(inv, "labsvc")
    if not svc:
        pytest.skip("no lab services host (SMTP and webhook sinks)")
    svc = svc[0]
    maildir, hookdir = "/var/lib/smtp-sink/Maildir/new", "/var/lib/webhook-sink"
    _, replica = _primary_and_replica()
    app = group_hosts(inv, "app")[-1]
    version = lab_exec(inv, replica, "bash", "-c", "ls /etc/postgresql | sort -V | tail -1").stdout.strip()
    pg_unit = f"postgresql@{version}-main.service"
    mail_before, hooks_before = _sink_files(inv, svc, maildir), _sink_files(inv, svc, hookdir)
    watch = {"PostgresReplicaNotStreaming": replica, "HAProxyServerDown": app}
    fig = {name: {} for name in watch}
    t0 = time.monotonic()
    try:
        lab_exec(inv, replica, "systemctl", "stop", pg_unit)
        lab_exec(inv, app, "systemctl", "stop", "socialsphere.service")
        deadline = t0 + FAULT_TIMEOUT
        while time.monotonic() < deadline and not all("email" in f for f in fig.values()):
            for name, host in watch.items():
                f = fig[name]
                if "alert" not in f:
                    mine = mon.alerts(name, host)
                    if mine:
                        f["alert"] = time.monotonic() - t0
                        f["labels"] = mine[0]["labels"]
                        f["state"] = mine[0]["status"]["state"]
                if "alert" in f and "email" not in f:
                    if _grep_new(inv, svc, maildir, mail_before, "[FIRING:", name):
                        f["email"] = time.monotonic() - t0
            time.sleep(3)
        fig["PostgresReplicaNotStreaming"]["webhook"] = bool(
            _grep_new(inv, svc, hookdir, hooks_before, "PostgresReplicaNotStreaming", '"firing"'))
    finally:
        lab_exec(inv, replica, "systemctl", "start", pg_unit, check=False)
        lab_exec(inv, app, "systemctl", "start", "socialsphere.service", check=False)
    t1 = time.monotonic()
    deadline = t1 + FAULT_TIMEOUT
    while time.monotonic() < deadline and not all("resolved_email" in f for f in fig.values()):
        for name, host in watch.items():
            f = fig[name]
            if "resolved" not in f:
                if not mon.alerts(name, host):
                    f["resolved"] = time.monotonic() - t1
            if "resolved" in f and "resolved_email" not in f:
                if _grep_new(inv, svc, maildir, mail_before, "[RESOLVED]", name):
                    f["resolved_email"] = time.monotonic() - t1
        time.sleep(3)
    for name, f in fig.items():
        print(f"{name} ({watch[name]}): " + ", ".join(f"{k}={v:.0f}s" if isinstance(v, float) else f"{k}={v}"
                                                       for k, v in f.items() if k != "labels"))
    return fig


def test_replica_down_pages_by_email_and_webhook_and_resolves(faults):
    f = faults["PostgresReplicaNotStreaming"]
    assert "alert" in f, f"PostgresReplicaNotStreaming did not fire within {FAULT_TIMEOUT}s"
    assert f["labels"]["severity"] == "page"
    # for: 1m + one evaluation (15 s) + the scrape that sees it (15 s) + slack.
    assert f["alert"] < 60 + 15 + 15 + 30, f
    assert "email" in f, "no alert email in the SMTP sink"
    assert f["webhook"], "no page in the webhook sink"
    assert "resolved" in f, "the alert did not resolve after PostgreSQL started again"
    assert "resolved_email" in f, "no RESOLVED email"


def test_app_host_down_fires_backend_down_and_resolves(faults):
    f = faults["HAProxyServerDown"]
    assert "alert" in f, f"HAProxyServerDown did not fire within {FAULT_TIMEOUT}s"
    assert "email" in f, "no alert email in the SMTP sink"
    assert "resolved" in f and "resolved_email" in f, f
