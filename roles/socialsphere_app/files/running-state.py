"""What the running Gunicorn of this app host was started with, as one JSON line.

    python3 running-state.py ENV_FILE UNIT ROOT

systemd reads the environment file only when it starts the service, so the file
can be newer than what runs (a run that wrote it and failed before the restart).
This reads the truth from the kernel instead: the environment the main process
was executed with (/proc/<MainPID>/environ, which later changes made by the
process do not alter) and when that process started. Run as root.

It prints no secret: the JWT key *ids* (never the keys), the active key id, the
access-token lifetime, the database user of the process and of the environment file
(the user name only, never the password), the process start time, the environment file's mtime,
this host's clock, the release `current` points to and the release each Gunicorn
worker runs (`workers`: the name of each child's working directory, which
gunicorn.conf.py sets to the release it resolved; during a reload the old workers
still show the old one), and `pending`: what <root>/.activation-pending asks of the
next activation (reload, restart; written by tasks_from: stage when the Gunicorn
configuration or unit changed, removed by socialsphere-switch.py once applied).
Used by the socialsphere_app role (tasks_from: running; tasks_from: stage restarts
a Gunicorn older than its environment file; socialsphere-switch.py, installed beside
it, waits with it until every worker runs the new release) and by
playbooks/rotate-secrets.yml.
"""
import json
import os
import subprocess
import sys
import time
import urllib.parse

# The app's default (app/socialsphere/config.py: SOCIALSPHERE_ACCESS_TOKEN_TTL).
DEFAULT_ACCESS_TTL = 900
# What the next activation must do (socialsphere-switch.py removes it once done).
PENDING = ".activation-pending"


def main_pid(unit):
    # systemctl from PATH with an argument list, no shell (the unit name is the role's own).
    try:
        out = subprocess.run(["systemctl", "show", "--property=MainPID", "--value", unit],  # noqa: S603, S607
                             capture_output=True, text=True, check=False).stdout.strip()
    except OSError:  # no systemctl: no systemd, so no such service running
        return 0
    return int(out) if out.isdigit() and int(out) > 0 else 0


def started_at(pid):
    """Start of the process, seconds since the epoch (boot time + start ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    with open("/proc/stat") as f:
        btime = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    return btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of proc(5)


def process_env(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        entries = f.read().split(b"\0")
    return dict(e.decode("utf-8", "replace").split("=", 1) for e in entries if b"=" in e)


def db_user(url):
    """The user name of a database URL (never its password); '' when there is none."""
    try:
        return urllib.parse.unquote(urllib.parse.urlsplit(url or "").username or "")
    except ValueError:
        return ""


def env_file_value(path, key):
    """A value of the environment file (KEY='value' lines, as the role writes it)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                name, sep, value = line.strip().partition("=")
                if sep and name == key:
                    return value.strip("'\"")
    except OSError:
        pass
    return ""


def worker_releases(pid):
    """The release (basename of the working directory) of each child of `pid`, sorted."""
    releases = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])  # field 4 of proc(5)
            if ppid == pid:
                releases.append(os.path.basename(os.readlink(f"/proc/{entry}/cwd")))
        except (OSError, ValueError, IndexError):  # gone meanwhile, or not readable
            continue
    return sorted(releases)


def main():
    env_file, unit, root = sys.argv[1:4]
    state = {"unit": unit, "now": time.time(), "running": False, "pid": 0, "started": None,
             "env_mtime": None, "env_stale": False, "jwt_kids": [], "jwt_active_kid": "",
             "access_ttl": DEFAULT_ACCESS_TTL, "release": "", "workers": [], "db_user": "", "env_db_user": "",
             "pending": "", "error": ""}
    try:
        state["release"] = os.path.basename(os.readlink(os.path.join(root, "current")))
    except OSError:
        pass
    try:
        with open(os.path.join(root, PENDING), encoding="utf-8") as f:
            state["pending"] = f.read().strip()
    except OSError:
        pass
    try:
        state["env_mtime"] = os.stat(env_file).st_mtime
    except OSError:
        pass
    # What the worker timers' next runs use (they read the file at each start).
    state["env_db_user"] = db_user(env_file_value(env_file, "SOCIALSPHERE_DATABASE_URL"))
    pid = main_pid(unit)
    if pid:
        try:
            started = started_at(pid)
            env = process_env(pid)
        except (OSError, ValueError, IndexError, StopIteration) as exc:
            state["error"] = f"cannot read process {pid}: {type(exc).__name__}"
        else:
            state.update(running=True, pid=pid, started=started, workers=worker_releases(pid))
            state["env_stale"] = state["env_mtime"] is not None and state["env_mtime"] > started
            state["jwt_active_kid"] = env.get("SOCIALSPHERE_JWT_ACTIVE_KID", "")
            state["db_user"] = db_user(env.get("SOCIALSPHERE_DATABASE_URL"))
            try:
                keys = json.loads(env.get("SOCIALSPHERE_JWT_KEYS") or "{}")
                state["jwt_kids"] = sorted(keys) if isinstance(keys, dict) else []
            except ValueError:  # the message would quote the value: say only what is wrong
                state["error"] = "SOCIALSPHERE_JWT_KEYS of the running process is not JSON"
            try:
                state["access_ttl"] = int(env.get("SOCIALSPHERE_ACCESS_TOKEN_TTL") or DEFAULT_ACCESS_TTL)
            except ValueError:
                state["error"] = "SOCIALSPHERE_ACCESS_TOKEN_TTL of the running process is not a number"
    print(json.dumps(state, sort_keys=True))


if __name__ == "__main__":
    main()
