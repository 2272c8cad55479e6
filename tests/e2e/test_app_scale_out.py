"""Scale-out under load: `labctl add app3` creates the host, the one documented command
(`ansible-playbook playbooks/scale-out.yml`) brings it into rotation; 0 failed requests.

Runs after the other app tests (file order) and leaves app3 in the lab; set
SSAI_E2E_SCALE_OUT_CLEANUP=1 to remove it again (labctl remove app3 + edge.yml).
"""
import os
import subprocess
import time

import pytest

from labutil import REPO, lab_inventory_data, run_playbook
from test_app_support import Edge, LoadGenerator, current_release, group_hosts, haproxy_servers

NEW_HOST = os.environ.get("SSAI_E2E_SCALE_OUT_HOST", "app3")


def test_scale_out_under_load(lab_inventory):
    if NEW_HOST in group_hosts(lab_inventory, "app"):
        pytest.skip(f"{NEW_HOST} is already in the lab")
    edge = Edge.from_inventory(lab_inventory)
    old_release = current_release(lab_inventory, group_hosts(lab_inventory, "app")[0])
    res = subprocess.run([str(REPO / "lab" / "labctl"), "add", NEW_HOST], cwd=REPO, capture_output=True,
                         text=True, timeout=900, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    inv = lab_inventory_data()
    assert NEW_HOST in group_hosts(inv, "app")

    with LoadGenerator(edge) as load:
        time.sleep(3)
        rc, out = run_playbook("scale-out.yml", "-e", f"socialsphere_release={old_release}", timeout=3000)
        time.sleep(15)  # slowstart: app3 takes its share while the load continues
    assert rc == 0, out[-5000:]
    assert load.result.total > 100
    assert load.result.failed == 0, load.result.summary()
    assert current_release(inv, NEW_HOST) == old_release
    for edge_host in group_hosts(inv, "edge"):
        servers = haproxy_servers(inv, edge_host)
        assert NEW_HOST in servers, f"{edge_host}: HAProxy does not know {NEW_HOST}"
        assert servers[NEW_HOST]["status"].startswith("UP"), servers[NEW_HOST]
        assert int(servers[NEW_HOST].get("stot") or 0) > 0, f"{edge_host}: {NEW_HOST} got no traffic"
    if os.environ.get("SSAI_E2E_SCALE_OUT_CLEANUP") == "1":
        subprocess.run([str(REPO / "lab" / "labctl"), "remove", NEW_HOST], cwd=REPO, check=True, timeout=600)
        rc, out = run_playbook("edge.yml")
        assert rc == 0, out[-3000:]
