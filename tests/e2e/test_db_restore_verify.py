"""Scheduled restore verification (roles/pgbackrest, pgbackrest-restore-verify):

- on every repository host the verification passes: `pgbackrest verify`, the
  newest backup restored with the archived WAL replayed to its end, amcheck and
  verify_heapam clean, the migration head and the main tables' row counts equal
  to the primary's (within the tolerance); its metrics say so, with the
  repository's number;
- drill: one file of the newest backup in the first repository is corrupted on
  purpose -> the run fails and names the check, the metric goes to 0 (and
  Prometheus sees it: PgBackRestRestoreVerifyFailed follows after its 5 min),
  the time of the last passing run is kept; the file put back -> it passes again.

Each run prints its figures (wall time, restore and WAL replay seconds).
Run: pytest -s tests/e2e/test_db_restore_verify.py
"""
import json
import re
import time

import pytest

from labkit import db
from labkit.monitoring import Monitoring

REPORT = "/var/lib/pgbackrest-verify/last-run.json"
PROM = "/var/lib/prometheus/node-exporter/pgbackrest_restore_verify.prom"
CHECKS = ["repository", "backup", "restore", "recovery", "indexes", "heap", "migration_head", "row_counts"]
SAVED = "/var/lib/pgbackrest-drill-original"


@pytest.fixture(scope="module")
def cluster():
    return db.drill_cluster()


def verification(cluster, host):
    """Run the verification now (the timer's service, as scheduled); its exit code, report, metrics."""
    started = time.monotonic()
    res = cluster.run(host, "systemctl start pgbackrest-restore-verify.service", timeout=3600)
    took = time.monotonic() - started
    report = json.loads(cluster.run(host, f"cat {REPORT}", check=True).stdout)
    prom = cluster.run(host, f"cat {PROM}", check=True).stdout
    print(f"\n{host}: restore verification {'passed' if report['success'] else 'FAILED'} in {took:.0f} s "
          f"(restore {report.get('restore_seconds')} s, WAL replay {report.get('recovery_seconds')} s, "
          f"backup {report.get('backup_label')}, {report.get('indexes_checked')} indexes, "
          f"{report.get('tables_checked')} tables); rows {json.dumps(report['rows'])}")
    return res.returncode, report, prom


def metric(prom, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in prom.splitlines():
        m = re.fullmatch(rf"{name}\{{([^}}]*)\}} (\S+)", line)
        if m and all(part in m.group(1).split(",") for part in want.split(",") if part):
            return float(m.group(2))
    raise AssertionError(f"{name}{{{want}}} not in\n{prom}")


def test_restore_verification_passes_on_every_repository(cluster):
    repos = set()
    for host in cluster.backup:
        rc, report, prom = verification(cluster, host)
        assert rc == 0, json.dumps(report, indent=2)
        assert report["success"] and report["error"] is None
        assert [c["check"] for c in report["checks"]] == CHECKS
        assert all(c["ok"] for c in report["checks"])
        assert report["indexes_checked"] >= 10 and report["tables_checked"] >= 10, report
        assert report["rows"]["users"]["restored"] >= 1, report["rows"]  # the admin at least
        for table, rows in report["rows"].items():
            assert abs(rows["restored"] - rows["primary"]) <= rows["allowed_difference"], (table, rows)
        repo = report["repo"]
        repos.add(repo)
        assert metric(prom, "pgbackrest_restore_verify_success", repo=repo) == 1
        assert metric(prom, "pgbackrest_restore_verify_last_success_timestamp_seconds", repo=repo) == report["finished"]
        assert metric(prom, "pgbackrest_restore_verify_check_success", check="row_counts") == 1
        assert metric(prom, "pgbackrest_restore_verify_rows", table="users") == report["rows"]["users"]["restored"]
    assert len(repos) == len(cluster.backup), f"each repository host verifies its own repository: {repos}"


def test_corrupted_backup_fails_the_verification_and_its_metric(cluster, lab_inventory):
    host = cluster.backup[0]
    before = json.loads(cluster.run(host, f"cat {REPORT}", check=True).stdout)
    assert before["success"], "runs after the passing verification"
    label = before["backup_label"]
    backup_dir = f"/var/lib/pgbackrest/backup/{db.STANZA}/{label}"
    # the largest data file of the newest backup (a table of one of the databases; not
    # backup.manifest, which pgBackRest reads from its .copy when it is damaged)
    victim = cluster.run(host, f"find {backup_dir}/pg_data -type f -printf '%s %p\\n' | sort -n | tail -1 | cut -d' ' -f2-",
                         check=True).stdout.strip()
    assert victim.startswith(backup_dir), victim
    size = int(cluster.run(host, f"stat -c %s {victim}", check=True).stdout)
    cluster.run(host, f"cp -p {victim} {SAVED}", check=True)
    try:
        cluster.run(host, f"printf 'CORRUPTED-BY-THE-RESTORE-VERIFY-DRILL' | dd of={victim} bs=1 seek={size // 2} "
                    "conv=notrunc status=none", check=True)
        rc, report, prom = verification(cluster, host)
        assert rc != 0, "the unit fails"
        assert not report["success"] and report["error"], report
        failed = [c["check"] for c in report["checks"] if not c["ok"]]
        print(f"{host}: corrupted {victim} ({size} bytes): failed check {failed}: {report['error']}")
        assert failed == ["repository"], report["checks"]  # pgbackrest verify finds it first
        repo = report["repo"]
        assert metric(prom, "pgbackrest_restore_verify_success", repo=repo) == 0
        assert metric(prom, "pgbackrest_restore_verify_check_success", check=failed[0]) == 0
        # the last passing run is still known (PgBackRestRestoreVerifyStale counts from it)
        assert metric(prom, "pgbackrest_restore_verify_last_success_timestamp_seconds") == before["finished"]
        mon = Monitoring(lab_inventory)
        deadline = time.monotonic() + 180
        while True:
            seen = mon.query(f'pgbackrest_restore_verify_success{{instance="{host}",repo="{repo}"}}')
            if seen and float(seen[0]["value"][1]) == 0:
                break
            assert time.monotonic() < deadline, f"Prometheus still reports {seen}"
            time.sleep(5)
    finally:
        cluster.run(host, f"cp -p {SAVED} {victim} && rm -f {SAVED}", check=True)
    rc, report, prom = verification(cluster, host)
    assert rc == 0 and report["success"], report
    assert metric(prom, "pgbackrest_restore_verify_success", repo=report["repo"]) == 1
