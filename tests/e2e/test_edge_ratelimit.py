"""A login flood from one client gets 429s (HAProxy's per-IP login limit) while
another client is served: its reads and its own login attempts reach the app.

The flood is sent on one keep-alive connection: fail2ban on the edge host holding
the VIP bans the flooder for new connections in both edge jails (socialsphere-auth:
failed logins; socialsphere-ratelimit: 429s), which the test waits for and asserts.
It lifts that ban afterwards (and checks it is gone): the flooder is the lab services
host, whose Pebble must keep reaching the edge for certificate renewals."""
import json
import threading
import time

from labkit import db
from labkit.edge import READ_PATH, domain, pebble_root, vip, vip_holder
from labkit.hosts import fail2ban_banned, group_hosts, host_address, lab_exec

FLOOD = 40
LOGIN_MAX = 10  # roles/haproxy: haproxy_ratelimit_login_max (per client IP and minute)
BAD_LOGIN = {"email": "flood@example.invalid", "password": "wrong-password"}


def _clear_login_counters(inv):
    """Start from empty login counters: HAProxy's per-IP table (1 min period) and
    the app's login throttle (per address 10 min, per email 3 min, in the
    database); a rerun would otherwise begin rate limited."""
    for edge_host in group_hosts(inv, "edge"):
        lab_exec(inv, edge_host, "ssai-haproxy", "api", "clear", "table", "st_login")
    cluster = db.Cluster()
    cluster.psql(cluster.primary(), "DELETE FROM login_throttles", db="socialsphere")


JAILS = ("socialsphere-auth", "socialsphere-ratelimit")  # roles/fail2ban, edge hosts


def _unban(inv, address):
    for edge_host in group_hosts(inv, "edge"):
        lab_exec(inv, edge_host, "fail2ban-client", "unban", address, check=False)


def _jails_banning(inv, edge_host, address):
    return {jail: address in fail2ban_banned(inv, edge_host, jail) for jail in JAILS}


def _wait_banned(inv, edge_host, address, timeout=30):
    """fail2ban reads the logs asynchronously: wait until both edge jails ban."""
    deadline = time.monotonic() + timeout
    banned = {}
    while time.monotonic() < deadline:
        banned = _jails_banning(inv, edge_host, address)
        if all(banned.values()):
            break
        time.sleep(0.5)
    return banned


def _login(edge):
    conn = edge.connection()
    try:
        conn.request("POST", "/api/v1/auth/login", body=json.dumps(BAD_LOGIN),
                     headers={"Content-Type": "application/json", "User-Agent": "ssai-e2e"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_login_flood_gets_429_while_others_are_served(lab_inventory, edge):
    # The flood comes from another lab address (the lab services host).
    flooder = group_hosts(lab_inventory, "labsvc")[0]
    root = pebble_root(lab_inventory)
    lab_exec(lab_inventory, flooder, "sh", "-c", f"cat > /tmp/edge-e2e-root.pem <<'EOF'\n{root}\nEOF")
    flooder_address = host_address(lab_inventory, flooder)
    _unban(lab_inventory, flooder_address)
    _clear_login_counters(lab_inventory)
    statuses = []

    def others():
        for _ in range(20):
            statuses.append(edge.get(READ_PATH)[0])

    t = threading.Thread(target=others)
    t.start()
    url = f"https://{domain(lab_inventory)}/api/v1/auth/login"
    # One curl, one keep-alive connection (the ban only stops new connections),
    # and a different unknown email per attempt: a credential-stuffing flood. The
    # app throttles attempts per email (5 per 3 min, then 429 rate_limited), so a
    # flood on a single email would show 5 failed logins, not LOGIN_MAX.
    common = (f"-s -o /dev/null -w '%{{http_code}} ' --cacert /tmp/edge-e2e-root.pem "
              f"--resolve {domain(lab_inventory)}:443:{vip(lab_inventory)} "
              f"-H 'Content-Type: application/json'")
    bodies = [json.dumps({**BAD_LOGIN, "email": f"flood{i}@example.invalid"}) for i in range(FLOOD)]
    script = "curl " + " --next ".join(f"{common} -d '{body}' {url}" for body in bodies)
    holder = vip_holder(lab_inventory)
    banned = {}
    try:
        flood = lab_exec(lab_inventory, flooder, "sh", "-c", script, timeout=120).stdout.split()
        # 30 failed logins and 30 429s: the edge jails ban the flooder (through ufw).
        banned = _wait_banned(lab_inventory, holder, flooder_address)
    finally:
        t.join(60)
        _unban(lab_inventory, flooder_address)
    print(f"{holder}: fail2ban bans of {flooder_address}: {banned}")
    assert banned and all(banned.values()), f"{holder} did not ban the flooder in every edge jail: {banned}"
    assert not any(_jails_banning(lab_inventory, holder, flooder_address).values()), "the ban was not lifted"
    # The other client (this machine) logs in (badly) after the flood: the app answers it.
    other_logins = [_login(edge) for _ in range(3)]
    print("flood:", flood, "others:", statuses, "other client's logins:", [s for s, _ in other_logins])
    assert len(flood) == FLOOD, flood
    # The first LOGIN_MAX reach the app (unknown user: 401), the rest are refused by HAProxy.
    assert flood[:LOGIN_MAX] == ["401"] * LOGIN_MAX, flood
    assert flood[LOGIN_MAX + 1:] == ["429"] * (FLOOD - LOGIN_MAX - 1), flood
    assert statuses == [200] * 20, statuses
    for status, body in other_logins:
        assert status == 401, (status, body[:200])
        assert json.loads(body)["error"] == "invalid_credentials", body[:200]
