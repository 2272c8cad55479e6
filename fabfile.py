"""SocialSphere AI release tasks (Fabric 3): build, deploy (rolling), rollback, status.

Hosts and variables come from the Ansible inventory (``ansible-inventory --list``):
nothing is listed twice. Choose the inventory and vault password with environment
variables (defaults: the lab)::

    SSAI_INVENTORY=inventories/production/hosts.yml SSAI_VAULT_PASSWORD_FILE=~/.vault-pass fab status

    fab build                       # dist/socialsphere-<version>.tar.gz (+ .sha256)
    fab deploy                      # the checkout's version; or: fab deploy --version 1.0.0+gabcdef12
    fab rollback                    # back to the previous release (or --version X)
    fab status                      # release per app host, HAProxy server states

``deploy`` installs the release on every app host and migrates the database once with
``playbooks/app.yml -e app_activate=false`` (the same role that installs it at
first), then switches the hosts one at a time: drain in every HAProxy
(``ssai-haproxy drain <host>`` on each edge host, the runtime-API client of
roles/haproxy), wait for its sessions to reach 0 (``ssai-haproxy wait-drained``),
switch ``current`` atomically, ``systemctl reload socialsphere`` (Gunicorn HUP), wait
until the workers run the new release and ``/readyz`` answers 200
(``socialsphere-readyz`` on the app host, from roles/socialsphere_app),
``ssai-haproxy ready``, wait until every HAProxy sees it UP (``ssai-haproxy wait-up``),
next host. The first failure stops the rollout: the
failing host goes back to the release it ran, and stays drained if that does not
become ready either. Commands run with the deploy user's passwordless sudo.
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
# Extra ansible-playbook arguments for the prepare step, e.g. "-e app_preflight=false".
PLAYBOOK_ARGS = shlex.split(os.environ.get("SSAI_PLAYBOOK_ARGS", ""))
APP_GROUP = os.environ.get("SSAI_APP_GROUP", "app")
EDGE_GROUP = os.environ.get("SSAI_EDGE_GROUP", "edge")
ROOT = "/srv/socialsphere"
# On the edge hosts: the HAProxy runtime-API client of roles/haproxy, which knows the
# backend and the admin socket (`ssai-haproxy --help`; exit code 3: HAProxy not running).
HAPROXY_CTL = "/usr/local/sbin/ssai-haproxy"
HAPROXY_NOT_RUNNING = 3
# On the app hosts: waits for /readyz (roles/socialsphere_app).
READYZ_CLIENT = "/usr/local/bin/socialsphere-readyz"
# Seconds for a drained server's sessions to reach 0, and for /readyz and HAProxy's
# health checks after a reload (SSAI_DRAIN_TIMEOUT, SSAI_READY_TIMEOUT override them).
DRAIN_TIMEOUT = float(os.environ.get("SSAI_DRAIN_TIMEOUT", "60"))
READY_TIMEOUT = float(os.environ.get("SSAI_READY_TIMEOUT", "90"))

def _load_facts():
    """plugins/filter/ssai_facts.py: the facts the playbooks read through filters."""
    spec = importlib.util.spec_from_file_location("ssai_facts", REPO / "plugins" / "filter" / "ssai_facts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_FACTS = _load_facts()


class DeployError(RuntimeError):
    """A rollout step failed; the rollout stops."""


@dataclass
class Host:
    name: str
    address: str
    vars: dict

    @property
    def app_port(self) -> int:
        """Gunicorn's port: the inventory's socialsphere_app_port, else the role's default
        (the same rule as edge.yml's HAProxy backend and scale-out.yml's readiness check)."""
        return int(_FACTS.role_var(self.name, {self.name: self.vars}, "socialsphere_app_port"))

    def connect(self) -> Connection:
        user = self.vars.get("ansible_user")
        key = self.vars.get("ansible_ssh_private_key_file")
        port = int(self.vars.get("ansible_port", 22))
        connect_kwargs = {"key_filename": os.path.expanduser(key)} if key else {}
        return Connection(self.address, user=user, port=port, connect_kwargs=connect_kwargs,
                          connect_timeout=15)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def inventory() -> dict:
    """``ansible-inventory --list`` of SSAI_INVENTORY (vault decrypted with SSAI_VAULT_PASSWORD_FILE)."""
    cmd = [_tool("ansible-inventory"), "-i", INVENTORY, "--list"]
    if VAULT_PASSWORD_FILE and Path(VAULT_PASSWORD_FILE).is_file():
        cmd += ["--vault-password-file", VAULT_PASSWORD_FILE]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO).stdout
    return json.loads(out)


def _tool(name: str) -> str:
    local = REPO / ".venv" / "bin" / name
    return str(local) if local.exists() else name


def hosts_of(inv: dict, group: str) -> list[Host]:
    names = inv.get(group, {}).get("hosts", [])
    hostvars = inv.get("_meta", {}).get("hostvars", {})
    return [Host(n, hostvars.get(n, {}).get("ansible_host", n), hostvars.get(n, {})) for n in names]


def checkout_version() -> str:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "build-release"), "--print-version"],
                          check=True, capture_output=True, text=True).stdout.strip()


def _sudo(conn: Connection, cmd: str, **kw):
    return conn.sudo(cmd, hide=True, **kw)


# ---------------------------------------------------------------- HAProxy runtime API
def haproxy_ctl(edge: Host, conn: Connection, *args: str) -> str:
    """Run ssai-haproxy on an edge host (as root); its output, or DeployError with its message."""
    res = _sudo(conn, shlex.join([HAPROXY_CTL, *args]), warn=True)
    if not res.ok:
        raise DeployError(f"{edge.name}: {(res.stderr or res.stdout).strip()} (exit {res.exited})")
    return res.stdout.strip()


def haproxy_live(edge: Host, conn: Connection) -> bool:
    """True when the edge host's HAProxy runs; False when it does not (nothing to drain there)."""
    res = _sudo(conn, shlex.join([HAPROXY_CTL, "status"]), warn=True)
    if res.ok:
        return True
    if res.exited == HAPROXY_NOT_RUNNING:
        return False
    raise DeployError(f"{edge.name}: `{HAPROXY_CTL} status` failed (exit {res.exited}): "
                      f"{(res.stderr or res.stdout).strip()} (playbooks/edge.yml --tags haproxy installs it)")


def _wait(what: str, check, timeout: float, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok, last = check()
        if ok:
            return last
        time.sleep(interval)
    raise DeployError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last})")


def drain(edges: list[tuple[Host, Connection]], server: str) -> None:
    # --missing-ok: a HAProxy that does not know the server has nothing to drain.
    # --keep-last: the only server in rotation stays there (its graceful reload
    # loses no request; a drain would answer every request with 503), and
    # wait-drained then has nothing to wait for.
    for edge, conn in edges:
        _log(f"  {edge.name}: {haproxy_ctl(edge, conn, 'drain', '--missing-ok', '--keep-last', server)}")
    for edge, conn in edges:
        _log(f"  {edge.name}: " + haproxy_ctl(edge, conn, "wait-drained", "--missing-ok",
                                              "--timeout", f"{DRAIN_TIMEOUT:g}", server))


def make_ready(edges: list[tuple[Host, Connection]], server: str) -> None:
    for edge, conn in edges:
        _log(f"  {edge.name}: {haproxy_ctl(edge, conn, 'ready', '--missing-ok', server)}")
    for edge, conn in edges:
        _log(f"  {edge.name}: " + haproxy_ctl(edge, conn, "wait-up", "--missing-ok",
                                              "--timeout", f"{READY_TIMEOUT:g}", server))


# ---------------------------------------------------------------- app hosts
def current_release(conn: Connection) -> str:
    res = conn.run(f"readlink {ROOT}/current", hide=True, warn=True)
    return Path(res.stdout.strip()).name if res.ok and res.stdout.strip() else ""


def releases(conn: Connection) -> list[str]:
    """Complete releases on the host, newest first."""
    res = conn.run(f"ls -1t {ROOT}/releases", hide=True, warn=True)
    names = res.stdout.split() if res.ok else []
    return [n for n in names if conn.run(f"test -f {ROOT}/releases/{shlex.quote(n)}/venv/.complete",
                                         hide=True, warn=True).ok]


def switch(conn: Connection, version: str) -> None:
    target = f"{ROOT}/releases/{version}"
    _sudo(conn, f"test -f {shlex.quote(target)}/venv/.complete")
    # New symlink + rename(2): `current` is never missing or half-written.
    # One shell under sudo: `sudo a && b` would run b as the deploy user.
    script = f"ln -sfn {shlex.quote(target)} {ROOT}/.current.new && mv -Tf {ROOT}/.current.new {ROOT}/current"
    _sudo(conn, f"sh -c {shlex.quote(script)}")


def worker_releases(conn: Connection) -> list[str]:
    """Release directory (cwd) of each Gunicorn worker (children of the master)."""
    pid = conn.run("systemctl show -p MainPID --value socialsphere.service", hide=True).stdout.strip()
    if not pid or pid == "0":
        return []
    res = _sudo(conn, f"sh -c 'for c in $(pgrep -P {pid}); do readlink /proc/$c/cwd; done'", warn=True)
    return [Path(p).name for p in res.stdout.split()]


def wait_ready(host: Host, conn: Connection, version: str) -> None:
    def workers():
        rel = worker_releases(conn)
        return (bool(rel) and all(r == version for r in rel)), rel
    _wait(f"{host.name}: every Gunicorn worker on {version}", workers, READY_TIMEOUT)
    url = f"http://{host.address}:{host.app_port}/readyz"
    res = conn.run(shlex.join([READYZ_CLIENT, "--timeout", f"{READY_TIMEOUT:g}", url]), hide=True, warn=True)
    if not res.ok:
        raise DeployError(f"{host.name}: {(res.stderr or res.stdout).strip()} (exit {res.exited})")


def restore(host: Host, conn: Connection, edges, version: str) -> None:
    """Back to ``version`` after a failed switch. A release that crashed Gunicorn may
    have left the service stopped or start-limited: clear that and (re)start it,
    otherwise reload gracefully."""
    switch(conn, version)
    _sudo(conn, "systemctl reset-failed socialsphere.service", warn=True)
    _sudo(conn, "systemctl reload-or-restart socialsphere.service")
    wait_ready(host, conn, version)
    _log(f"  {host.name}: /readyz 200 on {version}")
    make_ready(edges, host.name)


def activate(host: Host, conn: Connection, edges, version: str) -> None:
    drain(edges, host.name)
    switch(conn, version)
    _sudo(conn, "systemctl reload socialsphere.service")
    _log(f"  {host.name}: current -> {version}, Gunicorn reloaded (HUP)")
    wait_ready(host, conn, version)
    _log(f"  {host.name}: /readyz 200 on {version}")
    make_ready(edges, host.name)


def rolling(version: str, *, what: str) -> None:
    inv = inventory()
    apps = hosts_of(inv, APP_GROUP)
    if not apps:
        raise SystemExit(f"no hosts in group {APP_GROUP!r} of {INVENTORY}")
    edges = []
    for edge in hosts_of(inv, EDGE_GROUP):
        conn = edge.connect()
        try:
            live = haproxy_live(edge, conn)
        except DeployError as exc:
            raise SystemExit(f"{what} not started: {exc}") from exc
        if live:
            edges.append((edge, conn))
        else:
            _log(f"{edge.name}: HAProxy is not running: not draining there")
    for host in apps:
        conn = host.connect()
        if not conn.run(f"test -f {ROOT}/releases/{shlex.quote(version)}/venv/.complete", hide=True, warn=True).ok:
            raise SystemExit(f"{host.name}: release {version} is not installed (fab deploy installs it)")
    _log(f"{what} {version} on {', '.join(h.name for h in apps)}, one at a time")
    for host in apps:
        conn = host.connect()
        before = current_release(conn)
        if before == version and all(r == version for r in worker_releases(conn)):
            _log(f"{host.name}: already on {version}")
            continue
        _log(f"{host.name}: {before or '(none)'} -> {version}")
        try:
            activate(host, conn, edges, version)
        except Exception as exc:  # noqa: BLE001 - any failure stops the rollout
            _log(f"{host.name}: FAILED: {exc}")
            if before and before != version:
                _log(f"{host.name}: back to {before}")
                try:
                    restore(host, conn, edges, before)
                except Exception as exc2:  # noqa: BLE001
                    _log(f"{host.name}: the old release is not ready either ({exc2}): left drained")
            raise SystemExit(f"{what} stopped at {host.name}; later hosts untouched. Run `fab status`.") from exc
        _log(f"{host.name}: done")
    _log(f"{what} of {version} complete")


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
            "skip_prepare": "the release is already installed on every app host: only roll"})
def deploy(c, version=None, skip_prepare=False):
    """Rolling release: install everywhere + migrate once (Ansible), then drain/switch/HUP/ready host by host."""
    version = version or checkout_version()
    artifact = REPO / "dist" / f"socialsphere-{version}.tar.gz"
    if not skip_prepare:
        if not artifact.is_file():
            raise SystemExit(f"{artifact} missing: run `fab build` first")
        cmd = [_tool("ansible-playbook"), "-i", INVENTORY, "playbooks/app.yml",
               "-e", f"socialsphere_release={version}", "-e", "app_activate=false"]
        if VAULT_PASSWORD_FILE and Path(VAULT_PASSWORD_FILE).is_file():
            cmd += ["--vault-password-file", VAULT_PASSWORD_FILE]
        cmd += PLAYBOOK_ARGS
        _log("prepare: " + " ".join(cmd))
        subprocess.run(cmd, check=True, cwd=REPO)
    rolling(version, what="deploy")


@task(help={"version": "release to go back to (default: the newest installed release older than current)"})
def rollback(c, version=None):
    """Roll back host by host to the previous (or given) installed release: relink + graceful reload.

    No migration runs: the schema stays (expand/contract keeps the previous release working).
    """
    inv = inventory()
    apps = hosts_of(inv, APP_GROUP)
    if not version:
        conn = apps[0].connect()
        now = current_release(conn)
        older = [r for r in releases(conn) if r != now]
        if not older:
            raise SystemExit(f"{apps[0].name}: no other installed release to roll back to")
        version = older[0]
    rolling(version, what="rollback")


@task
def status(c):
    """Release per app host (current, workers, service state) and HAProxy server states per edge host."""
    inv = inventory()
    print(f"inventory: {INVENTORY}")
    print(f"{'app host':10} {'address':15} {'service':9} {'current':36} workers")
    for host in hosts_of(inv, APP_GROUP):
        try:
            conn = host.connect()
            state = conn.run("systemctl is-active socialsphere.service", hide=True, warn=True).stdout.strip()
            workers = sorted(set(worker_releases(conn)))
            print(f"{host.name:10} {host.address:15} {state:9} {current_release(conn) or '-':36} "
                  f"{','.join(workers) or '-'}")
        except Exception as exc:  # noqa: BLE001 - status reports, never stops
            print(f"{host.name:10} {host.address:15} unreachable: {exc}")
    for edge in hosts_of(inv, EDGE_GROUP):
        try:
            conn = edge.connect()
            res = _sudo(conn, shlex.join([HAPROXY_CTL, "status"]), warn=True)
            print(f"{edge.name} ({edge.address}):")
            for line in (res.stdout if res.ok else res.stderr).splitlines():
                print(f"  {line}")
        except Exception as exc:  # noqa: BLE001
            print(f"{edge.name}: unreachable: {exc}")
