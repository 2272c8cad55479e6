"""Five failed SSH logins from a lab host get that host banned (connections
refused) and the ban lifts after the ban time (the lab sets
fail2ban_sshd_bantime: 60, so the test takes about 2 minutes).

fail2ban logs to the journal: the ban is in the victim's journal, where the
recidive jail's filter finds it (one more match than before the attack), and in
the central journal on the monitoring host.

Attacker and victim are lab hosts; traffic only between lab addresses.
"""
from __future__ import annotations

import json
import time

import pytest

from labkit.hosts import fail2ban_banned, lab_exec

ATTACKER_GROUP, VICTIM_GROUP = "app", "db"
UFW_LIMIT_WINDOW = 30
REMOTE_DIR = "/var/log/journal/remote"
CENTRAL_TIMEOUT = 60


def tcp_from(inv, host, ip, port=22):
    """'open', 'refused' or 'timeout' for a TCP connect from a lab host."""
    code = ("import socket,sys\ns=socket.socket();s.settimeout(3)\n"
            "try:\n s.connect((sys.argv[1],int(sys.argv[2])));print('open')\n"
            "except ConnectionRefusedError:\n print('refused')\n"
            "except OSError:\n print('timeout')\n")
    return lab_exec(inv, host, "python3", "-c", code, ip, str(port)).stdout.strip()


def banned(inv, victim):
    return fail2ban_banned(inv, victim, "sshd")


def failures(inv, victim):
    out = lab_exec(inv, victim, "fail2ban-client", "status", "sshd").stdout
    for line in out.splitlines():
        if "Currently failed:" in line:
            return int(line.split(":")[1])
    raise AssertionError(out)


def recidive_matches(inv, victim):
    """Ban entries the recidive jail's filter finds in the victim's journal
    (fail2ban-regex with the filter's own journalmatch)."""
    out = lab_exec(inv, victim, "fail2ban-regex", "systemd-journal", "recidive", timeout=120).stdout
    for line in out.splitlines():
        if line.startswith("Failregex:"):
            return int(line.split()[1])
    raise AssertionError(out)


def central_bans(inv, victim, address):
    """fail2ban's "[sshd] Ban <address>" entries of the victim in the central journal."""
    mons = inv.get("monitoring", {}).get("hosts", [])
    assert mons, "no monitoring host in the lab"
    hostname = lab_exec(inv, victim, "hostname").stdout.strip()
    res = lab_exec(inv, mons[0], "journalctl", f"--directory={REMOTE_DIR}", "--no-pager", "-o", "json",
                "--output-fields=MESSAGE", "SYSLOG_IDENTIFIER=fail2ban", f"_HOSTNAME={hostname}",
                check=False, timeout=60)
    return [e for e in map(json.loads, res.stdout.splitlines())
            if e.get("MESSAGE") == f"[sshd] Ban {address}"]


@pytest.fixture
def pair(lab_inventory):
    inv = lab_inventory
    attackers = inv.get(ATTACKER_GROUP, {}).get("hosts", [])
    victims = inv.get(VICTIM_GROUP, {}).get("hosts", [])
    if not attackers or not victims:
        pytest.skip("need an app and a db host in the lab")
    attacker, victim = attackers[0], victims[-1]
    a_ip = inv["_meta"]["hostvars"][attacker]["ansible_host"]
    v_ip = inv["_meta"]["hostvars"][victim]["ansible_host"]
    bantime = int(lab_exec(inv, victim, "fail2ban-client", "get", "sshd", "bantime").stdout.strip())
    assert bantime <= 90, f"lab ban time is {bantime}s: set fail2ban_sshd_bantime short in the lab"
    for jail in ("sshd", "recidive"):
        lab_exec(inv, victim, "fail2ban-client", "set", jail, "unbanip", a_ip, check=False)
    # Start from a clean slate, or fewer than five attempts would trigger the ban:
    # ufw's SSH rate limit (a 6th new connection within 30 s is rejected) must
    # not count connections the attacker made just before (an earlier test or
    # run), and the jail must hold no failures (they count for findtime; a
    # failed earlier run leaves some).
    findtime = int(lab_exec(inv, victim, "fail2ban-client", "get", "sshd", "findtime").stdout.strip())
    start = time.monotonic()
    while failures(inv, victim) and time.monotonic() < start + findtime + 30:
        time.sleep(5)
    assert failures(inv, victim) == 0, "the sshd jail still counts failures from earlier logins"
    time.sleep(max(0.0, start + UFW_LIMIT_WINDOW + 1 - time.monotonic()))
    yield inv, attacker, a_ip, victim, v_ip, bantime
    for jail in ("sshd", "recidive"):
        lab_exec(inv, victim, "fail2ban-client", "set", jail, "unbanip", a_ip, check=False)


def test_five_failed_logins_ban_then_unban(pair):
    inv, attacker, a_ip, victim, v_ip, bantime = pair
    assert "SYSTEMD-JOURNAL" in lab_exec(inv, victim, "fail2ban-client", "get", "logtarget").stdout
    recidive_before = recidive_matches(inv, victim)
    central_before = len(central_bans(inv, victim, a_ip))
    # No extra connection before the attempts: ufw's SSH rate limit (6 per
    # 30 s) must not drop one of the five.
    for i in range(5):
        r = lab_exec(inv, attacker, "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                  "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5",
                  "-o", "PreferredAuthentications=publickey", "-o", "IdentitiesOnly=yes",
                  "-i", "/dev/null", f"intruder{i}@{v_ip}", "true", check=False, timeout=30)
        assert r.returncode != 0
        assert "Permission denied" in r.stderr, r.stderr
        time.sleep(1)
    deadline = time.monotonic() + 30
    while a_ip not in banned(inv, victim) and time.monotonic() < deadline:
        time.sleep(1)
    assert a_ip in banned(inv, victim), lab_exec(inv, victim, "fail2ban-client", "status", "sshd").stdout
    banned_at = time.monotonic()
    assert tcp_from(inv, attacker, v_ip) == "refused"
    # another host is not affected
    others = [h for h in inv["_meta"]["hostvars"] if h not in (attacker, victim)]
    if others:
        assert tcp_from(inv, others[0], v_ip) == "open"
    # The ban is in the journal: the recidive jail counts it, and it reaches the
    # monitoring host.
    assert recidive_matches(inv, victim) == recidive_before + 1
    deadline = time.monotonic() + CENTRAL_TIMEOUT
    while len(central_bans(inv, victim, a_ip)) <= central_before and time.monotonic() < deadline:
        time.sleep(2)
    assert len(central_bans(inv, victim, a_ip)) == central_before + 1, \
        f"the ban of {a_ip} on {victim} is not in the central journal after {CENTRAL_TIMEOUT} s"
    # the ban lifts after the ban time
    deadline = banned_at + bantime + 30
    while time.monotonic() < deadline and tcp_from(inv, attacker, v_ip) != "open":
        time.sleep(3)
    assert a_ip not in banned(inv, victim)
    assert tcp_from(inv, attacker, v_ip) == "open"
