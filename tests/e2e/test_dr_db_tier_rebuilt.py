"""Disaster drill: the whole database tier is lost and rebuilt on new machines from
the backups (issue 12; docs/runbooks/db-tier-rebuild.md).

1. The worker timers stop on the app hosts (Gunicorn keeps serving), so nothing
   writes while the figures are taken. Sentinel rows go into a table of their own;
   every main table of the app (the restore verification's list,
   pgbackrest_verify_tables) and the sentinel table get a checksum; the app's answer
   to a read through the VIP is kept.
2. The primary switches its WAL segment; the drill waits until every repository
   holds it (nothing committed is only on the database hosts).
3. Both database containers are removed (the machines are gone), then two new,
   empty machines with the same names (`labctl up db1 db2`: base OS, no PostgreSQL).
4. `playbooks/rebuild-db-tier.yml -e rebuild_db_confirm=<primary>`: the newest
   backup restored to the end of the archived WAL on the primary, promoted, the
   replica cloned from it, the site converged, a full backup into every repository.
   (The drill adds socialsphere_app_timers_enabled=false so the checksums compare the
   restored data, not what the timers write afterwards; app.yml turns them back on.)
5. Checked: every checksum as before the disaster (rows lost: 0), the same primary,
   the replica streams, `pgbackrest check` passes for every repository, the app serves
   the same data through the VIP, a second run of the playbook refuses the healthy
   tier and changes nothing, and a second converge of the database tier (db.yml, or
   DB_E2E_SECOND_RUN=site.yml) reports changed=0.

Prints the figures (time to recovery in total and per phase, rows lost). A long drill
(`make test-drills`). Run alone: pytest -s tests/e2e/test_dr_db_tier_rebuilt.py
"""
import json
import pathlib
import tempfile
import time

import pytest

from labkit import db
from labkit.db import switch_wal, wait_archived
from labkit.edge import READ_PATH, Edge
from labkit.hosts import destroy, labctl
from ssai_facts import role_default  # noqa: E402

SENTINEL = "drill_tier_rebuilt"
# Every row of a table, in a stable order: count and md5 (the same query for any table).
CHECKSUM = ("SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') "
            "FROM {table} t")
STOP_TIMERS = "systemctl stop 'socialsphere-*.timer'"


@pytest.fixture(scope="module")
def cluster():
    return db.drill_cluster(db_hosts=2, backup_hosts=1, app=True, inventory_roles=True)


def checksums(cluster, host, tables):
    return {t: cluster.psql(host, CHECKSUM.format(table=t), db="socialsphere") for t in tables}


def test_database_tier_lost_and_rebuilt_from_the_backups(cluster, lab_inventory):
    primary = cluster.primary()
    replicas = [h for h in cluster.db if h != primary]
    apps = sorted(cluster.groups["app"])
    tables = list(role_default("pgbackrest_verify_tables")) + [SENTINEL]
    edge = Edge.from_inventory(lab_inventory)
    report = pathlib.Path(tempfile.mkdtemp(prefix="dr-db-tier-")) / "report.json"
    figures = {"primary": primary, "replicas": replicas}

    for host in apps:
        cluster.run(host, STOP_TIMERS, check=True)
    try:
        cluster.psql(primary, f"SET ROLE socialsphere_owner; DROP TABLE IF EXISTS {SENTINEL}; "
                     f"CREATE TABLE {SENTINEL} (id int PRIMARY KEY, payload text NOT NULL); "
                     f"INSERT INTO {SENTINEL} SELECT g, md5(g::text || random()::text) "
                     "FROM generate_series(1, 5000) g", db="socialsphere")
        before = checksums(cluster, primary, tables)
        status, served_before = edge.get(READ_PATH)
        assert status == 200, served_before
        segment = switch_wal(cluster, primary)
        wait_archived(cluster, segment)
        figures["last_segment_archived"] = segment

        t_lost = time.time()
        for host in cluster.db:
            destroy(lab_inventory, host)
        print(f"\n{', '.join(cluster.db)} destroyed; the repositories hold WAL up to {segment}")
        try:  # no database: /readyz answers 503, or not before the client's timeout
            figures["readyz_while_lost"], _ = edge.get("/readyz")
        except OSError as exc:
            figures["readyz_while_lost"] = type(exc).__name__

        up = labctl(lab_inventory, "up", *cluster.db)
        assert up.returncode == 0, up.stdout + up.stderr
        t_play = time.time()
        res = cluster.playbook("rebuild-db-tier.yml", {
            "rebuild_db_confirm": primary, "rebuild_db_report": str(report),
            "socialsphere_app_timers_enabled": False,
        }, timeout=5400)
        t_done = time.time()
        summary = json.loads(report.read_text())
        figures.update(new_machines_s=round(t_play - t_lost, 1), rebuild_playbook_s=round(t_done - t_play, 1),
                       time_to_recovery_s=round(t_done - t_lost, 1), phases_s=summary["seconds"],
                       restored=summary["restored"])
        print(f"rebuild-db-tier.yml: {res.elapsed:.0f}s")

        # the same cluster, the same data
        assert cluster.primary() == primary
        after = checksums(cluster, primary, tables)
        lost = int(before[SENTINEL].split(":")[0]) - int(after[SENTINEL].split(":")[0])
        figures["rows_lost"] = lost
        assert after == before, {t: (before[t], after[t]) for t in tables if before[t] != after[t]}
        for replica in replicas:
            cluster.wait_streaming(primary, replica)
        final = switch_wal(cluster, primary)
        for replica in replicas:
            deadline = time.time() + 60
            while cluster.psql(replica, CHECKSUM.format(table=SENTINEL), db="socialsphere",
                               check=False).stdout.strip() != before[SENTINEL]:
                assert time.time() < deadline, f"{replica} does not hold the restored data"
                time.sleep(1)

        # backups and WAL archiving go on, into every repository
        wait_archived(cluster, final)
        for host in cluster.backup:
            # `check` takes no --repo: on a repository host it checks the one repository configured there
            res_check = cluster.run(host, f"runuser -u pgbackrest -- pgbackrest --stanza={db.STANZA} check",
                                    timeout=300)
            assert res_check.returncode == 0, f"{host}: {res_check.stdout}{res_check.stderr}"
        figures["repositories"] = [r["summary"] for r in summary["repositories_after"]]

        # the app serves the data from before the disaster through the VIP
        status, served_after = edge.get(READ_PATH)
        assert status == 200, served_after
        assert json.loads(served_after) == json.loads(served_before)

        # a healthy tier: the rebuild refuses and changes nothing
        again = cluster.playbook("rebuild-db-tier.yml", {"rebuild_db_confirm": primary}, check=False)
        assert again.returncode != 0, "a second rebuild ran on the healthy tier"
        assert "the database tier is not gone" in again.stdout, again.stdout[-3000:]
        assert "Mark the rebuild as under way" not in again.stdout

        # a second converge of the database tier changes nothing
        db.run_db_yml_again(cluster, {"db_preflight": False}, figures)
        assert figures["second_run_changed"] == 0, f"{figures['second_run']} changed something after the rebuild"
    finally:
        # the worker timers again (also when a step above failed: the lab must work)
        res = cluster.playbook("app.yml", {"app_preflight": False}, check=False, timeout=1800)
        print("\n" + "\n".join(f"{k}: {v}" for k, v in figures.items()))
    assert res.returncode == 0, res.stdout[-4000:]
    cluster.psql(primary, f"DROP TABLE {SENTINEL}", db="socialsphere")
