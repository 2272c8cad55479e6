"""certbot renew --force-renewal on the edge host holding the VIP, under load:
Nginx serves the new certificate serial with 0 failed requests. Then the same on
the other edge host (its HTTP-01 challenge is answered through the VIP holder's
peer fallback)."""
import time

from labkit.edge import certbot_renew, served_serial, vip_holder
from labkit.hosts import group_hosts
from labkit.load import LoadGenerator


def test_forced_renewal_under_load(lab_inventory, edge):
    holder = vip_holder(lab_inventory)
    assert holder, "no edge host holds the VIP"
    before = served_serial(edge)
    with LoadGenerator(edge) as load:
        time.sleep(2)
        certbot_renew(lab_inventory, holder)
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
        certbot_renew(lab_inventory, host)  # validation hits the VIP holder, which asks its peers
