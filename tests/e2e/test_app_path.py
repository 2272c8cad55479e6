"""The basic path of the app tier: the VIP reaches Gunicorn and the app is ready, every
app host serves /readyz on its private address only and runs the same release, and every
edge HAProxy sees every app host UP. Traffic only to the lab's own addresses."""
from __future__ import annotations

import json

from labkit.haproxy import haproxy_servers
from labkit.hosts import group_hosts, host_address, lab_exec
from labkit.release import current_release


def test_vip_reaches_gunicorn_and_the_app_is_ready(lab_inventory, edge):
    status, body = edge.get("/readyz")
    assert status == 200, body
    assert json.loads(body)["status"] == "ready"


def test_every_app_host_serves_readyz_on_its_private_address(lab_inventory):
    for host in group_hosts(lab_inventory, "app"):
        addr = host_address(lab_inventory, host)
        res = lab_exec(lab_inventory, host, "curl", "-fsS", f"http://{addr}:8000/readyz", check=False)
        assert res.returncode == 0, f"{host}: {res.stderr}"
        # Bound to the private address only, not to every interface.
        res = lab_exec(lab_inventory, host, "curl", "-fsS", "http://127.0.0.1:8000/healthz", check=False)
        assert res.returncode != 0, f"{host}: Gunicorn also answers on 127.0.0.1 (bind must be ansible_host)"


def test_every_app_host_runs_the_same_release(lab_inventory):
    releases = {h: current_release(lab_inventory, h) for h in group_hosts(lab_inventory, "app")}
    assert len(set(releases.values())) == 1, releases


def test_haproxy_sees_every_app_host_up(lab_inventory):
    apps = set(group_hosts(lab_inventory, "app"))
    for edge_host in group_hosts(lab_inventory, "edge"):
        servers = haproxy_servers(lab_inventory, edge_host)
        assert apps <= set(servers), f"{edge_host}: the app backend lacks {apps - set(servers)}"
        for name in apps:
            assert servers[name]["status"].startswith("UP"), (edge_host, name, servers[name]["status"])
