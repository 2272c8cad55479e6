"""Disaster drill: the whole site is lost and rebuilt on new machines from the off-site
repository and the control node's state backup (issue 12; docs/runbooks/site-rebuild.md).

1. The worker timers stop on the app hosts (Gunicorn keeps serving), so nothing writes
   while the figures are taken. Sentinel rows go into a table of their own; every main
   table of the app (pgbackrest_verify_tables) and the sentinel table get a checksum;
   the app's answer to a read through the VIP and each edge host's certificate serial
   are kept.
2. `playbooks/state-backup.yml`: the edge hosts' /etc/letsencrypt and the manifest
   (with the release the app hosts run) on the control node and every backup host.
3. The primary switches its WAL segment; the drill waits until the surviving
   repository (the last backup host, backup2 in the lab: the "off-site" one) holds it.
4. Every lab host but that backup host and the lab's own services host (svc1: Pebble,
   DNS) is removed, then recreated empty (`labctl up ...`: base OS only).
5. `playbooks/rebuild-site.yml -e rebuild_repo=<its repository>` (the drill adds
   socialsphere_app_timers_enabled=false so the checksums compare the restored data).
6. Checked: the VIP serves the same data (every checksum and the read), each edge host
   serves its old certificate (same serial: restored, not issued), the app hosts run the
   release of the manifest, the replica streams, the rebuilt repository holds a backup
   and `pgbackrest check` passes on every backup host, every Prometheus target is up;
   then app.yml turns the timers back on and a second site.yml reports changed=0.

Prints the figures: time to recovery (destroy -> the VIP serves the data), the rebuild
playbook's time, rows lost (0 expected: everything up to the last archived WAL).
A long drill (`make test-drills`, about 18 min on the lab). Run alone:
pytest -s tests/e2e/test_dr_site_rebuilt.py
"""
import dataclasses
import json
import pathlib
import tempfile
import time

import pytest

from labkit import db
from labkit.db import repo_info, repo_of, switch_wal, wait_archived
from labkit.edge import READ_PATH, Edge, served_serial
from labkit.hosts import destroy, group_hosts, host_address, labctl, running_states
from labkit.inventory import run_playbook
from labkit.monitoring import Monitoring
from ssai_facts import role_default  # noqa: E402

SENTINEL = "drill_site_rebuilt"
CHECKSUM = ("SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') "
            "FROM {table} t")
STOP_TIMERS = "systemctl stop 'socialsphere-*.timer'"
TIERS = ("edge", "app", "db", "backup", "monitoring")


@pytest.fixture(scope="module")
def cluster():
    return db.drill_cluster(db_hosts=2, backup_hosts=2, app=True, inventory_roles=True)


def checksums(cluster, host, tables):
    return {t: cluster.psql(host, CHECKSUM.format(table=t), db="socialsphere") for t in tables}


def wait_serving(edge, expected, timeout=300):
    """Poll the VIP until the read answers 200 with the expected body; the time it did."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            status, body = edge.get(READ_PATH, timeout=5)
            if status == 200 and json.loads(body) == expected:
                return time.time()
            last = (status, body[:200])
        except (OSError, ValueError) as exc:
            last = type(exc).__name__
        time.sleep(1)
    raise AssertionError(f"the VIP does not serve the pre-disaster data: {last}")


def wait_targets_up(mon, timeout=180):
    """Every Prometheus target up (new machines: the first scrapes take a moment)."""
    deadline = time.time() + timeout
    while True:
        up = mon.query("up")
        down = sorted(f"{r['metric'].get('job')}/{r['metric'].get('instance')}" for r in up if r["value"][1] != "1")
        if up and not down:
            return len(up)
        assert time.time() < deadline, f"Prometheus targets not up: {down or 'no targets'}"
        time.sleep(5)


def test_whole_site_lost_and_rebuilt_from_the_off_site_repository(cluster, lab_inventory):
    survivor = cluster.backup[-1]
    repo = repo_of(cluster, survivor)
    rebuilt = sorted({h for tier in TIERS for h in group_hosts(lab_inventory, tier)} - {survivor})
    primary = cluster.primary()
    replicas = [h for h in cluster.db if h != primary]
    apps = sorted(cluster.groups["app"])
    edges = sorted(group_hosts(lab_inventory, "edge"))
    tables = list(role_default("pgbackrest_verify_tables")) + [SENTINEL]
    vip = Edge.from_inventory(lab_inventory)
    report = pathlib.Path(tempfile.mkdtemp(prefix="dr-site-")) / "db-report.json"
    figures = {"survivor": f"{survivor} (repository {repo})", "rebuilt": rebuilt}

    for host in apps:
        cluster.run(host, STOP_TIMERS, check=True)
    try:
        cluster.psql(primary, f"SET ROLE socialsphere_owner; DROP TABLE IF EXISTS {SENTINEL}; "
                     f"CREATE TABLE {SENTINEL} (id int PRIMARY KEY, payload text NOT NULL); "
                     f"INSERT INTO {SENTINEL} SELECT g, md5(g::text || random()::text) "
                     "FROM generate_series(1, 5000) g", db="socialsphere")
        before = checksums(cluster, primary, tables)
        status, served_before = vip.get(READ_PATH)
        assert status == 200, served_before
        served_before = json.loads(served_before)
        serials = {h: served_serial(dataclasses.replace(vip, address=host_address(lab_inventory, h))) for h in edges}
        releases = {h: s["release"] for h, s in running_states(lab_inventory).items()}
        assert len(set(releases.values())) == 1, f"the app hosts run different releases: {releases}"

        rc, out = run_playbook("state-backup.yml")
        assert rc == 0, out[-3000:]
        segment = switch_wal(cluster, primary)
        wait_archived(cluster, segment, hosts=[survivor])
        figures["last_segment_archived"] = segment

        t_lost = time.time()
        for host in rebuilt:
            destroy(lab_inventory, host)
        print(f"\n{len(rebuilt)} hosts destroyed; repository {repo} on {survivor} holds WAL up to {segment}")
        up = labctl(lab_inventory, "up", *rebuilt)
        assert up.returncode == 0, up.stdout + up.stderr
        t_play = time.time()
        res = cluster.playbook("rebuild-site.yml", {
            "rebuild_repo": repo, "rebuild_db_report": str(report),
            "socialsphere_app_timers_enabled": False,
        }, timeout=5400)
        t_done = time.time()
        t_serves = wait_serving(vip, served_before)
        summary = json.loads(report.read_text())
        figures.update(new_machines_s=round(t_play - t_lost, 1), rebuild_playbook_s=round(t_done - t_play, 1),
                       time_to_recovery_s=round(t_serves - t_lost, 1), db_phases_s=summary["seconds"],
                       restored=summary["restored"])
        print(f"rebuild-site.yml: {res.elapsed:.0f}s")

        # the same data, through the database and through the VIP
        assert cluster.primary() == primary
        after = checksums(cluster, primary, tables)
        figures["rows_lost"] = int(before[SENTINEL].split(":")[0]) - int(after[SENTINEL].split(":")[0])
        assert after == before, {t: (before[t], after[t]) for t in tables if before[t] != after[t]}

        # each edge host serves the certificate it had (restored, not issued again)
        for host in edges:
            edge_itself = dataclasses.replace(vip, address=host_address(lab_inventory, host))
            assert served_serial(edge_itself) == serials[host], f"{host} serves a new certificate"
        figures["certificate_serials"] = f"{serials} (the same before and after)"

        # the app runs the release it ran (from the state backup's manifest)
        now_running = {h: s["release"] for h, s in running_states(lab_inventory).items()}
        assert now_running == releases, (releases, now_running)
        figures["release"] = next(iter(releases.values()))

        # replication streams; backups and WAL go to both repositories, the rebuilt one included
        for replica in replicas:
            cluster.wait_streaming(primary, replica)
        final = switch_wal(cluster, primary)
        wait_archived(cluster, final)
        for host in cluster.backup:
            check = cluster.run(host, f"runuser -u pgbackrest -- pgbackrest --stanza={db.STANZA} check", timeout=300)
            assert check.returncode == 0, f"{host}: {check.stdout}{check.stderr}"
        for host in cluster.backup:
            if host != survivor:
                backups = repo_info(cluster, host).get("backup", [])
                assert backups, f"the rebuilt repository on {host} holds no backup"
        figures["repositories"] = [r["summary"] for r in summary["repositories_after"]]

        # monitoring: every target up
        figures["prometheus_targets_up"] = wait_targets_up(Monitoring(lab_inventory))
    finally:
        # the worker timers again (also when a step above failed: the lab must work)
        res = cluster.playbook("app.yml", {"app_preflight": False}, check=False, timeout=1800)
        print("\n" + "\n".join(f"{k}: {v}" for k, v in figures.items()))
    assert res.returncode == 0, res.stdout[-4000:]

    # a second converge of the whole site changes nothing
    again = cluster.playbook("site.yml", timeout=3600)
    changed = cluster.changed(again)
    print(f"site.yml after the rebuild: changed={changed} ({again.elapsed:.0f}s)")
    assert changed == 0, "site.yml changed something after the rebuild"
    cluster.psql(primary, f"DROP TABLE {SENTINEL}", db="socialsphere")
