"""The monitoring tier in the lab, after site.yml:
- the set of scrape targets Prometheus reports up equals the set the inventory
  implies (a missing or extra target fails), and nothing is down;
- no alert fires while everything is healthy;
- the blackbox probe of the public URL (the VIP) and of each edge host succeeds,
  with TLS verified and more than 14 days left on the certificate;
- real faults page and resolve: PostgreSQL stopped on the replica fires the
  replication alert in Alertmanager within its `for` plus an evaluation interval
  (plus the scrape that sees it), its email reaches the SMTP sink and its page
  the webhook sink; Gunicorn stopped on one app host fires HAProxy's
  backend-down alert and its email. Both faults run at once (they are
  independent) and are undone; each alert then resolves, with a RESOLVED email.
Prometheus and Alertmanager are asked from the monitoring host itself (they
listen on its private address, closed to every other host). Traffic stays on
lab addresses. Figures (fault -> alert -> email) are printed."""
from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from test_app_support import group_hosts, host_address, lab_all_vars, lab_exec

JOBS = {  # job -> groups whose hosts are its targets (roles/prometheus defaults)
    "node": ["all"], "postgres": ["db"], "haproxy": ["edge"], "nginx": ["edge"], "app": ["app"],
    "prometheus": ["monitoring"], "alertmanager": ["monitoring"], "blackbox_exporter": ["monitoring"],
}
FAULT_TIMEOUT = 300


class Monitoring:
    def __init__(self, inv: dict):
        self.inv = inv
        mon = group_hosts(inv, "monitoring")
        if not mon:
            pytest.skip("no monitoring host in the lab")
        self.host = mon[0]
        self.addr = host_address(inv, self.host)

    def get(self, port: int, path: str, **params) -> dict:
        url = f"http://{self.addr}:{port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        res = lab_exec(self.inv, self.host, "curl", "-fsS", "--max-time", "20", url, check=False, timeout=40)
        assert res.returncode == 0, f"GET {url} on {self.host}: {res.stderr.strip()}"
        return json.loads(res.stdout)

    def query(self, expr: str) -> list[dict]:
        data = self.get(9090, "/api/v1/query", query=expr)
        assert data["status"] == "success", data
        return data["data"]["result"]

    def alerts(self, name: str, host: str) -> list[dict]:
        """Alertmanager's alerts of that name about that host (every rule labels
        the host it is about as `host`): active, suppressed (inhibited) or not."""
        return self.get(9093, "/api/v2/alerts", filter=[f'alertname="{name}"', f'host="{host}"'])


def expected_targets(inv: dict) -> set[tuple[str, str]]:
    every = sorted(inv["_meta"]["hostvars"])
    out = set()
    for job, groups in JOBS.items():
        for g in groups:
            for h in every if g == "all" else group_hosts(inv, g):
                out.add((job, h))
    out.add(("blackbox", f"https://{lab_all_vars(inv)['lab_vip']}/readyz"))
    out |= {("blackbox", h) for h in group_hosts(inv, "edge")}
    return out


@pytest.fixture(scope="module")
def mon(lab_inventory):
    return Monitoring(lab_inventory)


def test_scrape_targets_up_equal_the_inventory(lab_inventory, mon):
    expected = expected_targets(lab_inventory)
    deadline = time.monotonic() + 90  # right after a (re)start the first scrapes are due
    while True:
        series = mon.query("up")
        up = {(s["metric"]["job"], s["metric"]["instance"]) for s in series if s["value"][1] == "1"}
        down = {(s["metric"]["job"], s["metric"]["instance"]) for s in series if s["value"][1] != "1"}
        if up == expected or time.monotonic() > deadline:
            break
        time.sleep(5)
    print(f"{len(up)} targets up: " + ", ".join(f"{j}/{i}" for j, i in sorted(up)))
    assert not expected - up, f"expected but not up: {sorted(expected - up)} (down: {sorted(down)})"
    assert not up - expected, f"up but not implied by the inventory: {sorted(up - expected)}"
    assert not down, f"targets down: {sorted(down)}"
    tiers = {(s["metric"]["job"], s["metric"]["instance"]): s["metric"].get("tier") for s in series}
    assert all(tiers.values()), f"targets without a tier label: {[k for k, v in tiers.items() if not v]}"


def test_public_probe_succeeds_with_a_valid_certificate(lab_inventory, mon):
    vip_url = f"https://{lab_all_vars(lab_inventory)['lab_vip']}/readyz"
    success = {s["metric"]["instance"]: float(s["value"][1]) for s in mon.query('probe_success{job="blackbox"}')}
    assert success.get(vip_url) == 1, success
    for edge in group_hosts(lab_inventory, "edge"):
        assert success.get(edge) == 1, (edge, success)
    days = mon.query('(probe_ssl_earliest_cert_expiry{job="blackbox",probe="public"} - time()) / 86400')
    assert days, "no certificate expiry from the public probe"
    left = float(days[0]["value"][1])
    print(f"public probe: certificate valid for {left:.1f} more days")
    assert left > 14
    status = mon.query('probe_http_status_code{job="blackbox",probe="public"}')
    assert status and status[0]["value"][1] == "200", status


def test_a_healthy_lab_fires_no_alert(mon):
    """Every rule evaluates against the real metrics without firing: a rule
    that names a metric wrongly or misreads a healthy state shows up here."""
    firing = mon.query('ALERTS{alertstate="firing"}')
    assert not firing, "alerts firing on a healthy lab: " + ", ".join(
        f"{a['metric']['alertname']}{{instance={a['metric'].get('instance')}}}" for a in firing)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_operator_reaches_the_uis_only_through_an_ssh_tunnel(lab_inventory, mon):
    """docs/runbooks/monitoring.md, "Reach the monitoring UIs": Prometheus and
    Alertmanager answer through `ssh -L` to the monitoring host, and not
    directly from the control node (not a monitoring host: the firewall drops it)."""
    hv = lab_inventory["_meta"]["hostvars"][mon.host]
    for port in (9090, 9093):
        with socket.socket() as s:
            s.settimeout(3)
            assert s.connect_ex((mon.addr, port)) != 0, f"{mon.addr}:{port} is reachable without the tunnel"
    local = {9090: _free_port(), 9093: _free_port()}
    forwards = [a for p, lp in local.items() for a in ("-L", f"127.0.0.1:{lp}:{mon.addr}:{p}")]
    tunnel = subprocess.Popen(["ssh", "-N", "-i", hv["ansible_ssh_private_key_file"], "-o", "StrictHostKeyChecking=no",
                               "-o", "UserKnownHostsFile=/dev/null", "-o", "ExitOnForwardFailure=yes",
                               *forwards, f"{hv['ansible_user']}@{mon.addr}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        answers = {}
        deadline = time.monotonic() + 30
        while len(answers) < len(local) and time.monotonic() < deadline:
            for port, lp in local.items():
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{lp}/-/ready", timeout=5) as r:  # noqa: S310
                        answers[port] = r.status
                except (urllib.error.URLError, OSError):
                    time.sleep(1)
        assert answers == {9090: 200, 9093: 200}, (answers, tunnel.poll())
    finally:
        tunnel.terminate()
        tunnel.wait(10)


def _primary_and_replica(inv):
    roles = {}
    for h in group_hosts(inv, "db"):
        out = lab_exec(inv, h, "runuser", "-u", "postgres", "--", "psql", "-tAc", "select pg_is_in_recovery()",
                       check=False).stdout.strip()
        roles[h] = out
    replicas = [h for h, r in roles.items() if r == "t"]
    primaries = [h for h, r in roles.items() if r == "f"]
    if not replicas or len(primaries) != 1:
        pytest.fail(f"needs one primary and a streaming replica: {roles}")
    return primaries[0], replicas[0]


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
    _, replica = _primary_and_replica(inv)
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
                    if _grep_new(inv, svc, maildir, mail_before, f"[FIRING:", name):
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
