"""Drill: rotate the cipher of pgBackRest repository 2 while writes continue
(docs/runbooks/rotate-secrets.md, "the pgBackRest repository cipher").

1. A writer commits one row per transaction through the app's connection URL and logs
   every acknowledged commit; the primary switches WAL every 10 s meanwhile.
2. `scripts/pgbackrest-cipher new 2` puts a new pass into the lab vault (the operator's
   command), then `rotate-secrets.yml -e rotate=pgbackrest_cipher -e rotate_repo=2`
   rebuilds repository 2 with it while repository 1 keeps the backups and the WAL.
3. The same run again: nothing to rotate, changed=0.
4. Afterwards: the previous pass no longer opens repository 2 and the new one does (a
   `pgbackrest info` with each pass given through the environment, not the host's
   configuration); repository 1 holds every WAL segment from before the rotation to the
   last one switched (no hole); the primary lost no acknowledged write; a scratch
   restore from repository 2 (playbooks/db-restore.yml) holds exactly the primary's
   rows; db.yml (DB_E2E_SECOND_RUN: or site.yml) changes nothing.

Leaves the lab on the new pass (the vault and backup2 agree). Prints each phase's time
and the writes acknowledged and lost. About 5 minutes. A long drill: `make test-drills`.
Run: pytest -s tests/e2e/test_rotate_cipher.py
"""
import json
import pathlib
import re
import subprocess
import sys
import threading
import time

import pytest

from labkit import db
from labkit.db import (
    STANZA,
    max_archived,
    repo_info,
    repo_of,
    run_db_yml_again,
    scratch_restore,
    switch_wal,
    wait_archived,
)
from labkit.inventory import INVENTORY, REPO, VAULT_PASS
from labkit.writer import Writer

CHECKSUM = "SELECT count(*) || ':' || coalesce(md5(string_agg(id::text, ',' ORDER BY id)), '') FROM {table}"
REPO_N = 2
VARIABLE = f"vault_pgbackrest_repo{REPO_N}_cipher_pass"


@pytest.fixture(scope="module")
def cluster():
    return db.drill_cluster(db_hosts=1, backup_hosts=2)


def host_of(cluster, repo):
    return next(h for h in cluster.backup if repo_of(cluster, h) == repo)


def info_with_pass(cluster, host, repo, cipher_pass):
    """`pgbackrest info` of a repository opened with `cipher_pass` (given on stdin, into the
    environment; not the host's configuration): (exit status, status code or None, text)."""
    path = cluster.var(host, "pgbackrest_repo_path", "/var/lib/pgbackrest")
    cmd = (f"IFS= read -r p; export PGBACKREST_REPO{repo}_CIPHER_PASS=\"$p\"; exec runuser -u pgbackrest -- "
           f"pgbackrest --no-config --repo{repo}-path={path} --repo{repo}-cipher-type=aes-256-cbc "
           f"--log-level-console=warn --log-level-file=off --stanza={STANZA} --repo={repo} --output=json info")
    argv = cluster.command(host, cmd)
    if argv[:2] == ["docker", "exec"]:
        argv = argv[:2] + ["-i"] + argv[2:]
    # errors="replace": a wrong pass makes pgBackRest print the undecryptable bytes.
    res = subprocess.run(argv, input=cipher_pass + "\n", capture_output=True, text=True, errors="replace",
                         timeout=120, check=False)
    try:
        # strict=False: the message of a failed decryption holds control characters.
        code = json.loads(res.stdout, strict=False)[0]["status"]["code"]
    except (ValueError, IndexError, KeyError, TypeError):
        code = None
    return res.returncode, code, (res.stdout + res.stderr)[-400:]


def archived_segments(cluster, host):
    """The WAL segment names in a repository's archive (file names are not encrypted)."""
    path = cluster.var(host, "pgbackrest_repo_path", "/var/lib/pgbackrest")
    out = cluster.run(host, f"find {path}/archive/{STANZA} -type f -name '[0-9A-F]*'", check=True).stdout
    return {pathlib.Path(line).name[:24] for line in out.split() if re.match(r"[0-9A-F]{24}", pathlib.Path(line).name)}


def segment_number(name):
    """Position of a 16 MiB segment on its timeline (log * 256 + segment)."""
    return int(name[8:16], 16) * 256 + int(name[16:24], 16)


def cipher_script(*args):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "pgbackrest-cipher"), "-i", str(INVENTORY),
                           "--vault-password-file", str(VAULT_PASS), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_rotate_repository_cipher_while_writes_continue(cluster):
    primary = cluster.primary()
    assert primary, "no primary is running"
    replica = next((h for h in cluster.db if h != primary), primary)
    rotated, other = host_of(cluster, REPO_N), next(h for h in cluster.backup if repo_of(cluster, h) != REPO_N)
    old_pass = str(cluster.var(rotated, VARIABLE))
    assert len(old_pass) >= 20, f"the lab vault has no {VARIABLE}"
    rc, code, text = info_with_pass(cluster, rotated, REPO_N, old_pass)
    assert code == 0, f"the current pass does not open repository {REPO_N} before the drill: {text}"
    figures = {"rotated": f"repository {REPO_N} on {rotated}", "other": f"repository {repo_of(cluster, other)} on {other}"}

    table = f"drill_rotate_cipher_{int(time.time())}"
    cluster.psql(primary, f"SET ROLE socialsphere_owner; CREATE TABLE {table} "
                 "(id bigint PRIMARY KEY, written_at timestamptz NOT NULL)", db="socialsphere")
    writer = Writer(cluster.app_url(), table, 3600, prefix="rotate-cipher-")
    stop = threading.Event()
    switched = []

    def switcher():
        while not stop.wait(10):
            switched.append(switch_wal(cluster, primary))

    thread = threading.Thread(target=switcher, daemon=True)
    try:
        writer.wait_acknowledged()
        first = switch_wal(cluster, primary)
        wait_archived(cluster, first, hosts=(other,))
        thread.start()

        started = time.time()
        out = cipher_script("new", str(REPO_N))
        assert old_pass not in out
        figures["vault_edit_s"] = round(time.time() - started, 1)
        cluster.reload()
        new_pass = str(cluster.var(rotated, VARIABLE))
        assert new_pass != old_pass and len(new_pass) >= 20

        result = cluster.playbook("rotate-secrets.yml", {"rotate": "pgbackrest_cipher", "rotate_repo": REPO_N},
                                  timeout=3600)
        figures["rotation_s"] = round(result.elapsed, 1)
        assert new_pass not in result.stdout and old_pass not in result.stdout
        assert "Done: repository 2" in result.stdout, result.stdout[-3000:]

        again = cluster.playbook("rotate-secrets.yml", {"rotate": "pgbackrest_cipher", "rotate_repo": REPO_N})
        figures["rerun_s"] = round(again.elapsed, 1)
        figures["rerun_changed"] = cluster.changed(again)
        assert "Nothing to rotate: repository 2" in again.stdout, again.stdout[-3000:]
        assert figures["rerun_changed"] == 0, again.stdout[-3000:]
        time.sleep(5)
    finally:
        stop.set()
        writer.stop(timeout=60)

    acks, errors = writer.log()
    figures.update(acknowledged_writes=len(acks), failed_writes=len(errors), wal_switches_during=len(switched))
    present = {int(x) for x in cluster.psql(primary, f"SELECT id FROM {table}", db="socialsphere").split()}
    lost = [i for i, _ in acks if i not in present]
    figures["lost_acknowledged_writes"] = len(lost)
    assert not lost, f"{len(lost)} acknowledged writes are missing on the primary"

    # the repository's files are encrypted with the new pass only
    rc_old, code_old, text_old = info_with_pass(cluster, rotated, REPO_N, old_pass)
    rc_new, code_new, text_new = info_with_pass(cluster, rotated, REPO_N, new_pass)
    assert code_new == 0, f"the new pass does not open repository {REPO_N}: {text_new}"
    assert code_old not in (0, None), f"the previous pass still opens repository {REPO_N}: {text_old}"
    figures["old_pass_info"] = {"rc": rc_old, "status_code": code_old}
    new_info = repo_info(cluster, rotated)
    assert [b["type"] for b in new_info.get("backup", [])] == ["full"], new_info.get("backup")
    leftovers = cluster.run(rotated, "ls -d /var/lib/pgbackrest.retired-* /var/lib/pgbackrest.rotation.json 2>/dev/null")
    assert not leftovers.stdout.strip(), f"left behind: {leftovers.stdout}"

    # no WAL hole in the other repository: every segment from before the rotation to the last one
    final = switch_wal(cluster, primary)
    wait_archived(cluster, final, hosts=(other, rotated))
    names = {n for n in archived_segments(cluster, other) if n[:8] == first[:8]}
    wanted = range(segment_number(first), segment_number(final) + 1)
    missing = [n for n in wanted if not any(segment_number(s) == n for s in names)]
    figures["other_repo_segments_checked"] = len(wanted)
    assert not missing, f"repository {repo_of(cluster, other)} misses WAL segment(s) {missing[:10]}"
    assert max_archived(repo_info(cluster, other)) >= final

    # a scratch restore from the rebuilt repository holds the primary's rows
    expected = cluster.psql(primary, CHECKSUM.format(table=table), db="socialsphere")
    restored, figures["restore_repo2_s"] = scratch_restore(cluster, REPO_N, replica, CHECKSUM.format(table=table),
                                                           writer.workdir)
    assert restored == expected, f"repository {REPO_N} restores {restored}, the primary holds {expected}"

    run_db_yml_again(cluster, {}, figures)
    assert figures["second_run_changed"] == 0, figures
    cluster.psql(primary, f"DROP TABLE {table}", db="socialsphere")
    print(f"\ncipher rotation: {json.dumps(figures)}")
