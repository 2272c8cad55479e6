"""A database host's disk fills with WAL: the drill behind docs/runbooks/db-disk-full.md.

The replica's PostgreSQL stops (a broken replica); its replication slot on the
primary keeps every WAL segment from then on, so pg_wal grows with each write.
The drill runs the runbook's commands: the query that names the slot and how much
WAL it holds, dropping the slot (the emergency), CHECKPOINT (pg_wal no longer
starts at the slot's segment: the files are removed, or recycled as future
segments up to max_wal_size),
then the replica back and `playbooks/db.yml`, which creates the slot again; the
replica catches up from the pgBackRest archive (restore_command) and streams.
Prints the WAL held, the time until pg_wal lets it go and until the replica streams
again; no row lost.
Run: pytest -s tests/e2e/test_db_wal_retention.py (make test-drills)."""
import time
import uuid

import pytest

from labkit import db

# The runbook's query (docs/runbooks/db-disk-full.md), word for word.
SLOTS = ("SELECT slot_name, active, wal_status, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) "
         "FROM pg_replication_slots")
SEGMENTS = 8  # WAL segments written while the replica is down (16 MB each)


@pytest.fixture(scope="module")
def cluster():
    return db.drill_cluster(db_hosts=2, backup_hosts=1)


def _slots(cluster, host):
    rows = {}
    for line in cluster.psql(host, SLOTS).splitlines():
        name, active, status, held = line.split("|")
        rows[name] = {"active": active == "t", "wal_status": status, "held": int(float(held or 0))}
    return rows


def _oldest_segment(cluster, host):
    """Name of the oldest WAL segment file in pg_wal (names sort in WAL order)."""
    return cluster.psql(host, "SELECT min(name) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'")


def _pg_wal_bytes(cluster, host, version):
    out = cluster.run(host, f"du -sb /var/lib/postgresql/{version}/main/pg_wal", check=True).stdout
    return int(out.split()[0])


def test_a_slot_of_a_stopped_replica_holds_wal_until_dropped_then_the_replica_catches_up(cluster):
    primary = cluster.primary()
    assert primary, "no primary answers"
    replica = next(h for h in cluster.db if h != primary)
    version = cluster.version(primary)
    unit = f"postgresql@{version}-main.service"
    cluster.wait_streaming(primary, replica)
    slot = replica.lower()
    assert _slots(cluster, primary)[slot]["active"]
    figures = {}

    cluster.run(replica, f"systemctl stop {unit}", check=True)
    marker = uuid.uuid4().hex
    started = None
    try:
        cluster.psql(primary, "SET ROLE socialsphere_owner; CREATE TABLE IF NOT EXISTS e2e_wal (v text, pad text)",
                     db="socialsphere")
        wal_before = _pg_wal_bytes(cluster, primary, version)
        for i in range(SEGMENTS):
            cluster.psql(primary, f"INSERT INTO e2e_wal SELECT '{marker}-{i}', repeat('x', 1000) "
                                  "FROM generate_series(1, 2000); SELECT pg_switch_wal()", db="socialsphere")
        cluster.psql(primary, "CHECKPOINT")
        held = _slots(cluster, primary)[slot]
        figures["wal_held_mb"] = round(held["held"] / 2**20)
        figures["pg_wal_mb"] = round(_pg_wal_bytes(cluster, primary, version) / 2**20)
        assert not held["active"], held
        assert held["held"] >= SEGMENTS * 16 * 2**20 * 0.9, f"slot {slot} holds only {held}"
        assert _pg_wal_bytes(cluster, primary, version) > wal_before
        kept_from = cluster.psql(primary, f"SELECT pg_walfile_name(restart_lsn) FROM pg_replication_slots "
                                          f"WHERE slot_name = '{slot}'")
        assert _oldest_segment(cluster, primary) <= kept_from

        # The emergency: drop the slot; the next checkpoint (once the segments are
        # archived) removes or recycles what it held.
        started = time.monotonic()
        cluster.psql(primary, f"SELECT pg_drop_replication_slot('{slot}')")
        deadline = time.monotonic() + 120
        while True:
            cluster.psql(primary, "CHECKPOINT")
            oldest = _oldest_segment(cluster, primary)
            if oldest > kept_from or time.monotonic() > deadline:
                break
            time.sleep(2)
        figures["released_s"] = round(time.monotonic() - started, 1)
        assert slot not in _slots(cluster, primary)
        assert oldest > kept_from, f"pg_wal still starts at {oldest}, the dropped slot held from {kept_from}"
    finally:
        # The replica back: db.yml creates the slot again; what the primary no
        # longer has, the replica reads from the archive, then it streams.
        cluster.run(replica, f"systemctl start {unit}", check=True)
        converge = cluster.playbook("db.yml")
        cluster.wait_streaming(primary, replica, timeout=300)
    figures["db_yml_s"] = round(converge.elapsed)
    figures["back_streaming_s"] = round(time.monotonic() - started)
    assert _slots(cluster, primary)[slot]["active"]
    expected = cluster.psql(primary, f"SELECT count(*) FROM e2e_wal WHERE v LIKE '{marker}-%'", db="socialsphere")
    for _ in range(60):
        got = cluster.psql(replica, f"SELECT count(*) FROM e2e_wal WHERE v LIKE '{marker}-%'", db="socialsphere")
        if got == expected:
            break
        time.sleep(1)
    assert got == expected == str(SEGMENTS * 2000), (got, expected)
    cluster.psql(primary, "DROP TABLE e2e_wal", db="socialsphere")
    print(f"\nWAL retention drill ({primary} primary, {replica} stopped): {figures}; rows lost 0")
