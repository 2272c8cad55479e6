"""certbot renew --force-renewal on the edge host holding the VIP, under load:
Nginx serves the new certificate serial with 0 failed requests. Then the same on
the other edge host (its HTTP-01 challenge is answered through the VIP holder's
peer fallback)."""
import time

from labkit.edge import CA_BUNDLE, served_serial, vip_holder
from labkit.hosts import group_hosts, lab_exec
from labkit.load import LoadGenerator


def _renew(inv, host):
    """certbot renew; a run that Pebble failed with badNonce is run again. Pebble
    rejects 5 % of nonces on purpose (lab_services_pebble_nonce_reject_percent) and
    certbot retries a rejected nonce once, so about one renewal in fifty fails with a
    second badNonce in a row; in production the next certbot.timer run (twice a day)
    is that retry. Any other failure fails the test at once."""
    for attempt in range(3):
        res = lab_exec(inv, host, "env", f"REQUESTS_CA_BUNDLE={CA_BUNDLE}", "certbot", "renew",
                       "--force-renewal", "--no-random-sleep-on-renew", check=False,
                       timeout=180)
        out = res.stdout + res.stderr
        if res.returncode == 0 or "badNonce" not in out:
            break
        print(f"{host}: renewal attempt {attempt + 1} failed with badNonce; running it again")
    assert res.returncode == 0, out


def test_forced_renewal_under_load(lab_inventory, edge):
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
