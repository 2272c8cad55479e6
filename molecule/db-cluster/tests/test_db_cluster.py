"""Database tier: streaming replication, pgBackRest repository (encrypted), backups."""
import json
import os
import time
import uuid

STANZA = "socialsphere"
DISTRO = os.environ.get("MOLECULE_DISTRO", "ubuntu2404")
SYNC = os.environ.get("MOLECULE_DB_SYNC", "false") == "true"


def psql(host, sql, db="postgres"):
    return host.check_output(f"runuser -u postgres -- psql -XAtq -d {db} -c \"{sql}\"")


def pgbr(host, args):
    return host.run(f"runuser -u pgbackrest -- pgbackrest --stanza={STANZA} {args}")


def test_replica_streams(db1):
    rows = psql(db1, "SELECT application_name || ':' || state || ':' || sync_state FROM pg_stat_replication")
    assert rows.splitlines() == [f"dbc-db2-{DISTRO}:streaming:{'quorum' if SYNC else 'async'}"]


def test_replica_is_in_recovery_and_read_only(db2):
    assert psql(db2, "SELECT pg_is_in_recovery()") == "t"
    assert db2.run("runuser -u postgres -- psql -XAtq -d socialsphere -c 'CREATE TABLE x (i int)'").rc != 0


def test_row_replicates(db1, db2):
    marker = uuid.uuid4().hex
    psql(db1, "CREATE TABLE IF NOT EXISTS repl_probe (v text)", db="socialsphere")
    psql(db1, f"INSERT INTO repl_probe VALUES ('{marker}')", db="socialsphere")
    for _ in range(30):
        if psql(db2, f"SELECT count(*) FROM repl_probe WHERE v = '{marker}'", db="socialsphere") == "1":
            return
        time.sleep(1)
    raise AssertionError("row not replicated within 30 s")


def test_pgbackrest_check_passes(backup1):
    result = pgbr(backup1, "check")
    assert result.rc == 0, result.stderr


def test_full_and_diff_backups_listed(backup1):
    result = pgbr(backup1, "--type=diff backup")
    assert result.rc == 0, result.stderr
    info = json.loads(pgbr(backup1, "--output=json info").stdout)[0]
    types = {b["type"] for b in info["backup"]}
    assert {"full", "diff"} <= types
    assert info["status"]["code"] == 0
    assert info["cipher"] == "aes-256-cbc"


def test_repository_is_encrypted(backup1):
    # OpenSSL-encrypted files start with "Salted__"; plaintext info files start with "[backrest]"
    for path in (f"/var/lib/pgbackrest/backup/{STANZA}/backup.info",
                 f"/var/lib/pgbackrest/archive/{STANZA}/archive.info"):
        head = backup1.check_output(f"head -c 8 {path}")
        assert head == "Salted__", path
    plain = backup1.run(f"grep -rl --binary-files=text repl_probe /var/lib/pgbackrest/backup/{STANZA}")
    assert plain.rc == 1 and plain.stdout == ""


def test_tls_servers_listen_on_private_address(db1, backup1):
    assert db1.socket("tcp://172.30.92.31:8432").is_listening
    assert backup1.socket("tcp://172.30.92.41:8432").is_listening


def test_backup_timers_and_metrics(backup1):
    for timer in ("full", "diff", "incr"):
        assert backup1.service(f"pgbackrest-backup-{timer}.timer").is_enabled
    backup1.check_output("runuser -u pgbackrest -- /usr/local/sbin/pgbackrest-metrics")
    prom = backup1.file("/var/lib/prometheus/node-exporter/pgbackrest.prom").content_string
    assert 'pgbackrest_last_backup_age_seconds{stanza="socialsphere",type="full"}' in prom
    assert 'pgbackrest_archive_ok{stanza="socialsphere"} 1' in prom
