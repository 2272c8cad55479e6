"""The monitoring tier in the lab, after site.yml:
- the set of scrape targets Prometheus reports up equals the set the inventory
  implies (a missing or extra target fails), and nothing is down;
- no alert fires while everything is healthy;
- the blackbox probe of the public URL (the VIP) and of each edge host succeeds,
  with TLS verified and more than 14 days left on the certificate;
- the operator's SSH tunnel reaches the UIs, nothing else does.
Faults that fire, notify and resolve: test_monitoring_alerts.py (a drill).
Prometheus and Alertmanager are asked from the monitoring host itself (they
listen on its private address, closed to every other host). Traffic stays on
lab addresses."""
from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from labkit.hosts import group_hosts, lab_all_vars
from labkit.monitoring import Monitoring

JOBS = {  # job -> groups whose hosts are its targets (roles/prometheus defaults)
    "node": ["all"], "postgres": ["db"], "haproxy": ["edge"], "nginx": ["edge"], "app": ["app"],
    "prometheus": ["monitoring"], "alertmanager": ["monitoring"], "blackbox_exporter": ["monitoring"],
}


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
        # ssh -N normally ends on SIGTERM at once; once in CI it did not within 10 s
        # (after the checks had passed): kill it rather than fail the test on cleanup.
        tunnel.terminate()
        try:
            tunnel.wait(10)
        except subprocess.TimeoutExpired:
            tunnel.kill()
            tunnel.wait(10)
