"""SocialSphere AI release tasks (Fabric 3): the operator's front end to the release playbooks.

Hosts and variables come from the Ansible inventory (``ansible-inventory --list``):
nothing is listed twice. Choose the inventory and vault password with environment
variables (defaults: the lab)::

    SSAI_INVENTORY=inventories/production/hosts.yml SSAI_VAULT_PASSWORD_FILE=~/.vault-pass fab status

    fab build                       # dist/socialsphere-<version>.tar.gz (+ .sha256)
    fab deploy                      # the checkout's version; or: fab deploy --version 1.0.0+gabcdef12
    fab deploy --batch 2            # two app hosts at a time (or --batch 50%); default 1
    fab deploy --contract           # a release with a contract migration: maintenance page around it
    fab rollback                    # back to the release `previous` points to (or --version X)
    fab rollback --contract         # back across a contract migration (maintenance page around it)
    fab maintenance on|off          # the maintenance page on every edge host (playbooks/maintenance.yml)
    fab status                      # release per app host, workers, deploy lock, HAProxy server states,
                                    # the maintenance page per edge host
    fab releases                    # installed releases per app host (current, previous), last deploy log lines
    fab prune                       # remove old releases now (--keep N; never current or previous)
    fab unlock                      # break a stale deploy lock

``deploy`` and ``rollback`` run ``playbooks/app.yml``, the playbook ``site.yml`` runs,
so a release through Fabric or site.yml leaves the hosts identical: it takes the
deploy lock on every app host (refused while another run holds it), installs the
release on every app host and migrates the database once, then activates one batch
of hosts at a time (drained in every HAProxy, configured, switched, reloaded, every
worker on the release and /readyz 200, back in rotation), prunes old releases, writes
a line in each host's deploy log and releases the lock. The first failing host goes
back to the release it ran and later batches are not started. A rollback is the same
run for an installed release, without migrations (expand/contract: the schema stays).
A run that crosses a contract migration (one not backward compatible: applied by a
deploy, or gone back across by a rollback) is refused before the lock unless
--contract, which turns the maintenance page on before the migration and off after the
last host switched. docs/runbooks/release.md is the runbook.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fabric import Connection, task

REPO = Path(__file__).resolve().parent
INVENTORY = os.environ.get("SSAI_INVENTORY", str(REPO / "inventories" / "lab" / "hosts.yml"))
VAULT_PASSWORD_FILE = os.environ.get("SSAI_VAULT_PASSWORD_FILE", str(REPO / ".lab" / "vault-pass"))
# Extra ansible-playbook arguments, e.g. "-e socialsphere_app_readyz_retries=10".
PLAYBOOK_ARGS = shlex.split(os.environ.get("SSAI_PLAYBOOK_ARGS", ""))
APP_GROUP = os.environ.get("SSAI_APP_GROUP", "app")
EDGE_GROUP = os.environ.get("SSAI_EDGE_GROUP", "edge")
# On the edge hosts: the HAProxy runtime-API client of roles/haproxy (`ssai-haproxy --help`).
HAPROXY_CTL = "/usr/local/sbin/ssai-haproxy"


def _load_facts():
    """plugins/filter/ssai_facts.py: the facts the playbooks read through filters."""
    spec = importlib.util.spec_from_file_location("ssai_facts", REPO / "plugins" / "filter" / "ssai_facts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_FACTS = _load_facts()


@dataclass
class Host:
    name: str
    address: str
    vars: dict

    def role_var(self, name: str):
        """A role variable (socialsphere_app_*, nginx_*) as this host sees it: the inventory's
        value, else the role's default (the same rule as the playbooks' ssai_role_var)."""
        return _FACTS.role_var(self.name, {self.name: self.vars}, name)

    @property
    def root(self) -> str:
        return str(self.role_var("socialsphere_app_root"))

    @property
    def lock(self) -> str:
        return str(self.role_var("socialsphere_app_deploy_lock"))

    @property
    def log(self) -> str:
        return str(self.role_var("socialsphere_app_deploy_log"))

    def connect(self) -> Connection:
        user = self.vars.get("ansible_user")
        key = self.vars.get("ansible_ssh_private_key_file")
        port = int(self.vars.get("ansible_port", 22))
        connect_kwargs = {"key_filename": os.path.expanduser(key)} if key else {}
        return Connection(self.address, user=user, port=port, connect_kwargs=connect_kwargs,
                          connect_timeout=15)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _tool(name: str) -> str:
    local = REPO / ".venv" / "bin" / name
    return str(local) if local.exists() else name


def _vault_args() -> list[str]:
    if VAULT_PASSWORD_FILE and Path(VAULT_PASSWORD_FILE).is_file():
        return ["--vault-password-file", VAULT_PASSWORD_FILE]
    return []


def inventory() -> dict:
    """``ansible-inventory --list`` of SSAI_INVENTORY (vault decrypted with SSAI_VAULT_PASSWORD_FILE)."""
    cmd = [_tool("ansible-inventory"), "-i", INVENTORY, "--list", *_vault_args()]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO).stdout
    return json.loads(out)


def hosts_of(inv: dict, group: str) -> list[Host]:
    # A host of group isolated (compromised, playbooks/isolate-host.yml) is never contacted.
    isolated = set(inv.get("isolated", {}).get("hosts", []))
    names = [n for n in inv.get(group, {}).get("hosts", []) if n not in isolated]
    hostvars = inv.get("_meta", {}).get("hostvars", {})
    return [Host(n, hostvars.get(n, {}).get("ansible_host", n), hostvars.get(n, {})) for n in names]


def checkout_version() -> str:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "build-release"), "--print-version"],
                          check=True, capture_output=True, text=True).stdout.strip()


# ---------------------------------------------------------------- arguments
def parse_batch(batch) -> int | str:
    """--batch: a number of hosts or a percentage of the app hosts (app.yml's serial), checked
    by the function the playbook uses (ssai_release_batch)."""
    try:
        return _FACTS.release_batch(batch)
    except ValueError as exc:
        raise SystemExit(f"--batch: {exc}") from None


def deploy_version(version: str | None, checkout=checkout_version) -> str:
    """The release to deploy: --version, else the checkout's (scripts/build-release --print-version)."""
    version = (version or "").strip()
    return version or checkout()


def rollback_target(states: dict[str, dict]) -> str:
    """The release a rollback goes back to, from each app host's state (``current``,
    ``previous``: the release its links point to; ``releases``: its complete releases,
    newest first): the release ``previous`` points to (else the newest one other than
    ``current``), the same on every host and installed everywhere; SystemExit otherwise."""
    if not states:
        raise SystemExit("no app hosts in the inventory")
    targets = {}
    for host, state in states.items():
        current, installed = state.get("current", ""), state.get("releases", [])
        target = state.get("previous") or next((r for r in installed if r != current), "")
        if not target or target == current:
            raise SystemExit(f"{host}: no release to roll back to (current: {current or 'none'}; installed: "
                             f"{', '.join(installed) or 'none'}): name one with fab rollback --version <version>")
        targets[host] = target
    if len(set(targets.values())) > 1:
        listed = ", ".join(f"{h}: {t}" for h, t in targets.items())
        raise SystemExit(f"the app hosts would go back to different releases ({listed}): "
                         "name one with fab rollback --version <version>")
    target = next(iter(targets.values()))
    missing = [h for h, s in states.items() if target not in s.get("releases", [])]
    if missing:
        raise SystemExit(f"{target} is not installed on {', '.join(missing)} (pruned?): "
                         f"fab rollback --version {target} installs it again from dist/ if the artifact is there")
    return target


def fab_command(argv: list[str] | None = None) -> str:
    """This Fabric command line, for the deploy lock and the deploy log."""
    argv = sys.argv if argv is None else argv
    return shlex.join(["fab", *argv[1:]])


def playbook_command(playbook: str, extra_vars: dict) -> list[str]:
    """ansible-playbook on SSAI_INVENTORY with the extra variables as one JSON argument
    (values with spaces, such as the command line, stay whole), then SSAI_PLAYBOOK_ARGS."""
    return [_tool("ansible-playbook"), "-i", INVENTORY, f"playbooks/{playbook}", "-e",
            json.dumps(extra_vars, sort_keys=True), *_vault_args(), *PLAYBOOK_ARGS]


def run_playbook(playbook: str, extra_vars: dict, what: str) -> None:
    cmd = playbook_command(playbook, extra_vars)
    _log(f"{what}: " + shlex.join(cmd))
    res = subprocess.run(cmd, cwd=REPO, check=False)
    if res.returncode != 0:
        raise SystemExit(f"{what} failed (ansible-playbook exit {res.returncode}): see its last task above; "
                         "`fab status` and `fab releases` show where each host is (docs/runbooks/release.md)")
    _log(f"{what}: done")


def release_extra_vars(version: str, batch, kind: str, command: str, contract: bool = False) -> dict:
    """app.yml's variables for a deploy or a rollback of `version` (--contract: crossing a
    contract migration is allowed, behind the maintenance page)."""
    extra = {"socialsphere_release": version, "app_batch": str(batch), "app_deploy_kind": kind,
             "app_deploy_command": command}
    if contract:
        extra["app_release_contract"] = True
    if kind == "rollback":
        # An installed release: no artifact needed, and no migration (the schema stays
        # where the newer release put it; expand/contract keeps the older code working).
        extra.update(app_rollback=True, socialsphere_app_migrate=False)
    return extra


MAINTENANCE_STATES = ("on", "off")


def maintenance_state(value) -> str:
    """`fab maintenance on|off`: the state playbooks/maintenance.yml sets; SystemExit otherwise."""
    text = str(value or "").strip().lower()
    if text not in MAINTENANCE_STATES:
        raise SystemExit(f"fab maintenance on|off, not {value!r}: on serves the maintenance page on every edge host, "
                         "off lets traffic through again")
    return text


def describe_maintenance(pages: dict[str, bool | None]) -> str:
    """`fab status`'s line about the maintenance page, from each edge host's flag file
    (True: on, False: off, None: unknown)."""
    on = [h for h, v in pages.items() if v]
    unknown = [h for h, v in pages.items() if v is None]
    if unknown:
        state = f"unknown on {', '.join(unknown)}"
        return f"maintenance page: {state}" + (f"; on on {', '.join(on)}" if on else "")
    if on and len(on) == len(pages):
        return "maintenance page: ON on every edge host (503 for every request but /readyz): fab maintenance off"
    if on:
        return (f"maintenance page: on on {', '.join(on)} only (the edge hosts disagree): "
                "fab maintenance on or fab maintenance off")
    return "maintenance page: off"


# ---------------------------------------------------------------- reading the app hosts
def _sudo(conn: Connection, cmd: str, **kw):
    return conn.sudo(cmd, hide=True, **kw)


def read_state(host: Host, conn: Connection, log_lines: int = 0) -> dict:
    """The host's releases (complete ones, newest installed first, with their install
    time), ``current``, ``previous``, the deploy lock (or None) and the last lines of the
    deploy log."""
    root = shlex.quote(host.root)
    listing = _sudo(conn, f"find {root}/releases -mindepth 1 -maxdepth 1 -type d -printf '%T@ %f\\n'", warn=True)
    pairs = (line.split(" ", 1) for line in listing.stdout.splitlines() if " " in line)
    rows = sorted(((float(t), n) for t, n in pairs), reverse=True)
    complete = _sudo(conn, f"sh -c 'cd {root}/releases 2>/dev/null && ls -d */venv/.complete 2>/dev/null'",
                     warn=True).stdout.split()
    done = {p.split("/", 1)[0] for p in complete}
    state = {
        "releases": [n for _, n in rows if n in done],
        "incomplete": [n for _, n in rows if n not in done],
        "installed": {n: t for t, n in rows},
        "current": Path(conn.run(f"readlink {root}/current", hide=True, warn=True).stdout.strip()).name,
        "previous": Path(conn.run(f"readlink {root}/previous", hide=True, warn=True).stdout.strip()).name,
        "lock": None,
        "log": [],
    }
    lock = _sudo(conn, f"cat {shlex.quote(host.lock)}", warn=True)
    if lock.ok and lock.stdout.strip():
        try:
            state["lock"] = json.loads(lock.stdout)
        except ValueError:
            state["lock"] = {"who": "unknown (unreadable lock file)"}
    if log_lines:
        tail = _sudo(conn, f"tail -n {int(log_lines)} {shlex.quote(host.log)}", warn=True)
        for line in tail.stdout.splitlines() if tail.ok else []:
            try:
                state["log"].append(json.loads(line))
            except ValueError:
                state["log"].append({"raw": line})
    return state


def describe_lock(lock: dict | None) -> str:
    if not lock:
        return "free"
    return (f"held by {lock.get('who', '?')} since {lock.get('since', '?')} ({lock.get('command', '?')}; "
            f"run {lock.get('id', '?')})")


def format_log_line(entry: dict) -> str:
    if "raw" in entry:
        return entry["raw"]
    if entry.get("result") == "lock-broken":
        holder = entry.get("holder") or {}
        what = f"lock of {holder.get('who', '?')} (since {holder.get('since', '?')}) broken"
    elif entry.get("kind") == "prune":
        what = f"pruned {', '.join(entry.get('removed', [])) or 'nothing'}"
    else:
        what = f"{entry.get('from') or '(none)'} -> {entry.get('to') or '?'} {entry.get('result', '?')}"
    message = f" ({entry['message']})" if entry.get("message") else ""
    return (f"{entry.get('time', '?')} {entry.get('who', '?')} {entry.get('kind', '?')}: {what}{message}; "
            f"{entry.get('command', '')}")


def format_releases(name: str, state: dict) -> list[str]:
    """`fab releases` for one host: each release (newest installed first), `*` on the
    current one, `<` on the previous one, then the last deploy log lines."""
    lines = [f"{name}: deploy lock {describe_lock(state.get('lock'))}"]
    for release in state["releases"] + state.get("incomplete", []):
        mark = "*" if release == state["current"] else ("<" if release == state["previous"] else " ")
        label = ("  (current)" if mark == "*" else "  (previous)" if mark == "<" else "") + \
            ("  (incomplete)" if release in state.get("incomplete", []) else "")
        stamp = state.get("installed", {}).get(release)
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(stamp)) + "Z" if stamp else ""
        lines.append(f"  {mark} {release:40} {when}{label}")
    if state["current"] and state["current"] not in state["releases"]:
        lines.append(f"  * {state['current']} (current, but not a complete release!)")
    if state.get("log"):
        lines.append("  deploy log:")
        lines += [f"    {format_log_line(e)}" for e in state["log"]]
    return lines


def worker_releases(conn: Connection) -> list[str]:
    """Release directory (cwd) of each Gunicorn worker (children of the master)."""
    pid = conn.run("systemctl show -p MainPID --value socialsphere.service", hide=True).stdout.strip()
    if not pid or pid == "0":
        return []
    res = _sudo(conn, f"sh -c 'for c in $(pgrep -P {pid}); do readlink /proc/$c/cwd; done'", warn=True)
    return [Path(p).name for p in res.stdout.split()]


# ---------------------------------------------------------------- tasks
@task(help={"force": "rebuild even if the artifact exists",
            "version_suffix": "extra version label ([a-z0-9]+) for a re-release of the same sources"})
def build(c, force=False, version_suffix=""):
    """Build dist/socialsphere-<version>.tar.gz (+ .sha256) from this checkout (scripts/build-release)."""
    cmd = [sys.executable, str(REPO / "scripts" / "build-release")]
    cmd += ["--force"] if force else []
    cmd += ["--version-suffix", version_suffix] if version_suffix else []
    subprocess.run(cmd, check=True)


@task(help={"version": "release to deploy (default: the checkout's, scripts/build-release --print-version)",
            "batch": "app hosts activated at a time: a number (2) or a percentage of the app hosts (50%); default 1",
            "contract": "allow a contract migration (not backward compatible): the maintenance page is on from "
                        "before the migration until the last host switched"})
def deploy(c, version=None, batch="1", contract=False):
    """Rolling release through playbooks/app.yml (as site.yml): lock, install + migrate once, activate by batch."""
    batch = parse_batch(batch)
    version = deploy_version(version)
    artifact = REPO / "dist" / f"socialsphere-{version}.tar.gz"
    if not artifact.is_file():
        raise SystemExit(f"{artifact} missing: run `fab build` first")
    run_playbook("app.yml", release_extra_vars(version, batch, "deploy", fab_command(), contract), f"deploy {version}")


@task(help={"version": "release to go back to (default: the one `previous` points to on every app host)",
            "batch": "app hosts switched at a time: a number or a percentage; default 1",
            "contract": "allow going back across a contract migration: the maintenance page is on during the switch"})
def rollback(c, version=None, batch="1", contract=False):
    """Roll back through playbooks/app.yml to an installed release, without migrations.

    The schema stays (expand/contract keeps the previous release working; back across a
    contract migration needs --contract).
    """
    batch = parse_batch(batch)
    if not version:
        states = {h.name: read_state(h, h.connect()) for h in hosts_of(inventory(), APP_GROUP)}
        version = rollback_target(states)
    run_playbook("app.yml", release_extra_vars(version, batch, "rollback", fab_command(), contract),
                 f"rollback to {version}")


@task(positional=["state"], help={"state": "on (serve the maintenance page) or off"})
def maintenance(c, state):
    """Turn the maintenance page on or off on every edge host (playbooks/maintenance.yml; no reload)."""
    state = maintenance_state(state)
    run_playbook("maintenance.yml", {"maintenance": state}, f"maintenance page {state}")


@task
def status(c):
    """Release per app host (current, workers, service, deploy lock); per edge host the maintenance page and HAProxy."""
    inv = inventory()
    print(f"inventory: {INVENTORY}")
    print(f"{'app host':10} {'address':15} {'service':9} {'current':36} {'workers':36} deploy lock")
    for host in hosts_of(inv, APP_GROUP):
        try:
            conn = host.connect()
            state = conn.run("systemctl is-active socialsphere.service", hide=True, warn=True).stdout.strip()
            workers = sorted(set(worker_releases(conn)))
            st = read_state(host, conn)
            print(f"{host.name:10} {host.address:15} {state:9} {st['current'] or '-':36} "
                  f"{','.join(workers) or '-':36} {describe_lock(st['lock'])}")
        except Exception as exc:  # noqa: BLE001 - status reports, never stops
            print(f"{host.name:10} {host.address:15} unreachable: {exc}")
    pages: dict[str, bool | None] = {}
    for edge in hosts_of(inv, EDGE_GROUP):
        pages[edge.name] = None
        try:
            conn = edge.connect()
            flag = str(edge.role_var("nginx_maintenance_flag"))
            pages[edge.name] = _sudo(conn, shlex.join(["test", "-e", flag]), warn=True).ok
            res = _sudo(conn, shlex.join([HAPROXY_CTL, "status"]), warn=True)
            print(f"{edge.name} ({edge.address}): maintenance page {'on' if pages[edge.name] else 'off'}")
            for line in (res.stdout if res.ok else res.stderr).splitlines():
                print(f"  {line}")
        except Exception as exc:  # noqa: BLE001
            print(f"{edge.name}: unreachable: {exc}")
    print(describe_maintenance(pages))


@task(help={"lines": "deploy log lines per host (default 5)"})
def releases(c, lines=5):
    """Installed releases per app host (* current, < previous) and the last lines of its deploy log."""
    for host in hosts_of(inventory(), APP_GROUP):
        try:
            for line in format_releases(f"{host.name} ({host.address})", read_state(host, host.connect(), int(lines))):
                print(line)
        except Exception as exc:  # noqa: BLE001 - a report, never stops
            print(f"{host.name}: unreachable: {exc}")


@task(help={"keep": "newest releases kept (default: socialsphere_app_keep_releases, 5); current and previous "
                    "always are"})
def prune(c, keep=None):
    """Remove old releases on every app host now (playbooks/app-prune.yml; under the deploy lock)."""
    extra = {"app_deploy_command": fab_command()}
    if keep is not None:
        if not str(keep).isdigit():
            raise SystemExit(f"--keep: a number of releases (0, 1, 2, ...), not {keep!r}")
        extra["socialsphere_app_keep_releases"] = int(keep)
    run_playbook("app-prune.yml", extra, "prune")


@task
def unlock(c):
    """Break a stale deploy lock on every app host (playbooks/app-unlock.yml); the holder is printed and logged."""
    run_playbook("app-unlock.yml", {"app_deploy_command": fab_command()}, "unlock")
