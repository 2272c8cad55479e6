"""From a peer host, a TCP scan of every lab host finds exactly the ports the
topology allows for that peer (docs/contributing.md, "Ports") that have a
service listening, and nothing else.

The probed ports are the table's, a few extra well-known ones, and every port
that any host listens on (from `ss`), so an unexpected listener is found too.
The scan runs inside each peer (docker exec, python3 TCP connect with a short
timeout) against lab addresses only: bounded (ports below x hosts, once).
"""
from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

# The ports table of docs/contributing.md: port -> (on groups, from groups).
# 'all' = every host (as target or source); 'any' = from anywhere. SSH (22) is open to the lab
# network (firewall_ssh_allowed_cidrs), so from every peer.
TABLE = {
    22: (["all"], ["any"]),
    80: (["edge"], ["any"]),
    443: (["edge"], ["any"]),
    8000: (["app"], ["edge", "monitoring"]),
    5432: (["db"], ["app", "db", "backup"]),
    8432: (["db", "backup"], ["db", "backup"]),
    9100: (["all"], ["monitoring"]),
    9187: (["db"], ["monitoring"]),
    8405: (["edge"], ["monitoring"]),
    9113: (["edge"], ["monitoring"]),
    9090: (["monitoring"], ["monitoring"]),
    9093: (["monitoring"], ["monitoring"]),
    9094: (["monitoring"], ["monitoring"]),
    19532: (["monitoring"], ["all"]),
    14000: (["labsvc"], ["edge"]),
    15000: (["labsvc"], ["edge"]),
    1025: (["labsvc"], ["app", "monitoring"]),
    8025: (["labsvc"], ["monitoring"]),
}
# Also probed: ports a service might listen on that nobody may reach from a peer.
EXTRA_PORTS = [25, 3000, 3100, 5000, 6379, 8080, 8081, 8404, 8443, 9115, 12345]
GROUPS = ["edge", "app", "db", "backup", "monitoring", "labsvc"]

SCAN = r"""
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
targets = json.loads(sys.argv[1]); ports = json.loads(sys.argv[2])
def probe(tp):
    t, p = tp
    s = socket.socket(); s.settimeout(1.5)
    try:
        s.connect((t, p)); return (t, p, True)
    except OSError:
        return (t, p, False)
    finally:
        s.close()
with ThreadPoolExecutor(32) as ex:
    res = list(ex.map(probe, [(t, p) for t in targets for p in ports]))
print(json.dumps([[t, p] for t, p, ok in res if ok]))
"""


def groups_of(inv, host):
    return {g for g in GROUPS if host in inv.get(g, {}).get("hosts", [])}


def addr(inv, host):
    return inv["_meta"]["hostvars"][host]["ansible_host"]


def dexec(inv, host, *cmd, timeout=120):
    hv = inv["_meta"]["hostvars"][host]
    name = f"{hv.get('lab_name', 'ssai')}-{host}"
    return subprocess.run(["docker", "exec", name, *cmd], capture_output=True, text=True,
                          timeout=timeout, check=True).stdout


def allowed(inv, peer, target):
    pg, tg = groups_of(inv, peer), groups_of(inv, target)
    out = set()
    for port, (on, frm) in TABLE.items():
        if ("all" in on or tg & set(on)) and ({"any", "all"} & set(frm) or pg & set(frm)):
            out.add(port)
    return out


def listening(inv, host):
    """Ports with a listener reachable from outside (not loopback-only)."""
    ports = set()
    for line in dexec(inv, host, "ss", "-Hltn").splitlines():
        local = line.split()[3]
        ip, _, port = local.rpartition(":")
        ip = ip.strip("[]")
        if ip.startswith("127.") or ip == "::1" or "%lo" in ip:
            continue
        ports.add(int(port))
    return ports


def all_hosts(inv):
    return sorted(inv["_meta"]["hostvars"])


@pytest.fixture(scope="module")
def scan_results(lab_inventory):
    inv = lab_inventory
    hosts = all_hosts(inv)
    listen = {h: listening(inv, h) for h in hosts}
    # Every port any host listens on is probed from every peer, so a service
    # the table does not know about is found (and must be closed to all).
    ports = sorted(set(TABLE) | set(EXTRA_PORTS) | set().union(*listen.values()))

    def scan_from(peer):
        targets = [addr(inv, h) for h in hosts if h != peer]
        return peer, json.loads(dexec(inv, peer, "python3", "-c", SCAN, json.dumps(targets), json.dumps(ports)))

    # Peers scan at the same time (each probes every other host once per port):
    # most probes wait for their timeout (ufw drops), so this is wall-clock bound.
    with ThreadPoolExecutor(len(hosts)) as ex:
        results = dict(ex.map(scan_from, hosts))
    return listen, results


def test_ufw_active_everywhere(lab_inventory):
    for h in all_hosts(lab_inventory):
        assert "Status: active" in dexec(lab_inventory, h, "ufw", "status"), h


def test_scan_matches_topology(lab_inventory, scan_results):
    inv = lab_inventory
    listen, results = scan_results
    by_addr = {addr(inv, h): h for h in all_hosts(inv)}
    problems = []
    for peer, opened in results.items():
        found = {}
        for ip, port in opened:
            found.setdefault(by_addr[ip], set()).add(port)
        for target in all_hosts(inv):
            if target == peer:
                continue
            expected = allowed(inv, peer, target) & listen[target]
            got = found.get(target, set())
            if got != expected:
                problems.append(f"{peer} -> {target}: open {sorted(got)}, expected {sorted(expected)} "
                                f"(allowed {sorted(allowed(inv, peer, target))}, listening {sorted(listen[target])})")
    assert not problems, "\n".join(problems)


def test_filtering_is_proven(lab_inventory, scan_results):
    """The scan must prove filtering, not just absent services: after site.yml
    some listeners are closed to some peers (e.g. PostgreSQL to the edge hosts),
    the scan found none of those open, and it did reach allowed ports other
    than SSH (so a dead network cannot pass as a tight firewall)."""
    inv = lab_inventory
    listen, results = scan_results
    by_addr = {addr(inv, h): h for h in all_hosts(inv)}
    opened = {(peer, by_addr[ip], port) for peer, found in results.items() for ip, port in found}
    blocked = [(p, t, port) for p in all_hosts(inv) for t in all_hosts(inv) if p != t
               for port in sorted(listen[t] - allowed(inv, p, t))]
    assert blocked, "no service listens on a port some peer may not reach: deploy site.yml first"
    leaked = [b for b in blocked if b in opened]
    assert not leaked, f"reachable although the topology forbids it: {leaked}"
    assert {port for _, _, port in opened} - {22}, "the scan reached no allowed service besides SSH"
    # Concrete cases of the topology, when the lab has those tiers.
    for peer_group, target_group, port in (("edge", "db", 5432), ("db", "app", 8000), ("app", "edge", 8405)):
        peers = inv.get(peer_group, {}).get("hosts", [])
        targets = [t for t in inv.get(target_group, {}).get("hosts", []) if port in listen[t]]
        for p in peers:
            for t in targets:
                assert (p, t, port) not in opened, f"{p} reaches {t}:{port}"
        assert not peers or targets, f"nothing listens on {port} on {target_group}: deploy site.yml first"
