"""Restore drill (issue 5): sentinel rows, note the time (or create a named restore
point), DROP TABLE, point-in-time restore to before the drop (playbooks/db-restore.yml, scratch mode on the replica)
-> table and rows back with equal count and checksum.
Run: LAB_INVENTORY=... pytest tests/e2e/test_db_restore.py -s
"""
import json
import pathlib
import tempfile
import time

import pytest

from labkit import db

CHECKSUM = ("SELECT count(*) || ':' || md5(string_agg(id || '=' || payload, ',' ORDER BY id)) "
            "FROM drill_sentinel")


@pytest.fixture(scope="module")
def cluster():
    return db.drill_cluster()


@pytest.mark.parametrize("target_type", ["time", "name"])
def test_restore_to_before_drop_table(cluster, target_type):
    """target_type time: restore to a timestamp noted before the drop; name: to a
    restore point created with pg_create_restore_point() before the drop."""
    primary = cluster.primary()
    target_host = next((h for h in cluster.db if h != primary), primary)
    cluster.psql(primary, "SET ROLE socialsphere_owner; DROP TABLE IF EXISTS drill_sentinel; "
                 "CREATE TABLE drill_sentinel (id int PRIMARY KEY, payload text NOT NULL); "
                 "INSERT INTO drill_sentinel SELECT g, md5(g::text || random()::text) FROM generate_series(1, 5000) g",
                 db="socialsphere")
    expected = cluster.psql(primary, CHECKSUM, db="socialsphere")
    assert expected.startswith("5000:")
    time.sleep(1.5)
    if target_type == "time":
        target = cluster.psql(primary, "SELECT now()")
    else:
        target = f"before_drop_{int(time.time())}"
        cluster.psql(primary, f"SELECT pg_create_restore_point('{target}')")
    time.sleep(1.5)
    cluster.psql(primary, "DROP TABLE drill_sentinel", db="socialsphere")
    # archive the WAL holding the drop (check waits until the switched segment is in the repository)
    cluster.pgbackrest("check")
    assert cluster.psql(primary, "SELECT to_regclass('public.drill_sentinel') IS NULL", db="socialsphere") == "t"

    report = pathlib.Path(tempfile.mkdtemp(prefix="db-restore-")) / "report.json"
    cluster.playbook("db-restore.yml", {
        "db_restore_mode": "scratch",
        "db_restore_type": target_type,
        "db_restore_target": target,
        "db_restore_host": target_host,
        "db_restore_report": str(report),
        "db_restore_verify_queries": {"sentinel": CHECKSUM},
    })
    result = json.loads(report.read_text())
    restored = list(result["sentinel"][0].values())[0]
    print(f"restored to {target} on {target_host}: {restored} (expected {expected})")
    assert restored == expected
    # the scratch instance is gone again and the live cluster is untouched
    assert cluster.psql(primary, "SELECT to_regclass('public.drill_sentinel') IS NULL", db="socialsphere") == "t"
