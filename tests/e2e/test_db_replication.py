"""Database tier in a running environment: streaming replication, a row replicated,
pgBackRest check, full + differential backups listed, encrypted repository.
Run: LAB_INVENTORY=... pytest tests/e2e/test_db_replication.py
"""
import json
import time
import uuid

import pytest

from labkit import db


@pytest.fixture(scope="module")
def cluster():
    return db.drill_cluster(db_hosts=2, backup_hosts=1)


def test_streaming_and_row_replicated(cluster):
    primary = cluster.primary()
    replicas = [h for h in cluster.db if h != primary]
    states = cluster.psql(primary, "SELECT application_name || ':' || state FROM pg_stat_replication").split()
    assert sorted(states) == sorted(f"{r}:streaming" for r in replicas)
    marker = uuid.uuid4().hex
    cluster.psql(primary, "SET ROLE socialsphere_owner; CREATE TABLE IF NOT EXISTS e2e_repl (v text)", db="socialsphere")
    cluster.psql(primary, f"INSERT INTO e2e_repl VALUES ('{marker}')", db="socialsphere")
    for replica in replicas:
        for _ in range(30):
            if cluster.psql(replica, f"SELECT count(*) FROM e2e_repl WHERE v = '{marker}'", db="socialsphere") == "1":
                break
            time.sleep(1)
        else:
            raise AssertionError(f"row not on {replica}")


def test_pgbackrest_check_and_backups(cluster):
    cluster.pgbackrest("check")
    cluster.pgbackrest("--type=diff backup")
    info = json.loads(cluster.pgbackrest("--output=json info").stdout)[0]
    assert {"full", "diff"} <= {b["type"] for b in info["backup"]}
    assert info["cipher"] == "aes-256-cbc"


def test_repository_not_plaintext(cluster):
    head = cluster.run(cluster.backup[0], "head -c 8 /var/lib/pgbackrest/backup/socialsphere/backup.info", check=True)
    assert head.stdout == "Salted__"
