"""Controlled patch of the held packages (issue 4; playbooks/patch-held-packages.yml,
docs/runbooks/patching.md). A fresh lab has nothing to patch, so the drill makes
it: it installs the previous version from the archive (the release pocket) of
Nginx on both edge hosts and of PostgreSQL on both database hosts, as a host
that missed an update would have. Then:

- check-only lists them and changes nothing;
- the VIP holder refuses to be patched while its peer cannot take the VIP;
- the edge tier is patched under load through the VIP: both hosts end on the
  candidate version, the VIP moved away from the holder before its Nginx
  restarted, and the failed requests are counted and reported;
- the database tier: the replica is patched and streams again; the primary is
  refused (nothing changed on it) and is patched with patch_primary_in_place=true;
- a second run has nothing to patch.

A drill (several minutes): make test-drills. Run alone:
pytest tests/e2e/test_base_patch_held.py -s
"""
from __future__ import annotations

import re
import time

import pytest

from labkit import db
from labkit.edge import Edge, vip_holder, wait_vip_holder
from labkit.hosts import group_hosts, lab_exec
from labkit.inventory import parse_recap, run_playbook
from labkit.load import LoadGenerator


def installed(inv, host, package):
    return lab_exec(inv, host, "dpkg-query", "-W", "-f=${Version}", package).stdout.strip()


def sibling_packages(inv, host, package):
    """Installed binary packages built from the same source as `package`."""
    out = lab_exec(inv, host, "dpkg-query", "-W", "-f=${Package} ${source:Package} ${db:Status-Abbrev}\n").stdout
    source = next(line.split()[1] for line in out.splitlines() if line.split()[0] == package)
    return [line.split()[0] for line in out.splitlines()
            if len(line.split()) >= 3 and line.split()[1] == source and line.split()[2].startswith("ii")]


def older_version(inv, host, package):
    """The newest archive version of `package` older than the installed one, or None."""
    current = installed(inv, host, package)
    versions = []
    for line in lab_exec(inv, host, "apt-cache", "madison", package).stdout.splitlines():
        version = line.split("|")[1].strip()
        if version not in versions:
            versions.append(version)
    for version in versions:
        if lab_exec(inv, host, "dpkg", "--compare-versions", version, "lt", current, check=False).returncode == 0:
            return version
    return None


def downgrade(inv, host, package, version):
    pins = [f"{p}={version}" for p in sibling_packages(inv, host, package)]
    res = lab_exec(inv, host, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
                   "--allow-downgrades", "--no-install-recommends", *pins, check=False, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert installed(inv, host, package) == version


@pytest.fixture(scope="module")
def lab(lab_inventory):
    inv = lab_inventory
    edges, dbs = group_hosts(inv, "edge"), group_hosts(inv, "db")
    if len(edges) < 2 or len(dbs) < 2:
        pytest.skip("needs two edge and two db hosts")
    cluster = db.Cluster()
    versions = {}
    for host, package in [(h, "nginx") for h in edges] + [(h, f"postgresql-{cluster.version(h)}") for h in dbs]:
        lab_exec(inv, host, "timeout", "300", "apt-get", "update", "-q", timeout=600)
        older = older_version(inv, host, package)
        if older is None:
            pytest.skip(f"{host}: the archive has no older {package} than {installed(inv, host, package)}")
        versions[host] = (package, installed(inv, host, package), older)
    return inv, edges, dbs, versions


def test_edge_tier_is_patched_with_the_vip_moved_first(lab):
    inv, edges, _dbs, versions = lab
    holder = wait_vip_holder(inv, timeout=60)
    assert holder, "no edge host holds the VIP"
    peer = next(h for h in edges if h != holder)
    for host in edges:
        downgrade(inv, host, "nginx", versions[host][2])
    wait_vip_holder(inv, holder, timeout=60)

    # check-only: both listed, nothing changed
    rc, out = run_playbook("patch-held-packages.yml", "-e", "patch_limit=edge", "-e", "patch_check_only=true")
    assert rc == 0, out[-3000:]
    for host in edges:
        assert f"{host}: nginx" in out, out[-3000:]
        assert installed(inv, host, "nginx") == versions[host][2]

    # the holder's peer cannot take the VIP: refused, nothing changed
    lab_exec(inv, peer, "systemctl", "stop", "keepalived")
    try:
        rc, out = run_playbook("patch-held-packages.yml", "-e", f"patch_limit={holder}")
    finally:
        lab_exec(inv, peer, "systemctl", "start", "keepalived")
    assert rc != 0, "patched the VIP holder with no peer to take the VIP"
    assert "no other edge host could take" in out, out[-3000:]
    assert installed(inv, holder, "nginx") == versions[holder][2]
    assert vip_holder(inv) == holder
    assert lab_exec(inv, holder, "systemctl", "is-active", "keepalived").stdout.strip() == "active"
    time.sleep(5)  # the peer's keepalived is BACKUP again and passes its check (rise 2 x 2 s)

    edge = Edge.from_inventory(inv)
    moves = []
    with LoadGenerator(edge, max_seconds=1200) as load:
        time.sleep(3)
        t0 = time.monotonic()
        rc, out = run_playbook("patch-held-packages.yml", "-e", "patch_limit=edge", timeout=1200)
        seconds = time.monotonic() - t0
        # keepalived preempts back to the higher priority host after its delay:
        # keep the load running over that move too
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and vip_holder(inv) != holder:
            time.sleep(1)
        moves.append(vip_holder(inv))
        time.sleep(3)
    print(f"patch-held-packages.yml (edge): exit {rc} in {seconds:.0f}s; VIP back on {moves[-1]}; "
          f"{load.result.summary()}")
    assert rc == 0, out[-5000:]
    assert "Hand the VIP over" in out
    assert not load.ran_out
    assert load.result.total > 100
    for host in edges:
        assert installed(inv, host, "nginx") == versions[host][1], f"{host}: nginx not upgraded"
        for unit in ("nginx", "haproxy", "keepalived"):
            assert lab_exec(inv, host, "systemctl", "is-active", unit).stdout.strip() == "active", (host, unit)
    assert moves[-1] == holder, "the VIP did not come back to the higher priority host"
    # The VIP moves twice (away from the holder, then away from its peer when the
    # peer's turn comes). A move breaks each keep-alive connection open to the old
    # holder once, at its next request: at most one failure per load connection
    # per move, all of them connection errors; no HTTP error at all.
    assert set(load.result.statuses) == {200}, load.result.summary()
    assert load.result.failed <= 2 * load.threads, load.result.summary()


def test_db_tier_replica_patched_primary_refused_then_in_place(lab):
    inv, _edges, dbs, versions = lab
    cluster = db.Cluster()
    primary = cluster.primary()
    assert primary, "no primary is running"
    replica = next(h for h in dbs if h != primary)
    for host in (replica, primary):
        downgrade(inv, host, versions[host][0], versions[host][2])
    cluster.wait_streaming(primary, replica)

    rc, out = run_playbook("patch-held-packages.yml", "-e", "patch_limit=db", timeout=1200)
    assert rc != 0, "restarted the primary without patch_primary_in_place"
    assert "runs as the database primary" in out, out[-3000:]
    assert installed(inv, replica, versions[replica][0]) == versions[replica][1], "replica not upgraded"
    assert installed(inv, primary, versions[primary][0]) == versions[primary][2], "the refused primary changed"
    assert cluster.primary() == primary
    cluster.wait_streaming(primary, replica)

    rc, out = run_playbook("patch-held-packages.yml", "-e", "patch_limit=db", "-e", "patch_primary_in_place=true",
                           timeout=1200)
    assert rc == 0, out[-5000:]
    assert installed(inv, primary, versions[primary][0]) == versions[primary][1]
    assert cluster.primary() == primary
    cluster.wait_streaming(primary, replica)

    # nothing left: every host says so and nothing changes but the package lists
    rc, out = run_playbook("patch-held-packages.yml", "-e", "patch_limit=edge:db")
    assert rc == 0, out[-3000:]
    for host in group_hosts(inv, "edge") + dbs:
        assert re.search(rf"{host}( \(\w+\))?: nothing to patch", out), f"{host}: {out[-3000:]}"
    recap = parse_recap(out)
    assert all(r.get("failed", 0) == 0 for r in recap.values()), recap
