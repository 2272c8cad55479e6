"""The database tier of an inventory for the database drills (tests/e2e/test_db_*.py,
test_dr_*.py, tests/bench/db-failover.sh): Cluster (hosts by role, psql, pgBackRest,
playbooks with a role overlay), the repositories, and the failover and switchover drills
under the continuous writer (labkit.writer).

The drills run against any inventory with db and backup hosts (labkit.inventory:
LAB_INVENTORY, comma separated; the Molecule scenario's inventory works too,
~/.ansible/tmp/molecule.*.db-cluster/inventory after `molecule converge -s db-cluster`;
LAB_VAULT_PASS when the file exists). Also:
  DB_E2E_LOG_DIR     optional: write every playbook's output there (<HHMMSS>-<playbook>.log)
  DB_E2E_PLAYBOOKS   optional: another playbooks/ directory (e.g. an older version, to compare)
  DB_E2E_SECOND_RUN  optional: the playbook of the second run after a drill (default db.yml)
Hosts are reached like Ansible reaches them (labkit.hosts.remote_command: `docker exec`
for the docker connection, else ssh as ansible_user with sudo). Traffic goes only to the
inventory's own addresses.
"""
import json
import os
import pathlib
import re
import shlex
import subprocess
import tempfile
import time
import urllib.parse

import pytest

from labkit import inventory
from labkit.hosts import remote_command
from labkit.inventory import REPO, parse_recap
from labkit.writer import Writer
from ssai_facts import postgresql_version_of_os_release

STANZA = "socialsphere"


class Cluster:
    """The database tier of one inventory, plus an optional overlay that swaps roles."""

    def __init__(self, overlay_roles=None):
        self.overlay_dir = None
        if overlay_roles:
            self.set_roles(overlay_roles)
        self.reload()

    # --- inventory -----------------------------------------------------------
    def overlay(self):
        """The overlay source (a list: empty without one)."""
        return [self.overlay_dir] if self.overlay_dir else []

    def reload(self):
        data = inventory.load(*self.overlay())
        self.hostvars = data["_meta"]["hostvars"]
        self.groups = {g: v.get("hosts", []) for g, v in data.items() if isinstance(v, dict)}
        self.db = sorted(self.groups.get("db", []))
        self.backup = sorted(self.groups.get("backup", []))

    def set_roles(self, roles):
        """Overlay inventory: {host: 'primary'|'replica'} (later sources win)."""
        self.overlay_dir = tempfile.mkdtemp(prefix="db-e2e-overlay-")
        os.makedirs(os.path.join(self.overlay_dir, "host_vars"))
        hosts = {h: {"postgresql_role": r} for h, r in roles.items()}
        with open(os.path.join(self.overlay_dir, "hosts.yml"), "w", encoding="utf-8") as fh:
            json.dump({"db": {"hosts": hosts}}, fh)
        for host, role in roles.items():
            with open(os.path.join(self.overlay_dir, "host_vars", f"{host}.yml"), "w", encoding="utf-8") as fh:
                fh.write(f"postgresql_role: {role}\n")
        if hasattr(self, "hostvars"):
            self.reload()

    def var(self, host, name, default=None):
        value = self.hostvars[host].get(name, default)
        for _ in range(5):  # resolve "{{ other_var }}" indirection (vault mapping)
            m = re.fullmatch(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", str(value)) if value is not None else None
            if not m:
                break
            value = self.hostvars[host].get(m.group(1))
        return value

    def role(self, host):
        return self.var(host, "postgresql_role")

    def address(self, host):
        return self.var(host, "ansible_host", host)

    def version(self, host):
        return postgresql_version_of_os_release(self.run(host, "cat /etc/os-release").stdout)

    def ca_file(self):
        ca_dir = self.var(self.db[0], "internal_ca_dir")
        if not ca_dir or "{{" in str(ca_dir):  # a template (the lab's group_vars): the lab's default place
            ca_dir = str(REPO / ".lab" / "ca")
        path = os.path.join(ca_dir, "ca.crt")
        assert os.path.exists(path), f"internal CA certificate {path} not found"
        return path

    # --- commands on hosts ---------------------------------------------------
    def command(self, host, cmd):
        return remote_command(self.hostvars[host], self.address(host), cmd)

    def run(self, host, cmd, check=False, timeout=600):
        res = subprocess.run(self.command(host, cmd), capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"{host}: {cmd!r} failed ({res.returncode}): {res.stderr.strip()}")
        return res

    def psql(self, host, sql, db="postgres", port=5432, check=True):
        cmd = f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -p {port} -d {db} -c {shlex.quote(sql)}"
        res = self.run(host, cmd, check=check)
        return res.stdout.strip() if check else res

    def pgbackrest(self, args, check=True):
        return self.run(self.backup[0], f"runuser -u pgbackrest -- pgbackrest --stanza={STANZA} {args}", check=check)

    def primary(self):
        """The host that runs as primary right now (None if none answers)."""
        found = [h for h in self.db if self.psql(h, "SELECT pg_is_in_recovery()", check=False).stdout.strip() == "f"]
        assert len(found) <= 1, f"more than one primary: {found}"
        return found[0] if found else None

    def wait_streaming(self, primary, replica, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = self.psql(primary, "SELECT application_name, state FROM pg_stat_replication", check=False).stdout
            if f"{replica}|streaming" in out:
                return
            time.sleep(1)
        raise AssertionError(f"{replica} does not stream from {primary}")

    # --- playbooks -----------------------------------------------------------
    def playbook(self, name, extra=None, check=True, timeout=1800):
        # relative to the repository, where the old runner ran ansible-playbook
        playbooks = REPO / os.environ.get("DB_E2E_PLAYBOOKS", "playbooks")
        args = []
        for key, value in (extra or {}).items():
            args += ["-e", json.dumps({key: value})]
        res = inventory.run_playbook_process(str(playbooks / name), *args, extra_sources=tuple(self.overlay()),
                                             timeout=timeout)
        log_dir = os.environ.get("DB_E2E_LOG_DIR")
        if log_dir:  # keep every playbook's output (e.g. with ANSIBLE_CALLBACKS_ENABLED=profile_tasks)
            os.makedirs(log_dir, exist_ok=True)
            stamp = time.strftime("%H%M%S", time.localtime(res.started))
            with open(os.path.join(log_dir, f"{stamp}-{name}.log"), "w", encoding="utf-8") as fh:
                fh.write(f"# {' '.join(res.args)}\n# rc={res.returncode} elapsed={res.elapsed:.1f}s\n{res.stdout}\n{res.stderr}")
        if check and res.returncode != 0:
            raise AssertionError(f"{name} failed ({res.returncode}):\n{res.stdout[-6000:]}\n{res.stderr[-2000:]}")
        return res

    @staticmethod
    def changed(result):
        """Sum of changed= over the hosts of a playbook's recap (no recap: an error,
        never 0)."""
        recap = parse_recap(result.stdout)
        assert recap, f"no PLAY RECAP in the playbook's output: {result.stdout[-2000:]}"
        return sum(host["changed"] for host in recap.values())

    # --- the app's connection -------------------------------------------------
    def app_login(self):
        """(user, password) of the app's active database login role (socialsphere_app_<key>)."""
        active = str(self.var(self.db[0], "postgresql_app_active_login"))
        return f"socialsphere_app_{active}", str(self.var(self.db[0], "postgresql_app_logins")[active])

    def app_url(self, owner=False):
        """The SQLAlchemy URL the app role builds (multi-host, read-write, verify-full), as
        the app's active login role, or as the schema owner."""
        user, password = ("socialsphere_owner", str(self.var(self.db[0], "postgresql_owner_password"))) if owner \
            else self.app_login()
        password = urllib.parse.quote_plus(password)
        hosts = "&".join(f"host={self.address(h)}:5432" for h in self.db)
        return (f"postgresql+psycopg2://{user}:{password}@/socialsphere?{hosts}"
                f"&target_session_attrs=read-write&sslmode=verify-full&sslrootcert={self.ca_file()}"
                "&connect_timeout=2")


def drill_cluster(db_hosts=1, backup_hosts=1, app=False, inventory_roles=False):
    """The Cluster of a drill's module fixture: skips when the inventory has fewer than
    ``db_hosts`` db hosts or ``backup_hosts`` backup hosts (or no app tier, with ``app``);
    with ``inventory_roles``, asserts that the host running as primary is the inventory's
    primary (a drill that rebuilds or restores from the roles must not start from a
    switched cluster)."""
    c = Cluster()
    if len(c.db) < db_hosts or len(c.backup) < backup_hosts or (app and not c.groups.get("app")):
        needs = [f"{db_hosts} db host(s)", f"{backup_hosts} backup host(s)"] + (["the app tier"] if app else [])
        pytest.skip(f"needs {', '.join(needs)} in the inventory (db: {c.db}, backup: {c.backup})")
    if inventory_roles:
        primary = c.primary()
        assert primary, "no primary is running"
        assert c.role(primary) == "primary", (
            f"{primary} runs as primary but the inventory says {c.role(primary)}: switch back first (db-switchover.yml)")
    return c


# --- the repositories (the disaster drills: test_dr_backup_host_lost.py, test_dr_db_tier_rebuilt.py) ---
def repo_of(cluster, host):
    """The pgBackRest repository number of a backup host."""
    return int(cluster.var(host, "pgbackrest_repo", cluster.backup.index(host) + 1))


def repo_info(cluster, host):
    """`pgbackrest info` of the stanza in a backup host's repository (parsed JSON)."""
    out = cluster.run(host, f"runuser -u pgbackrest -- pgbackrest --stanza={STANZA} "
                      f"--repo={repo_of(cluster, host)} --output=json info", check=True).stdout
    return json.loads(out)[0]


def max_archived(info):
    """The newest WAL segment a repository holds (from repo_info)."""
    return max((a.get("max") or "" for a in info.get("archive", [])), default="")


def switch_wal(cluster, primary):
    """Switch the primary's WAL segment; the name of the segment it closed."""
    return cluster.psql(primary, "SELECT pg_walfile_name(pg_switch_wal())")


def wait_archived(cluster, segment, hosts=None, timeout=600):
    """Wait until every repository (or those of `hosts`) holds WAL up to `segment`."""
    for host in hosts or cluster.backup:
        deadline = time.time() + timeout
        while max_archived(repo_info(cluster, host)) < segment:
            assert time.time() < deadline, f"{segment} never reached the repository of {host}"
            time.sleep(3)


# --- the failover drill (tests/e2e/test_db_failover.py, tests/bench/db-failover.sh) ---
def scratch_restore(cluster, repo, host, query, workdir):
    """db-restore.yml's scratch restore of the newest backup of repository `repo` onto
    `host`, `query` (one value) run on the restored copy: (that value, seconds taken).
    The drills compare it with the same query on the primary."""
    report = pathlib.Path(workdir) / f"restore-repo{repo}.json"
    started = time.time()
    cluster.playbook("db-restore.yml", {
        "db_restore_mode": "scratch", "db_restore_type": "default", "db_restore_repo": repo,
        "db_restore_host": host, "db_restore_report": str(report),
        "db_restore_verify_queries": {"rows": query},
    })
    restored = next(iter(json.loads(report.read_text())["rows"][0].values()))
    return restored, round(time.time() - started, 1)


def run_db_yml_again(cluster, extra, figures):
    """Converge once more after a drill and count the changes (must be 0): db.yml,
    which holds everything that depends on the roles, or the playbook named in
    DB_E2E_SECOND_RUN (e.g. site.yml, the whole deployment: about 9 min more)."""
    second = os.environ.get("DB_E2E_SECOND_RUN", "db.yml")
    again = cluster.playbook(second, extra)
    figures["second_run"] = second
    figures["second_run_changed"] = cluster.changed(again)


def failover_drill(cluster, sync, log=print, converge_first=True, rejoin_sync=None, second_run=True):
    """Kill the primary under a continuous writer, run db-failover.yml, measure, rejoin.

    converge_first: run db.yml first to set the replication mode (skip when the
    cluster already runs in that mode); rejoin_sync: replication mode applied by
    the rejoin and the second run (default: the same; pass the next drill's mode
    to chain drills without an extra converge); second_run: run db.yml once more
    (or the playbook in DB_E2E_SECOND_RUN, e.g. site.yml) and count its changes
    (must be 0).
    Returns a dict with the figures; raises AssertionError when the cluster does
    not come back (no write succeeds, rejoin fails).
    """
    old = cluster.primary()
    assert old, "no primary is running"
    new = [h for h in cluster.db if h != old][0]
    extra = {"db_preflight": False, "postgresql_synchronous_replication": bool(sync)}
    cluster.set_roles({old: "primary", new: "replica"})
    mode = "sync" if sync else "async"

    if converge_first:
        log(f"[{mode}] converging db.yml (primary {old}, replica {new})")
        cluster.playbook("db.yml", extra)
    cluster.wait_streaming(old, new)
    want = "quorum" if sync else "async"
    state = cluster.psql(old, f"SELECT sync_state FROM pg_stat_replication WHERE application_name = '{new}'")
    assert state == want, f"replication is {state}, expected {want}"

    table = f"drill_{mode}_{int(time.time())}"
    cluster.psql(old, f"SET ROLE socialsphere_owner; CREATE TABLE {table} (id bigint PRIMARY KEY, written_at timestamptz NOT NULL)",
                 db="socialsphere")
    writer = Writer(cluster.app_url(), table, 600)
    try:
        before = writer.wait_acknowledged()

        version = cluster.version(old)
        log(f"[{mode}] killing PostgreSQL on {old} (SIGKILL) after {before} acknowledged writes")
        t_kill = time.time()
        cluster.run(old, f"systemctl kill -s SIGKILL postgresql@{version}-main.service", check=True)

        t_play = time.time()
        cluster.playbook("db-failover.yml", extra)
        t_play_end = time.time()

        # RTO: kill -> first acknowledged write after the outage began (the first
        # failed attempt after the kill); writes that slipped in before the
        # SIGKILL landed do not count.
        deadline = time.time() + 120
        first_ok = None
        while time.time() < deadline:
            acks_now, errs_now = writer.log()
            outage = [t for _, t in errs_now if t > t_kill]
            after = [t for _, t in acks_now if outage and t > min(outage)]
            if after:
                first_ok = min(after)
                break
            time.sleep(0.2)
        assert first_ok, "no write succeeded on the new primary"
        time.sleep(2)
    finally:
        writer.stop()

    acks, errors = writer.log()
    present = {int(x) for x in cluster.psql(new, f"SELECT id FROM {table}", db="socialsphere").split()}
    lost = sorted(i for i, _ in acks if i not in present)
    figures = {
        "mode": mode,
        "old_primary": old,
        "new_primary": new,
        "acknowledged_writes": len(acks),
        "failed_attempts": len(errors),
        "lost_acknowledged_writes": len(lost),
        "rto_from_kill_s": round(first_ok - t_kill, 2),
        "rto_from_playbook_start_s": round(first_ok - t_play, 2),
        "failover_playbook_s": round(t_play_end - t_play, 2),
    }
    log(f"[{mode}] failover: {figures}")

    log(f"[{mode}] rejoin: {old} becomes the replica of {new}")
    cluster.set_roles({new: "primary", old: "replica"})
    if rejoin_sync is not None:
        extra = dict(extra, postgresql_synchronous_replication=bool(rejoin_sync))
    rejoin = cluster.playbook("db-rejoin.yml", extra)
    cluster.wait_streaming(new, old)
    figures["rejoin_playbook_s"] = round(rejoin.elapsed, 2)
    figures["rejoin_method"] = (
        "pg_rewind" if re.search(r"Run pg_rewind against the new primary\][^\n]*\n+changed:", rejoin.stdout)
        else "pg_basebackup" if re.search(r"Copy the primary with pg_basebackup\][^\n]*\n+changed:", rejoin.stdout)
        else "none")
    if second_run:
        run_db_yml_again(cluster, extra, figures)
    cluster.psql(new, f"DROP TABLE {table}", db="socialsphere")
    log(f"[{mode}] after rejoin: {figures}")
    return figures


def switchover_drill(cluster, sync=None, log=print, second_run=True):
    """Planned switchover under a continuous writer (db-switchover.yml), then db.yml
    with the roles swapped in the inventory (must change nothing).

    sync: replication mode to apply (None = the inventory's). Returns the figures;
    the caller asserts lost_acknowledged_writes == 0 and second_run_changed == 0.
    """
    old = cluster.primary()
    assert old, "no primary is running"
    new = [h for h in cluster.db if h != old][0]
    extra = {"db_preflight": False}
    if sync is not None:
        extra["postgresql_synchronous_replication"] = bool(sync)
    cluster.set_roles({old: "primary", new: "replica"})
    cluster.wait_streaming(old, new)

    table = f"drill_switchover_{int(time.time())}"
    cluster.psql(old, f"SET ROLE socialsphere_owner; CREATE TABLE {table} (id bigint PRIMARY KEY, written_at timestamptz NOT NULL)",
                 db="socialsphere")
    writer = Writer(cluster.app_url(), table, 1800)
    try:
        before = writer.wait_acknowledged()
        log(f"[switchover] {old} -> {new} after {before} acknowledged writes")
        t_play = time.time()
        result = cluster.playbook("db-switchover.yml", dict(extra, db_switchover_target=new))
        # writes must flow again (same multi-host URL) after the outage began;
        # the switchover playbook also converges db.yml, which can outlast it.
        deadline = time.time() + 60
        while time.time() < deadline:
            acks_now, errs_now = writer.log()
            outage = [t for _, t in errs_now if t >= t_play]
            if outage and any(t > min(outage) for _, t in acks_now):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("no write succeeded after the switchover")
        time.sleep(2)
    finally:
        writer.stop()

    acks, errors = writer.log()
    assert cluster.primary() == new, f"{new} is not the primary after the switchover"
    present = {int(x) for x in cluster.psql(new, f"SELECT id FROM {table}", db="socialsphere").split()}
    lost = sorted(i for i, _ in acks if i not in present)
    # writes-down window: first failed attempt -> first acknowledged write after it
    errs = sorted(t for _, t in errors if t >= t_play)
    after = [t for _, t in acks if errs and t > errs[0]]
    figures = {
        "mode": "switchover",
        "old_primary": old,
        "new_primary": new,
        "acknowledged_writes": len(acks),
        "failed_attempts": len(errors),
        "lost_acknowledged_writes": len(lost),
        "writes_down_s": round(min(after) - errs[0], 2) if after else 0.0,
        "switchover_playbook_s": round(result.elapsed, 2),
    }
    cluster.set_roles({new: "primary", old: "replica"})
    cluster.wait_streaming(new, old)
    if second_run:
        run_db_yml_again(cluster, extra, figures)
    cluster.psql(new, f"DROP TABLE {table}", db="socialsphere")
    log(f"[switchover] {figures}")
    return figures
