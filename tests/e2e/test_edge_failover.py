"""The edge host holding the VIP fails (keepalived killed without a goodbye
advert, its VIP address gone as with a dead host, Nginx and HAProxy stopped): the VIP moves to the other edge host and HTTPS
continues. Reports the gap in seconds (last success before -> first success after).
A success is any HTTPS answer verified against Pebble's root: the edge path is
under test here, not the app's readiness (app failures: test_app_failures.py)."""
import time

from labkit.edge import probe, vip, wait_vip_holder
from labkit.hosts import group_hosts, lab_all_vars, lab_exec

MAX_GAP_SECONDS = 15


def wait_vip_holder_on(inv, host, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = lab_exec(inv, host, "ip", "-4", "-o", "addr", "show", check=False).stdout
        if f" {vip(inv)}/" in out:
            return True
        time.sleep(0.5)
    return False


def test_edge_failover_gap(lab_inventory, edge):
    holder = wait_vip_holder(lab_inventory)
    prefix = lab_all_vars(lab_inventory)["lab_network_cidr"].split("/")[1]
    assert holder, "no edge host holds the VIP"
    assert probe(edge, "/readyz") is not None
    last_ok, first_ok_after, failed = time.monotonic(), None, 0
    try:
        lab_exec(lab_inventory, holder, "sh", "-c",
                 f"systemctl kill -s KILL keepalived; ip -4 addr del {vip(lab_inventory)}/{prefix} dev eth0; "
                 "systemctl stop nginx haproxy")
        t_fail = time.monotonic()
        deadline = t_fail + 60
        while time.monotonic() < deadline:
            status = probe(edge, "/readyz", timeout=1.0)
            now = time.monotonic()
            if status is not None:
                if failed:
                    first_ok_after = now
                    break
                last_ok = now
            else:
                failed += 1
            time.sleep(0.1)
        others = [h for h in group_hosts(lab_inventory, "edge") if h != holder]
        new_holder = next((h for h in others if wait_vip_holder_on(lab_inventory, h)), None)
    finally:
        lab_exec(lab_inventory, holder, "sh", "-c",
                 "ip -4 addr show; systemctl start haproxy nginx; systemctl restart keepalived")
    assert first_ok_after is not None, "HTTPS did not come back through the VIP within 60 s"
    gap = first_ok_after - last_ok
    print(f"failover {holder} -> {new_holder}: gap {gap:.1f} s ({failed} failed probes)")
    assert new_holder and new_holder != holder
    assert gap < MAX_GAP_SECONDS
    # the highest-priority host (back) holds the VIP after its preempt delay (30 s)
    hostvars = lab_inventory["_meta"]["hostvars"]
    preferred = max(group_hosts(lab_inventory, "edge"),
                    key=lambda h: int(hostvars[h].get("keepalived_priority", 100)))
    assert wait_vip_holder(lab_inventory, want=preferred, timeout=90) == preferred
    time.sleep(2)
    assert probe(edge, "/readyz") is not None
