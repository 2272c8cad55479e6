"""certbot renew --force-renewal on the edge host holding the VIP, under load:
Nginx serves the new certificate serial with 0 failed requests. Then the same on
the other edge host (its HTTP-01 challenge is answered through the VIP holder's
peer fallback)."""
import time

from edge_support import CA_BUNDLE, Edge, group_hosts, lab_exec, served_serial, vip_holder
from test_app_support import LoadGenerator


def _renew(inv, host):
    res = lab_exec(inv, host, "env", f"REQUESTS_CA_BUNDLE={CA_BUNDLE}", "certbot", "renew",
                   "--force-renewal", "--no-random-sleep-on-renew", check=False, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr


def test_forced_renewal_under_load(lab_inventory):
    edge = Edge.from_inventory(lab_inventory)
    holder = vip_holder(lab_inventory)
    assert holder, "no edge host holds the VIP"
    before = served_serial(edge)
    with LoadGenerator(edge) as load:
        time.sleep(2)
        _renew(lab_inventory, holder)
        time.sleep(3)
    after = served_serial(edge)
    print(f"{holder}: serial {before} -> {after}; {load.result.summary()}")
    assert after != before
    assert load.result.total > 50
    assert load.result.failed == 0, load.result.summary()


def test_renewal_on_the_backup_edge_host(lab_inventory):
    holder = vip_holder(lab_inventory)
    others = [h for h in group_hosts(lab_inventory, "edge") if h != holder]
    for host in others:
        _renew(lab_inventory, host)  # validation hits the VIP holder, which asks its peers
