#!/usr/bin/python3
"""Scheduled restore verification of this host's pgBackRest repository.

Installed by roles/pgbackrest on every repository host as
/usr/local/sbin/pgbackrest-restore-verify and run by
pgbackrest-restore-verify.service (a timer) as the repository user. A backup
only counts once it has been restored, so every run:

1. runs `pgbackrest verify` (every backup and WAL file of the repository is
   readable and matches its checksum);
2. restores the newest backup into a scratch data directory and replays the
   archived WAL to its end (a hole in the archive stops the replay short);
3. starts PostgreSQL there on a private Unix socket (no TCP), and checks it:
   amcheck on every B-tree index and verify_heapam on every table of the
   application database, its migration head and the row counts of the main
   tables against the primary (within a tolerance: the primary moved on since);
4. stops it and removes the scratch directory, whatever happened;
5. writes the outcome as node_exporter textfile metrics (alerts
   PgBackRestRestoreVerifyFailed / ...Stale) and a JSON report, and exits 1
   when a check failed (the unit then shows as failed).

Settings come from a JSON file (default /etc/pgbackrest/restore-verify.json,
templated by the role); the repository and its cipher from the pgBackRest
configuration file it names.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

DEFAULT_SETTINGS = "/etc/pgbackrest/restore-verify.json"

# SQL run in the restored copy (as the postgres superuser, over the private socket).
SQL_INDEXES = """
SELECT count(*) FROM (
  SELECT bt_index_check(index => c.oid, heapallindexed => true)
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_am a ON a.oid = c.relam
  JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE a.amname = 'btree' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg_toast%' AND c.relpersistence <> 't' AND i.indisready AND i.indisvalid
) checked
"""
SQL_HEAP = """
SELECT count(*) FILTER (WHERE v.blkno IS NOT NULL), count(DISTINCT c.oid)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN LATERAL verify_heapam(c.oid) v ON true
WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND c.relpersistence <> 't'
"""
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
SQL_HEAD = "SELECT string_agg(version_num, ',' ORDER BY version_num) FROM alembic_version"


class CheckFailed(Exception):
    """A check found a problem: the verification fails, the rest is still cleaned up."""


def log(message):
    print(message, flush=True)


def run(argv, timeout, env=None):
    """Run a command; return (exit code, last lines of its combined output)."""
    try:
        # argv lists built here from the settings file (root-owned), never a shell
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)  # noqa: S603
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout} s"
    output = (proc.stdout + proc.stderr).strip().splitlines()
    return proc.returncode, "\n".join(output[-40:])


class Verification:
    def __init__(self, settings):
        self.s = settings
        self.data_dir = os.path.join(settings["scratch_dir"], "data")
        self.socket_dir = os.path.join(settings["scratch_dir"], "socket")
        self.checks = []
        self.rows = {}
        self.facts = {}

    # --- helpers ---------------------------------------------------------------
    def pgbackrest(self, *args, timeout):
        return run(["pgbackrest", f"--config={self.s['pgbackrest_config']}", f"--stanza={self.s['stanza']}",
                    f"--repo={self.s['repo']}", *args], timeout)

    def record(self, name, ok, detail):
        self.checks.append({"check": name, "ok": bool(ok), "detail": detail})
        log(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
        if not ok:
            raise CheckFailed(f"{name}: {detail}")

    def pg_bin(self, name):
        return os.path.join(self.s["pg_bin_dir"], name)

    def scratch_sql(self, sql, database=None):
        code, out = run([self.pg_bin("psql"), "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", self.socket_dir,
                         "-p", str(self.s["port"]), "-U", "postgres", "-d", database or self.s["database"],
                         "-c", sql], timeout=self.s["timeout"])
        if code != 0:
            raise CheckFailed(f"query on the restored copy failed: {out}")
        return out

    def primary_sql(self, sql):
        code, out = run([self.pg_bin("psql"), "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", self.s["primary_conninfo"],
                         "-c", sql], timeout=120)
        if code != 0:
            raise CheckFailed(f"query on the primary failed: {out}")
        return out

    # --- steps -----------------------------------------------------------------
    def verify_repository(self):
        # pgBackRest 2.45/2.50 end `verify` with "completed successfully" (exit 0) even
        # when it found invalid files: the verdict is in the summary it prints at log level
        # info only then ("status: error", "checksum invalid: 1", "missing: 1").
        code, out = self.pgbackrest("--log-level-console=info", "verify", timeout=self.s["timeout"])
        problems = [line.strip() for line in out.splitlines() if "command begin" not in line
                    and re.search(r"status: (?!ok|valid)|invalid|missing", line)]
        ok = code == 0 and not problems
        self.record("repository", ok, "pgbackrest verify found every file valid" if ok
                    else f"exit {code}: {'; '.join(problems) or out}")

    def newest_backup(self):
        code, out = self.pgbackrest("--output=json", "info", timeout=300)
        if code != 0:
            self.record("backup", False, f"pgbackrest info failed: {out}")
        backups = (json.loads(out)[0].get("backup") or []) if out else []
        self.record("backup", bool(backups),
                    "the repository holds a backup" if backups else "no backup in the repository")
        newest = max(backups, key=lambda b: b["timestamp"]["stop"])
        self.facts.update(backup_label=newest["label"], backup_type=newest["type"],
                          backup_stop=newest["timestamp"]["stop"])

    def clean(self):
        """Stop a scratch instance left by an earlier run and remove the directory."""
        if os.path.exists(os.path.join(self.data_dir, "postmaster.pid")):
            run([self.pg_bin("pg_ctl"), "-D", self.data_dir, "-m", "immediate", "-w", "stop"], timeout=120)
        shutil.rmtree(self.s["scratch_dir"], ignore_errors=True)

    def restore(self):
        self.clean()
        os.makedirs(self.data_dir, mode=0o700)
        os.makedirs(self.socket_dir, mode=0o700)
        restore_command = (f"pgbackrest --config={self.s['pgbackrest_config']} --stanza={self.s['stanza']} "
                           f"--repo={self.s['repo']} archive-get %f \"%p\"")
        started = time.time()
        code, out = self.pgbackrest(f"--pg1-path={self.data_dir}", "--archive-mode=off", "--type=default",
                                    f"--set={self.facts['backup_label']}",
                                    f"--recovery-option=restore_command={restore_command}", "restore",
                                    timeout=self.s["timeout"])
        self.facts["restore_seconds"] = round(time.time() - started, 1)
        self.record("restore", code == 0, f"backup {self.facts['backup_label']} restored in "
                    f"{self.facts['restore_seconds']} s" if code == 0 else f"exit {code}: {out}")

    def configure(self):
        # The data directory of a Debian/Ubuntu cluster holds no postgresql.conf:
        # the copy gets its own. Hot standby off: no connection before the replay
        # has reached the end of the archive (and no check of the primary's sizing).
        conf = {
            "port": self.s["port"],
            "listen_addresses": "''",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "hba_file": f"'{os.path.join(self.data_dir, 'pg_hba.conf')}'",
            "ident_file": f"'{os.path.join(self.data_dir, 'pg_ident.conf')}'",
            "hot_standby": "off",
            "archive_mode": "off",
            "ssl": "off",
            "max_connections": 20,
            "shared_buffers": "'64MB'",
            "max_wal_senders": 0,
            "logging_collector": "off",
            "cluster_name": "'restore-verify'",
        }
        with open(os.path.join(self.data_dir, "postgresql.conf"), "w") as handle:
            handle.write("# Scratch copy of pgbackrest-restore-verify: removed after the checks\n")
            handle.writelines(f"{key} = {value}\n" for key, value in conf.items())
        # Only the repository user reaches the socket directory (0700).
        with open(os.path.join(self.data_dir, "pg_hba.conf"), "w") as handle:
            handle.write("local all postgres trust\n")
        with open(os.path.join(self.data_dir, "pg_ident.conf"), "w") as handle:
            handle.write("")

    def start(self):
        started = time.time()
        code, out = run([self.pg_bin("pg_ctl"), "-D", self.data_dir, "-l", os.path.join(self.s["scratch_dir"], "log"),
                         "-w", "-t", "120", "start"], timeout=180)
        if code != 0:
            self.record("recovery", False, f"the copy did not start: {self.tail_log() or out}")
        # pg_ctl returns once the server runs; with hot standby off it accepts
        # connections only when the replay has reached the end of the archive.
        deadline = started + self.s["timeout"]
        while True:
            code, out = run([self.pg_bin("psql"), "-XAtq", "-h", self.socket_dir, "-p", str(self.s["port"]),
                             "-U", "postgres", "-d", "postgres", "-c", "SELECT pg_is_in_recovery()"], timeout=60)
            if code == 0 and out == "f":
                break
            if not os.path.exists(os.path.join(self.data_dir, "postmaster.pid")):
                self.record("recovery", False, f"the copy stopped during the WAL replay: {self.tail_log()}")
            if time.time() > deadline:
                self.record("recovery", False, f"no end of the WAL replay after {self.s['timeout']} s: {out}")
            time.sleep(2)
        self.facts["recovery_seconds"] = round(time.time() - started, 1)
        self.record("recovery", True, f"archived WAL replayed and promoted in {self.facts['recovery_seconds']} s")

    def tail_log(self):
        try:
            with open(os.path.join(self.s["scratch_dir"], "log")) as handle:
                return "\n".join(handle.read().splitlines()[-10:])
        except OSError:
            return ""

    def check_copy(self):
        self.scratch_sql("CREATE EXTENSION IF NOT EXISTS amcheck")
        indexes = int(self.scratch_sql(SQL_INDEXES))
        self.facts["indexes_checked"] = indexes
        self.record("indexes", indexes > 0,
                    f"amcheck bt_index_check(heapallindexed) passed on {indexes} B-tree indexes")
        corrupt, tables = (int(x) for x in self.scratch_sql(SQL_HEAP).split("|"))
        self.facts["tables_checked"] = tables
        self.record("heap", corrupt == 0 and tables > 0,
                    f"verify_heapam found {corrupt} corrupt blocks in {tables} tables")

    def compare_with_primary(self):
        restored_head = self.scratch_sql(SQL_HEAD)
        primary_head = self.primary_sql(SQL_HEAD)
        self.facts["migration_head"] = restored_head
        self.record("migration_head", restored_head == primary_head and restored_head != "",
                    f"restored {restored_head or 'none'}, primary {primary_head or 'none'}")
        problems = []
        for table in self.s["tables"]:
            if not IDENTIFIER.fullmatch(table):
                raise CheckFailed(f"not a table name: {table!r}")
            sql = f'SELECT count(*) FROM "{table}"'  # noqa: S608 - a checked identifier from the settings
            restored, primary = int(self.scratch_sql(sql)), int(self.primary_sql(sql))
            allowed = max(self.s["row_tolerance_min"], int(primary * self.s["row_tolerance_ratio"]))
            self.rows[table] = {"restored": restored, "primary": primary, "allowed_difference": allowed}
            if abs(primary - restored) > allowed:
                problems.append(f"{table}: restored {restored}, primary {primary} (allowed difference {allowed})")
        self.record("row_counts", not problems, "; ".join(problems) or
                    f"{len(self.s['tables'])} tables within tolerance of the primary")

    def stop(self):
        if os.path.exists(os.path.join(self.data_dir, "postmaster.pid")):
            run([self.pg_bin("pg_ctl"), "-D", self.data_dir, "-m", "fast", "-w", "stop"], timeout=300)


def write_atomic(path, text, mode=0o644):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".restore-verify.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def metrics(settings, report):
    labels = f'stanza="{settings["stanza"]}",repo="{settings["repo"]}"'
    out = []

    def gauge(name, help_text, samples):
        out.extend([f"# HELP {name} {help_text}", f"# TYPE {name} gauge"])
        out.extend(f"{name}{{{labels}{extra}}} {value}" for extra, value in samples)

    gauge("pgbackrest_restore_verify_success", "1 if the last restore verification passed every check.",
          [("", int(report["success"]))])
    gauge("pgbackrest_restore_verify_last_run_timestamp_seconds", "End of the last restore verification.",
          [("", report["finished"])])
    gauge("pgbackrest_restore_verify_last_success_timestamp_seconds",
          "End of the last restore verification that passed (0: none yet).", [("", report["last_success"])])
    gauge("pgbackrest_restore_verify_duration_seconds", "Wall time of the last restore verification.",
          [("", report["duration_seconds"])])
    gauge("pgbackrest_restore_verify_check_success", "Outcome of each check of the last run (1 passed, 0 failed).",
          [(f',check="{c["check"]}"', int(c["ok"])) for c in report["checks"]])
    if "backup_stop" in report:
        gauge("pgbackrest_restore_verify_backup_timestamp_seconds", "Stop time of the backup the last run restored.",
              [("", report["backup_stop"])])
    if report["rows"]:
        gauge("pgbackrest_restore_verify_rows", "Rows per main table in the restored copy.",
              [(f',table="{t}"', r["restored"]) for t, r in sorted(report["rows"].items())])
    return "\n".join(out) + "\n"


def previous_success(report_path):
    try:
        with open(report_path) as handle:
            return json.load(handle).get("last_success", 0)
    except (OSError, ValueError):
        return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default=DEFAULT_SETTINGS, help="JSON settings file (default %(default)s)")
    args = parser.parse_args()
    with open(args.settings) as handle:
        settings = json.load(handle)

    started = time.time()
    job = Verification(settings)
    error = None
    try:
        job.verify_repository()
        job.newest_backup()
        job.restore()
        job.configure()
        job.start()
        job.check_copy()
        job.compare_with_primary()
    except CheckFailed as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - any crash is a failed verification, reported as such
        error = f"{type(exc).__name__}: {exc}"
        log(f"FAIL {error}")
    finally:
        job.stop()
        job.clean()

    finished = time.time()
    success = error is None
    report = {
        "stanza": settings["stanza"],
        "repo": settings["repo"],
        "started": round(started),
        "finished": round(finished),
        "duration_seconds": round(finished - started, 1),
        "success": success,
        "error": error,
        "last_success": round(finished) if success else previous_success(settings["report_file"]),
        "checks": job.checks,
        "rows": job.rows,
        **job.facts,
    }
    write_atomic(settings["report_file"], json.dumps(report, indent=2) + "\n", mode=0o640)
    if settings.get("metrics_file"):
        write_atomic(settings["metrics_file"], metrics(settings, report))
    log(f"restore verification of repository {settings['repo']}: {'passed' if success else 'FAILED'} "
        f"in {report['duration_seconds']} s")
    return 0 if success else 1


if __name__ == "__main__":
    sys.exit(main())
