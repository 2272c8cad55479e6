"""Disaster drill: an app host and an edge host are destroyed under load and replaced by
new, empty machines (docs/runbooks/replace-host.md).

1. `playbooks/state-backup.yml` saves each edge host's /etc/letsencrypt (as the weekly
   job would have); the certificate the edge host serves is recorded.
2. Constant GETs through the VIP (LoadGenerator) run through all that follows, counted
   per phase.
3. Phase app: the first app host's container is removed (the machine is gone). Every
   HAProxy that is left marks it DOWN; requests go on to the other app hosts:
   **0 failed requests**.
4. Phase edge: the edge host that holds the VIP is removed too; the VIP moves to the
   other edge host (the gap is measured, as in test_edge_failover.py).
5. Phase replace: two new, empty machines with the same names (`labctl up`), then one
   `playbooks/replace-host.yml -e replace_host=<app>,<edge>`. The new app host runs the
   current release and is UP in every HAProxy; the new edge host serves **the same
   certificate as before** (restored from the saved copy, not issued again) and takes
   the VIP back after its preempt delay.

Prints the figures: failed requests per phase, the VIP gap, the time of each step. A
long drill (`make test-drills`, about 10 minutes).
Run: pytest -s tests/e2e/test_dr_app_edge_replaced.py
"""
import hashlib
import socket
import ssl
import subprocess
import time

import pytest

from edge_support import vip, wait_vip_holder
from labutil import parse_recap, run_playbook
from test_app_support import (
    Edge,
    LoadGenerator,
    container,
    current_release,
    group_hosts,
    haproxy_servers,
    host_address,
    lab_all_vars,
    labctl,
)


def served_certificate(inv, host):
    """SHA-256 of the certificate the edge host itself serves for the domain (not the VIP)."""
    domain = lab_all_vars(inv)["socialsphere_domain"]
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the fingerprint is what is compared
    with socket.create_connection((host_address(inv, host), 443), timeout=10) as sock, \
            ctx.wrap_socket(sock, server_hostname=domain) as tls:
        return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def wait_server(inv, edge_host, server, prefix, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = haproxy_servers(inv, edge_host).get(server, {}).get("status", "")
        if status.startswith(prefix):
            return True
        time.sleep(0.5)
    return False


def destroy(inv, host):
    subprocess.run(["docker", "rm", "-f", container(inv, host)], check=False, capture_output=True)
    gone = subprocess.run(["docker", "inspect", container(inv, host)], check=False, capture_output=True)
    assert gone.returncode != 0, f"{host} still exists"


def test_app_and_edge_host_destroyed_and_replaced_under_load(lab_inventory):
    apps, edges = group_hosts(lab_inventory, "app"), group_hosts(lab_inventory, "edge")
    if len(apps) < 2 or len(edges) < 2 or not group_hosts(lab_inventory, "backup"):
        pytest.skip("needs two app hosts, two edge hosts and a backup host")
    edge_lost = wait_vip_holder(lab_inventory)
    assert edge_lost, "no edge host holds the VIP"
    edge_left = next(h for h in edges if h != edge_lost)
    app_lost = apps[0]
    release = current_release(lab_inventory, app_lost)
    client = Edge.from_inventory(lab_inventory)
    figures = {"app_lost": app_lost, "edge_lost": edge_lost}

    rc, out = run_playbook("state-backup.yml")
    assert rc == 0, out[-3000:]
    certificate = served_certificate(lab_inventory, edge_lost)

    with LoadGenerator(client) as load_app:
        time.sleep(3)
        t0 = time.monotonic()
        destroy(lab_inventory, app_lost)
        for edge_host in edges:
            assert wait_server(lab_inventory, edge_host, app_lost, "DOWN", 30), f"{edge_host}: {app_lost} not DOWN"
        figures["app_marked_down_s"] = round(time.monotonic() - t0, 1)
        time.sleep(5)
    figures["load_app_phase"] = load_app.result.summary()
    assert load_app.result.total > 100
    assert load_app.result.failed == 0, f"requests failed when {app_lost} died: {load_app.result.summary()}"

    with LoadGenerator(client) as load_edge:
        time.sleep(3)
        t0 = time.monotonic()
        destroy(lab_inventory, edge_lost)
        assert wait_vip_holder(lab_inventory, want=edge_left, timeout=60) == edge_left, "the VIP did not move"
        figures["vip_moved_s"] = round(time.monotonic() - t0, 1)
        time.sleep(5)
    figures["load_edge_phase"] = load_edge.result.summary()

    with LoadGenerator(client, max_seconds=3600) as load_replace:
        t0 = time.monotonic()
        up = labctl(lab_inventory, "up", app_lost, edge_lost)
        assert up.returncode == 0, up.stdout + up.stderr
        t1 = time.monotonic()
        rc, out = run_playbook("replace-host.yml", "-e", f"replace_host={app_lost},{edge_lost}", timeout=3600)
        t2 = time.monotonic()
        assert rc == 0, out[-5000:]
        recap = parse_recap(out)
        assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in recap.values()), recap
        figures.update(new_machines_s=round(t1 - t0, 1), replace_playbook_s=round(t2 - t1, 1))
        for edge_host in edges:
            assert wait_server(lab_inventory, edge_host, app_lost, "UP", 120), f"{edge_host}: {app_lost} not UP"
        assert wait_vip_holder(lab_inventory, want=edge_lost, timeout=120) == edge_lost, \
            f"{edge_lost} did not take the VIP back"
        time.sleep(10)
    figures["load_replace_phase"] = load_replace.result.summary()

    assert current_release(lab_inventory, app_lost) == release
    assert served_certificate(lab_inventory, edge_lost) == certificate, \
        f"{edge_lost} serves another certificate: it was issued again instead of restored"
    figures["certificate"] = f"{certificate[:16]}... (the same before and after)"
    print("\n" + "\n".join(f"{k}: {v}" for k, v in figures.items()))
    assert vip(lab_inventory)
    # Requests through the edge that was rebuilt and the VIP moving back to it.
    assert load_replace.result.failed == 0, load_replace.result.summary()
