"""The internal CA rotated on the lab while the database is written to and every host
ships its journal: the commands of docs/runbooks/rotate-secrets.md ("The internal CA").

1. A writer commits one row per transaction through the app's connection URL
   (multi-host, sslmode=verify-full) against a CA file of the drill's own that holds what
   the hosts trust (the lab's CA, then both, then the new one: libpq reads it per connection).
2. playbooks/rotate-ca.yml -e rotate_ca_phase=add, switch, retire, each run twice (the
   second run: changed=0). After each phase the writer still commits and a fresh log line
   from every host reaches the monitoring host.
3. Afterwards: every recorded certificate on every host is issued by the new CA (issuer
   name, and `openssl verify` against the host's CA file, which holds the new CA only),
   the replicas stream, `pgbackrest check` passes, no acknowledged write is missing from
   the primary, the old CA's key is out of .lab/ca (a dated 0700 directory in
   .lab/ca-retired/), and site.yml reports changed=0.

The lab is left with the new CA in effect (.lab/ca), so later drills and site.yml run as
before. A rotation that stops half-way is finished by the drill (the remaining phases),
saying so. Prints each phase's time. A long drill: `make test-drills`.
"""
from __future__ import annotations

import json
import os
import re
import stat
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from labkit import db
from labkit.hosts import group_hosts, lab_exec
from labkit.inventory import REPO, parse_recap, run_playbook
from labkit.writer import Writer, requires_app_python

pytestmark = requires_app_python

CA_DIR = REPO / ".lab" / "ca"
RETIRED_DIR = REPO / ".lab" / "ca-retired"
ISSUED_DIR = "/var/lib/socialsphere-internal-ca/issued"
CA_FILE = "/etc/ssl/certs/socialsphere-internal-ca.pem"
REMOTE_DIR = "/var/log/journal/remote"


@pytest.fixture(scope="module")
def cluster():
    return db.drill_cluster(db_hosts=2, backup_hosts=1)


def rotate(phase: str) -> tuple[int, str, float]:
    t0 = time.monotonic()
    rc, out = run_playbook("rotate-ca.yml", "-e", f"rotate_ca_phase={phase}", timeout=3600)
    return rc, out, time.monotonic() - t0


def during(windows: list[tuple[str, float, float]], when: float) -> str:
    """Which rotate-ca.yml run a failed write attempt fell in (or between runs)."""
    return next((f"during {name}" for name, start, end in windows if start <= when <= end), "between the runs")


def changed_hosts(out: str) -> dict:
    return {h: c["changed"] for h, c in parse_recap(out).items() if c.get("changed")}


def ca_text(*names: str) -> str:
    return "".join((CA_DIR / name / "ca.crt" if name else CA_DIR / "ca.crt").read_text() for name in names)


def logs_ship(inv: dict, mon: str, timeout: float = 90) -> float:
    """A fresh line logged on every host reaches the monitoring host; the seconds it took."""
    marker = f"ssai-rotate-ca-{uuid.uuid4().hex}"
    names = {}
    for host in sorted(inv["_meta"]["hostvars"]):
        names[host] = lab_exec(inv, host, "hostname").stdout.strip()
        lab_exec(inv, host, "logger", "-t", "ssai-e2e", f"{marker} from {host}")
    t0 = time.monotonic()
    while True:
        res = lab_exec(inv, mon, "journalctl", f"--directory={REMOTE_DIR}", "--no-pager", "-o", "json",
                       "--output-fields=_HOSTNAME,MESSAGE", "SYSLOG_IDENTIFIER=ssai-e2e", check=False, timeout=60)
        found = {e.get("_HOSTNAME") for e in map(json.loads, res.stdout.splitlines()) if marker in str(e.get("MESSAGE"))}
        missing = sorted(h for h, n in names.items() if n not in found)
        if not missing:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < timeout, f"no fresh log line from {missing} on {mon} after {timeout} s"
        time.sleep(2)


def certificates(inv: dict) -> dict[str, dict[str, str]]:
    """{host: {certificate path: issuer line}} of every certificate issue_cert.yml recorded."""
    found = {}
    for host in sorted(inv["_meta"]["hostvars"]):
        paths = [json.loads(lab_exec(inv, host, "cat", f).stdout)["cert"] for f in
                 lab_exec(inv, host, "sh", "-c", f"ls {ISSUED_DIR}/*.json").stdout.split()]
        found[host] = {p: lab_exec(inv, host, "openssl", "x509", "-noout", "-issuer", "-in", p).stdout.strip()
                       for p in paths}
    return found


def finish_rotation() -> list[str]:
    """Whatever happened: the phases a stopped rotation still needs, run (the lab keeps a working CA)."""
    ran = []
    for phase, pending in (("switch", CA_DIR / "next"), ("retire", CA_DIR / "previous")):
        if pending.exists():
            rc, out, _ = rotate(phase)
            ran.append(f"{phase} (rc={rc})")
            if rc != 0:
                print(out[-3000:])
                break
    return ran


def test_internal_ca_rotation_under_writes(cluster, lab_inventory):
    inv = lab_inventory
    mon = group_hosts(inv, "monitoring")[0]
    assert not (CA_DIR / "next").exists() and not (CA_DIR / "previous").exists(), \
        "a CA rotation is in progress in .lab/ca: finish it first (docs/runbooks/rotate-secrets.md)"
    old_subject = lab_exec(inv, cluster.db[0], "openssl", "x509", "-noout", "-subject", "-in", CA_FILE).stdout
    primary = cluster.primary()
    assert primary, "no primary is running"
    replicas = [h for h in cluster.db if h != primary]

    workdir = Path(tempfile.mkdtemp(prefix="rotate-ca-"))
    drill_ca = workdir / "ca.pem"
    drill_ca.write_text(ca_text(""))
    table = f"drill_rotate_ca_{int(time.time())}"
    cluster.psql(primary, f"SET ROLE socialsphere_owner; CREATE TABLE {table} "
                 "(id bigint PRIMARY KEY, written_at timestamptz NOT NULL)", db="socialsphere")
    url = re.sub(r"sslrootcert=[^&]+", f"sslrootcert={drill_ca}", cluster.app_url())
    writer = Writer(url, table, 7200, prefix="rotate-ca-")
    figures: list[tuple[str, float, str]] = []
    windows: list[tuple[str, float, float]] = []  # (rotate-ca.yml run, start, end), wall clock
    t_wall = time.time()
    completed = False
    t_all = time.monotonic()
    try:
        writer.wait_acknowledged()
        figures.append(("logs before", logs_ship(inv, mon), "every host's line reached the monitoring host"))
        for phase in ("add", "switch", "retire"):
            acked = len(writer.log()[0])
            started = time.time()
            rc, out, seconds = rotate(phase)
            windows.append((phase, started, time.time()))
            assert rc == 0, out[-6000:]
            if phase == "add":  # what every host trusts now
                drill_ca.write_text(ca_text("", "next"))
            started = time.time()
            rc2, out2, seconds2 = rotate(phase)
            windows.append((f"{phase} again", started, time.time()))
            assert rc2 == 0, out2[-6000:]
            assert not changed_hosts(out2), out2[-4000:]
            writer.wait_acknowledged(acked + 30, timeout=120)
            shipped = logs_ship(inv, mon)
            figures.append((phase, seconds, f"{len(changed_hosts(out))} hosts changed; again {seconds2:.0f} s "
                                            f"changed=0; writes go on; logs shipped in {shipped:.1f} s"))
        drill_ca.write_text(ca_text(""))
        new_subject = lab_exec(inv, cluster.db[0], "openssl", "x509", "-noout", "-subject", "-in", CA_FILE).stdout
        assert new_subject != old_subject, (old_subject, new_subject)
        assert lab_exec(inv, cluster.db[0], "grep", "-c", "BEGIN CERTIFICATE", CA_FILE).stdout.strip() == "1"

        issuer = new_subject.strip().replace("subject=", "issuer=", 1)
        certs = certificates(inv)
        wrong = {h: {p: i for p, i in c.items() if i != issuer} for h, c in certs.items()}
        assert not any(wrong.values()), f"not issued by the new CA ({issuer}): {wrong}"
        for host, paths in certs.items():
            for path in paths:
                lab_exec(inv, host, "openssl", "verify", "-CAfile", CA_FILE, path)
        count = sum(len(c) for c in certs.values())
        assert count >= len(certs), certs  # journal-upload on every host at least

        for replica in replicas:
            cluster.wait_streaming(cluster.primary(), replica)
        cluster.pgbackrest("check")
        figures.append(("checks", 0, f"{count} certificates from the new CA, replicas stream, pgbackrest check ok"))

        retired = sorted(RETIRED_DIR.glob("*/ca.key"))
        assert retired and stat.S_IMODE(os.stat(retired[-1].parent).st_mode) == 0o700, retired
        assert not (CA_DIR / "previous").exists()

        writer.stop()
        acks, errors = writer.log()
        rows = set(map(int, cluster.psql(cluster.primary(), f"SELECT id FROM {table}", db="socialsphere").split()))
        lost = [i for i, _ in acks if i not in rows]
        assert not lost, f"{len(lost)} acknowledged writes lost: {lost[:10]}"
        figures.append(("writes", 0, f"{len(acks)} acknowledged, 0 lost, {len(errors)} failed attempts"
                                     + "".join(f"; attempt {i} failed {when - t_wall:.1f} s into the drill"
                                               f" ({during(windows, when)})" for i, when in errors[:10])))

        t0 = time.monotonic()
        rc, out = run_playbook("site.yml", timeout=3600)
        assert rc == 0, out[-5000:]
        assert not changed_hosts(out), out[-5000:]
        figures.append(("site.yml", time.monotonic() - t0, "changed=0 on every host"))
        completed = True
    finally:
        if writer.proc.poll() is None:
            writer.stop()
        finished = [] if completed else finish_rotation()
        print("\nphase        time    afterwards")
        for name, seconds, note in figures:
            print(f"{name:12} {seconds:5.0f} s  {note}")
        print(f"total {time.monotonic() - t_all:.0f} s")
        if finished:
            print(f"the drill finished the stopped rotation: {', '.join(finished)}")
        cluster.psql(cluster.primary(), f"DROP TABLE IF EXISTS {table}", db="socialsphere", check=False)
