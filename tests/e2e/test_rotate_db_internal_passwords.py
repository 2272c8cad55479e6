"""Drill: rotate the replication and superuser passwords of PostgreSQL while writes
continue (docs/runbooks/rotate-secrets.md, "Passwords and keys with one value").

1. A writer commits one row per transaction through the app's connection URL and logs
   every acknowledged commit.
2. `scripts/vault-secret new vault_postgresql_replication_password` and
   `new vault_postgresql_superuser_password` put new values into the lab vault (the
   operator's commands), then `playbooks/db.yml` (the runbook's playbook) applies them:
   ALTER ROLE on the primary, ~postgres/.pgpass on every db host.
3. Afterwards: the replica still streams on the same connection (authentication happens
   at connect); its walsender is terminated on the primary and the replica streams
   again (it reconnected with the new password from its .pgpass); from the replica, a
   login as the replication role over TCP (TLS, scram) with the old password is refused
   and with the new one accepted; on the primary, a login as postgres over TCP to
   127.0.0.1 likewise; `pgbackrest check` passes; db.yml again reports changed=0; no
   acknowledged write is lost and none failed.

The values are read from the vault with `ansible-vault view` inside the test, handed to
psql on stdin, and never printed. Leaves the lab on the new passwords (the vault and the
hosts agree). Prints the playbook's time, the reconnect time and the writes. About 2.5
minutes on the lab (two db.yml runs). A long drill:
`make test-drills`.
Run: pytest -s tests/e2e/test_rotate_db_internal_passwords.py
"""
import json
import shlex
import subprocess
import sys
import time

import pytest
import yaml

from labkit import db
from labkit.db import run_db_yml_again
from labkit.inventory import BIN, INVENTORY, REPO, VAULT_PASS, ansible_env
from labkit.writer import Writer, requires_app_python

pytestmark = requires_app_python

REPLICATION = "vault_postgresql_replication_password"
SUPERUSER = "vault_postgresql_superuser_password"


@pytest.fixture(scope="module")
def cluster():
    return db.drill_cluster(db_hosts=2, backup_hosts=1)


def vault_file():
    base = INVENTORY if INVENTORY.is_dir() else INVENTORY.parent
    return base / "group_vars" / "all" / "vault.yml"


def vault_values():
    """The lab vault's variables, decrypted by ansible-vault view (never printed)."""
    proc = subprocess.run([str(BIN / "ansible-vault"), "view", "--vault-password-file", str(VAULT_PASS),
                           str(vault_file())], cwd=REPO, env=ansible_env(), capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, f"ansible-vault view {vault_file()} failed: {proc.stderr[-500:]}"
    return yaml.safe_load(proc.stdout)


def vault_secret(*args):
    """scripts/vault-secret on the lab vault (the runbook's command); its output."""
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "vault-secret"), "-i", str(INVENTORY),
                           "--vault-password-file", str(VAULT_PASS), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def login(cluster, host, conninfo, password):
    """psql on `host` with `conninfo` and `password` (on stdin, into PGPASSWORD; no .pgpass):
    (accepted, the tail of psql's output)."""
    cmd = ("IFS= read -r p; export PGPASSWORD=\"$p\" PGPASSFILE=/dev/null; exec runuser -u postgres -- "
           f"psql -XAtq -w {shlex.quote(conninfo)} -c 'SELECT 1'")
    argv = cluster.command(host, cmd)
    if argv[:2] == ["docker", "exec"]:
        argv = argv[:2] + ["-i"] + argv[2:]
    res = subprocess.run(argv, input=password + "\n", capture_output=True, text=True, timeout=60, check=False)
    return res.returncode == 0 and res.stdout.strip() == "1", (res.stdout + res.stderr).strip()[-300:]


def walsender(cluster, primary, replica):
    """(pid, state) of the replica's walsender on the primary, or None."""
    out = cluster.psql(primary, "SELECT pid, state FROM pg_stat_replication "
                       f"WHERE application_name = '{replica}'")
    if not out:
        return None
    pid, state = out.splitlines()[0].split("|")
    return int(pid), state


def test_rotate_replication_and_superuser_passwords_while_writes_continue(cluster):
    primary = cluster.primary()
    assert primary, "no primary is running"
    replica = next(h for h in cluster.db if h != primary)
    cluster.wait_streaming(primary, replica)
    old = vault_values()
    assert old.get(REPLICATION) and old.get(SUPERUSER), f"the lab vault lacks {REPLICATION} or {SUPERUSER}"
    old_rep, old_su = str(old[REPLICATION]), str(old[SUPERUSER])
    figures = {"primary": primary, "replica": replica}

    table = f"drill_rotate_db_internal_{int(time.time())}"
    cluster.psql(primary, f"SET ROLE socialsphere_owner; CREATE TABLE {table} "
                 "(id bigint PRIMARY KEY, written_at timestamptz NOT NULL)", db="socialsphere")
    writer = Writer(cluster.app_url(), table, 3600, prefix="rotate-db-internal-")
    try:
        writer.wait_acknowledged()
        before = walsender(cluster, primary, replica)
        assert before and before[1] == "streaming", f"{replica} does not stream before the drill: {before}"

        started = time.time()
        for name in (REPLICATION, SUPERUSER):
            out = vault_secret("new", name)
            assert f"{name} has a new value" in out and "next: ansible-playbook" in out and "playbooks/db.yml" in out
            assert old_rep not in out and old_su not in out
        figures["vault_edit_s"] = round(time.time() - started, 1)
        new = vault_values()
        new_rep, new_su = str(new[REPLICATION]), str(new[SUPERUSER])
        assert new_rep != old_rep and new_su != old_su
        assert {k: v for k, v in new.items() if k not in (REPLICATION, SUPERUSER)} == \
            {k: v for k, v in old.items() if k not in (REPLICATION, SUPERUSER)}, "other vault entries changed"
        status = vault_secret("status")
        for name in (REPLICATION, SUPERUSER):
            assert f"{name}: set; " in status, status
        assert new_rep not in status and new_su not in status
        cluster.reload()

        result = cluster.playbook("db.yml")
        figures["db_yml_s"] = round(result.elapsed, 1)
        figures["db_yml_changed"] = cluster.changed(result)
        for secret in (old_rep, old_su, new_rep, new_su):
            assert secret not in result.stdout and secret not in result.stderr, "db.yml printed a password"
        assert figures["db_yml_changed"] > 0, "db.yml changed nothing: the new passwords were not applied"

        # the streaming connection stayed up: authentication happens only at connect
        after = walsender(cluster, primary, replica)
        assert after and after[1] == "streaming", f"{replica} no longer streams after db.yml: {after}"
        figures["walsender_kept"] = after[0] == before[0]
        assert figures["walsender_kept"], f"the walsender changed during db.yml ({before[0]} -> {after[0]})"

        # a reconnect authenticates with the new password (from the replica's ~postgres/.pgpass)
        cut = time.time()
        cluster.psql(primary, f"SELECT pg_terminate_backend({after[0]})")
        deadline = cut + 120
        while True:
            now = walsender(cluster, primary, replica)
            if now and now[0] != after[0] and now[1] == "streaming":
                break
            assert time.time() < deadline, f"{replica} did not stream again within 120 s of the walsender's end"
            time.sleep(0.5)
        figures["reconnect_s"] = round(time.time() - cut, 1)

        # over TCP: the old passwords are refused, the new ones accepted
        user = cluster.var(replica, "postgresql_replication_user", "replicator")
        ca = cluster.var(replica, "postgresql_ssl_ca_file", "/etc/ssl/certs/socialsphere-internal-ca.pem")
        replication = (f"host={cluster.address(primary)} port=5432 dbname=postgres user={user} "
                       f"sslmode=verify-full sslrootcert={ca} connect_timeout=5")
        superuser = "host=127.0.0.1 port=5432 dbname=postgres user=postgres connect_timeout=5"
        checks = {
            "replication old": login(cluster, replica, replication, old_rep),
            "replication new": login(cluster, replica, replication, new_rep),
            "superuser old": login(cluster, primary, superuser, old_su),
            "superuser new": login(cluster, primary, superuser, new_su),
        }
        for name, (accepted, text) in checks.items():
            for secret in (old_rep, old_su, new_rep, new_su):
                assert secret not in text
            assert accepted == name.endswith("new"), f"{name} password: {'accepted' if accepted else 'refused'}: {text}"
            if not accepted:
                assert "password authentication failed" in text, f"{name} refused for another reason: {text}"
        figures["logins"] = {name: "accepted" if ok else "refused" for name, (ok, _) in checks.items()}

        check = cluster.run(primary, f"runuser -u postgres -- pgbackrest --stanza={db.STANZA} check", timeout=300)
        assert check.returncode == 0, f"pgbackrest check failed: {check.stdout[-1000:]}{check.stderr[-1000:]}"

        run_db_yml_again(cluster, {}, figures)
        assert figures["second_run_changed"] == 0, figures
        time.sleep(3)
    finally:
        writer.stop(timeout=60)

    acks, errors = writer.log()
    figures.update(acknowledged_writes=len(acks), failed_writes=len(errors))
    present = {int(x) for x in cluster.psql(primary, f"SELECT id FROM {table}", db="socialsphere").split()}
    lost = [i for i, _ in acks if i not in present]
    figures["lost_acknowledged_writes"] = len(lost)
    print(f"\ndb internal passwords rotation: {json.dumps(figures)}")
    assert not lost, f"{len(lost)} acknowledged writes are missing on the primary"
    assert not errors, f"{len(errors)} write attempts failed (the app's login was not touched)"
    cluster.psql(primary, f"DROP TABLE {table}", db="socialsphere")
