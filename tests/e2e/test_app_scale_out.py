"""Scale-out under load: `labctl add app3` creates the host, the one documented command
(`ansible-playbook playbooks/scale-out.yml`) brings it into rotation while users' traffic
flows through the VIP (userload: logins, dashboard reads, posts written, edited and
deleted); 0 failed requests, 0 acknowledged writes lost.

Runs after the other app tests (file order) and leaves app3 in the lab; set
SSAI_E2E_SCALE_OUT_CLEANUP=1 to remove it again (labctl remove app3 + edge.yml).
"""
import os
import time

import pytest

from labkit.edge import Edge, vip_holder
from labkit.haproxy import haproxy_servers
from labkit.hosts import group_hosts, labctl
from labkit.inventory import lab_inventory_data, run_playbook
from labkit.release import current_release
from labkit.userload import lab_user_load

NEW_HOST = os.environ.get("SSAI_E2E_SCALE_OUT_HOST", "app3")


def test_scale_out_under_load(lab_inventory):
    if NEW_HOST in group_hosts(lab_inventory, "app"):
        pytest.skip(f"{NEW_HOST} is already in the lab")
    edge = Edge.from_inventory(lab_inventory)
    old_release = current_release(lab_inventory, group_hosts(lab_inventory, "app")[0])
    res = labctl(lab_inventory, "add", NEW_HOST)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    inv = lab_inventory_data()
    assert NEW_HOST in group_hosts(inv, "app")

    # The load runs for the whole playbook (not bounded by the default 600 s).
    with lab_user_load(edge, max_seconds=3600) as load:
        time.sleep(3)
        t0 = time.monotonic()
        rc, out = run_playbook("scale-out.yml", "-e", f"socialsphere_release={old_release}", timeout=3000)
        seconds = time.monotonic() - t0
        time.sleep(15)  # slowstart: app3 takes its share while the load continues
    print(f"scale-out.yml: exit {rc} in {seconds:.0f}s; {load.result.summary()}")
    assert rc == 0, out[-5000:]
    assert not load.ran_out
    assert load.result.total > 100
    assert load.result.failed == 0, load.result.report()
    assert load.result.lost == [] and load.result.incomplete == [], load.result.report()
    assert current_release(inv, NEW_HOST) == old_release
    for edge_host in group_hosts(inv, "edge"):
        servers = haproxy_servers(inv, edge_host)
        assert NEW_HOST in servers, f"{edge_host}: HAProxy does not know {NEW_HOST}"
        assert servers[NEW_HOST]["status"].startswith("UP"), servers[NEW_HOST]
    # Client traffic only crosses the HAProxy of the edge host holding the VIP.
    holder = vip_holder(inv)
    stot = haproxy_servers(inv, holder)[NEW_HOST]["total"]
    print(f"{holder}: {NEW_HOST} served {stot} sessions")
    assert stot > 0, f"{holder}: {NEW_HOST} got no traffic"
    if os.environ.get("SSAI_E2E_SCALE_OUT_CLEANUP") == "1":
        res = labctl(inv, "remove", NEW_HOST)
        assert res.returncode == 0, res.stdout + res.stderr
        rc, out = run_playbook("edge.yml")
        assert rc == 0, out[-3000:]
