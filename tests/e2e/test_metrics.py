"""Metrics the monitoring tier scrapes, read from the monitoring host exactly as
Prometheus would (HTTP from mon1 to each host's private address):
- node_exporter answers on every host;
- the backup host's node_exporter carries pgBackRest's textfile metrics: the
  repository answers, the stanza is ok, WAL is archived, and the newest full
  backup's age is a real, recent figure (a backup job that silently stopped
  shows as an age that keeps growing: that is what an alert watches);
- postgres_exporter on every database host is connected to its PostgreSQL, and
  the primary reports archived WAL and the age of the last archived segment.
Traffic stays on the lab network (mon1 -> lab addresses)."""
from __future__ import annotations

import re
import time

import pytest

from labkit.hosts import group_hosts, host_address, lab_exec

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def scrape(inv: dict, url: str) -> dict[str, list[tuple[str, float]]]:
    """GET url from the monitoring host; {metric: [(labels, value), ...]}."""
    mon = group_hosts(inv, "monitoring")
    if not mon:
        pytest.skip("no monitoring host in the lab")
    res = lab_exec(inv, mon[0], "curl", "-fsS", "--max-time", "10", url, check=False, timeout=30)
    assert res.returncode == 0, f"{mon[0]} cannot scrape {url}: {res.stderr.strip()}"
    out: dict[str, list[tuple[str, float]]] = {}
    for line in res.stdout.splitlines():
        m = SAMPLE.match(line)
        if m:
            out.setdefault(m.group(1), []).append((m.group(2) or "", float(m.group(3))))
    return out


def one(metrics: dict, name: str, label: str = "") -> float:
    values = [v for labels, v in metrics.get(name, []) if label in labels]
    assert values, f"metric {name}{{{label}}} missing"
    return values[0]


def test_node_exporter_on_every_host(lab_inventory):
    for host in sorted(lab_inventory["_meta"]["hostvars"]):
        metrics = scrape(lab_inventory, f"http://{host_address(lab_inventory, host)}:9100/metrics")
        assert "node_exporter_build_info" in metrics, host
        assert one(metrics, "node_time_seconds") > 0, host


def test_backup_age_and_archive_status_exported(lab_inventory):
    backups = group_hosts(lab_inventory, "backup")
    if not backups:
        pytest.skip("no backup host in the lab")
    host = backups[0]
    # The textfile is refreshed by a timer; refresh it now so the figure is current.
    lab_exec(lab_inventory, host, "systemctl", "start", "pgbackrest-metrics.service", timeout=180)
    metrics = scrape(lab_inventory, f"http://{host_address(lab_inventory, host)}:9100/metrics")
    assert one(metrics, "pgbackrest_up") == 1
    assert one(metrics, "pgbackrest_stanza_status_code") == 0
    assert one(metrics, "pgbackrest_archive_ok") == 1
    stop = one(metrics, "pgbackrest_last_backup_timestamp_seconds", 'type="full"')
    age = one(metrics, "pgbackrest_last_backup_age_seconds", 'type="full"')
    # The lab was built today: its full backup is real and younger than a day.
    assert 0 <= age < 86400, age
    assert abs((time.time() - stop) - age) < 900, (stop, age)


def test_postgres_exporter_connected(lab_inventory):
    dbs = group_hosts(lab_inventory, "db")
    if not dbs:
        pytest.skip("no database host in the lab")
    primaries = 0
    for host in dbs:
        url = f"http://{host_address(lab_inventory, host)}:9187/metrics"
        # After PostgreSQL restarts (a failover or switchover drill), the
        # exporter's first scrape finds its pooled connection dead, reports
        # pg_up 0 and reconnects: a second scrape must say 1 (alerts use a
        # `for:` longer than one scrape interval for this reason).
        for _ in range(3):
            metrics = scrape(lab_inventory, url)
            if one(metrics, "pg_up") == 1:
                break
            time.sleep(1)
        assert one(metrics, "pg_up") == 1, f"{host}: postgres_exporter is not connected to PostgreSQL"
        if "pg_stat_archiver_archived_count" in metrics and one(metrics, "pg_stat_archiver_archived_count") > 0:
            primaries += 1
            assert "pg_stat_archiver_last_archive_age" in metrics, f"{host}: no archive age metric"
    assert primaries >= 1, "no database host reports archived WAL (pg_stat_archiver)"
