"""In-place restore drill (issue 5; docs/runbooks/db-restore.md, "in place"), the
runbook's steps in order: stop the writers, restore the primary in place to a
named restore point taken before a DROP TABLE, re-clone the replicas from it
(db-rejoin.yml -e postgresql_replica_rebuild=true), start the app again
(app.yml). Checked: the refusals change nothing; the dropped table is back with
the same count and checksum on the primary and on every replica; rows written
after the target are gone; pgBackRest's recovery settings are no longer in
postgresql.auto.conf; the replicas stream; db.yml changes nothing afterwards;
the app answers through the edge.
A drill (minutes, and it rewrites the lab's database): make test-drills.
Run alone: pytest tests/e2e/test_db_restore_in_place.py -s
"""
import time

import pytest

from labkit import db

CHECKSUM = ("SELECT count(*) || ':' || md5(string_agg(id || '=' || payload, ',' ORDER BY id)) "
            "FROM drill_in_place")
AUTO_CONF = "/var/lib/postgresql/{v}/main/postgresql.auto.conf"
STOP_WRITERS = "systemctl stop 'socialsphere-*.timer' socialsphere.service"


@pytest.fixture(scope="module")
def cluster():
    return db.drill_cluster(db_hosts=2, backup_hosts=1, inventory_roles=True)


def _auto_conf(cluster, host):
    return cluster.run(host, f"cat {AUTO_CONF.format(v=cluster.version(host))}", check=True).stdout


def test_in_place_restore_needs_the_confirmation(cluster):
    primary = cluster.primary()
    res = cluster.playbook("db-restore.yml", {"db_restore_mode": "in_place", "db_restore_host": primary,
                                              "db_restore_type": "immediate"}, check=False)
    assert res.returncode != 0, "an unconfirmed in-place restore ran"
    assert "db_restore_confirm" in res.stdout, res.stdout[-2000:]
    assert "Stop the cluster" not in res.stdout
    assert cluster.primary() == primary


def test_in_place_restore_refuses_a_replica(cluster):
    primary = cluster.primary()
    replica = next(h for h in cluster.db if h != primary)
    res = cluster.playbook("db-restore.yml", {"db_restore_mode": "in_place", "db_restore_host": replica,
                                              "db_restore_confirm": replica, "db_restore_type": "immediate"},
                           check=False)
    assert res.returncode != 0, "an in-place restore of a replica ran"
    assert "runs as a replica" in res.stdout, res.stdout[-2000:]
    cluster.wait_streaming(primary, replica, timeout=30)


def test_in_place_restore_then_rebuild_the_replicas(cluster):
    primary = cluster.primary()
    replicas = [h for h in cluster.db if h != primary]
    apps = sorted(cluster.groups.get("app", []))
    cluster.psql(primary, "SET ROLE socialsphere_owner; DROP TABLE IF EXISTS drill_in_place; "
                 "CREATE TABLE drill_in_place (id int PRIMARY KEY, payload text NOT NULL); "
                 "INSERT INTO drill_in_place SELECT g, md5(g::text || random()::text) "
                 "FROM generate_series(1, 3000) g", db="socialsphere")
    expected = cluster.psql(primary, CHECKSUM, db="socialsphere")
    assert expected.startswith("3000:")
    target = f"before_in_place_{int(time.time())}"
    cluster.psql(primary, f"SELECT pg_create_restore_point('{target}')")
    # after the target: a row that must be gone, then the damage
    cluster.psql(primary, "SET ROLE socialsphere_owner; CREATE TABLE drill_after_target (id int)",
                 db="socialsphere")
    cluster.psql(primary, "DROP TABLE drill_in_place", db="socialsphere")
    cluster.pgbackrest("check")  # the WAL holding the drop is in the repository

    # 1. stop every writer
    for host in apps:
        cluster.run(host, STOP_WRITERS, check=True)
    try:
        # 2. restore the primary in place
        res = cluster.playbook("db-restore.yml", {
            "db_restore_mode": "in_place", "db_restore_host": primary, "db_restore_confirm": primary,
            "db_restore_type": "name", "db_restore_target": target,
            "db_restore_verify_queries": {"in_place": CHECKSUM},
        }, timeout=1800)
        print(f"in-place restore of {primary} to {target}: {res.elapsed:.0f}s")
        assert cluster.primary() == primary
        assert cluster.psql(primary, CHECKSUM, db="socialsphere") == expected
        assert cluster.psql(primary, "SELECT to_regclass('public.drill_after_target') IS NULL",
                            db="socialsphere") == "t"
        auto = _auto_conf(cluster, primary)
        assert "recovery_target" not in auto and "restore_command" not in auto, auto

        # 3. re-clone the replicas
        res = cluster.playbook("db-rejoin.yml", {"postgresql_replica_rebuild": True}, timeout=1800)
        print(f"db-rejoin.yml (rebuild): {res.elapsed:.0f}s")
        for replica in replicas:
            cluster.wait_streaming(primary, replica)
        cluster.psql(primary, "SELECT pg_switch_wal()")
        for replica in replicas:
            deadline = time.time() + 60
            while cluster.psql(replica, CHECKSUM, db="socialsphere", check=False).stdout.strip() != expected:
                assert time.time() < deadline, f"{replica} does not have the restored table"
                time.sleep(1)
        res = cluster.playbook("db.yml", {"db_preflight": False})
        assert cluster.changed(res) == 0, "db.yml changed something after the rebuild"
        # 4. a full backup on the new timeline
        cluster.run(cluster.backup[0], "systemctl start pgbackrest-backup@full.service", check=True, timeout=1800)
        info = cluster.pgbackrest("info --output=json").stdout
        assert '"status":{"code":0' in info.replace(" ", ""), info[-1500:]
    finally:
        # 5. start the app again (also when a step above failed: the lab must serve)
        res = cluster.playbook("app.yml", {"app_preflight": False}, check=False, timeout=1800)
    assert res.returncode == 0, res.stdout[-4000:]
    for host in apps:
        assert cluster.run(host, "systemctl is-active socialsphere.service").stdout.strip() == "active"
        assert cluster.run(host, "curl -fsS -o /dev/null -w '%{http_code}' "
                                 f"http://{cluster.address(host)}:8000/readyz").stdout.strip() == "200"
    cluster.psql(primary, "DROP TABLE drill_in_place", db="socialsphere")
