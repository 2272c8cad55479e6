"""App tier end-to-end support: a bounded load generator through the lab's edge VIP,
lab helpers for the app tests, and the basic path check (the VIP reaches Gunicorn).

Traffic goes only to the lab's own addresses (the VIP, lab hosts), bounded in time
and rate. TLS is verified against Pebble's root (read from the lab services host)
with the certificate name = socialsphere_domain; SSAI_E2E_CA_FILE overrides the CA.

The other app-tier tests import from here (``from test_app_support import ...``).
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from labkit.inventory import INVENTORY, REPO, VAULT_PASS, ansible_env
from userload import dropped as _dropped

READ_PATH = os.environ.get("SSAI_E2E_READ_PATH", "/api/v1/plans")
# Below HAProxy's per-IP request limit (1000 / 10 s): the load must not be rate limited.
LOAD_RPS = float(os.environ.get("SSAI_E2E_LOAD_RPS", "60"))
LOAD_THREADS = int(os.environ.get("SSAI_E2E_LOAD_THREADS", "6"))
LOAD_MAX_SECONDS = float(os.environ.get("SSAI_E2E_LOAD_MAX_SECONDS", "600"))


def lab_all_vars(inv: dict) -> dict:
    hostvars = inv["_meta"]["hostvars"]
    return hostvars[next(iter(hostvars))]


def group_hosts(inv: dict, group: str) -> list[str]:
    return list(inv.get(group, {}).get("hosts", []))


def host_address(inv: dict, host: str) -> str:
    return inv["_meta"]["hostvars"][host]["ansible_host"]


def running_states(inv: dict) -> dict[str, dict]:
    """What each app host's Gunicorn runs with: the role's own reader
    (roles/socialsphere_app/files/running-state.py; key ids and user names, no secret)."""
    script = (REPO / "roles" / "socialsphere_app" / "files" / "running-state.py").read_text()
    states = {}
    for host in group_hosts(inv, "app"):
        res = lab_exec(inv, host, "python3", "-c", script, "/etc/socialsphere/socialsphere.env",
                       "socialsphere.service", "/srv/socialsphere")
        states[host] = json.loads(res.stdout)
    return states


def container(inv: dict, host: str) -> str:
    """The Docker container of a lab host."""
    return f"{lab_all_vars(inv).get('lab_name', 'ssai')}-{host}"


def lab_exec(inv: dict, host: str, *cmd: str, check: bool = True, timeout: int = 60) -> subprocess.CompletedProcess:
    """Run a command in a lab container (docker exec, like `labctl exec`)."""
    return subprocess.run(["docker", "exec", container(inv, host), *cmd], capture_output=True, text=True,
                          check=check, timeout=timeout)


def fail2ban_banned(inv: dict, host: str, jail: str) -> list[str]:
    """Addresses a fail2ban jail on a lab host bans right now."""
    status = lab_exec(inv, host, "fail2ban-client", "status", jail).stdout
    for line in status.splitlines():
        if "Banned IP list:" in line:
            return line.split("Banned IP list:")[1].split()
    return []


def pebble_root(inv: dict) -> str:
    """PEM of the CA that issued the edge certificate (Pebble's root, from svc1)."""
    ca_file = os.environ.get("SSAI_E2E_CA_FILE")
    if ca_file:
        return open(ca_file).read()
    svc = group_hosts(inv, "labsvc")
    if not svc:
        pytest.skip("no lab services host (Pebble) in the lab")
    # Pebble's management API listens on the services host's lab address (roles/lab_services).
    url = f"https://{host_address(inv, svc[0])}:15000/roots/0"
    res = lab_exec(inv, svc[0], "curl", "-sS", "--insecure", url, check=False)
    if res.returncode != 0 or "BEGIN CERTIFICATE" not in res.stdout:
        pytest.fail(f"cannot read Pebble's root from {svc[0]} ({url}): {res.stderr.strip()}")
    return res.stdout


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a fixed address (the VIP) with SNI/Host = the service's domain."""

    def __init__(self, address: str, domain: str, context: ssl.SSLContext, timeout: float):
        super().__init__(domain, 443, context=context, timeout=timeout)
        self._address = address
        self._ctx = context

    def connect(self):
        sock = socket.create_connection((self._address, 443), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self.host)


@dataclass
class Edge:
    """Client of the whole edge path: VIP → Nginx (TLS) → HAProxy → Gunicorn."""
    address: str
    domain: str
    context: ssl.SSLContext

    @classmethod
    def from_inventory(cls, inv: dict) -> Edge:
        allv = lab_all_vars(inv)
        ctx = ssl.create_default_context(cadata=pebble_root(inv))
        return cls(allv["lab_vip"], allv["socialsphere_domain"], ctx)

    def connection(self, timeout: float = 10.0) -> http.client.HTTPSConnection:
        return _PinnedHTTPS(self.address, self.domain, self.context, timeout)

    def request(self, path: str, method: str = "GET", body: bytes | str | None = None,
                headers: dict | None = None, timeout: float = 10.0) -> http.client.HTTPResponse:
        """One request on a new connection; the response, with its body read into resp.body."""
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers={"User-Agent": "ssai-e2e", **(headers or {})})
            resp = conn.getresponse()
            resp.body = resp.read()
            return resp
        finally:
            conn.close()

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        resp = self.request(path, timeout=timeout)
        return resp.status, resp.body


@dataclass
class LoadResult:
    total: int = 0
    failed: int = 0
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    latencies: list = field(default_factory=list)
    seconds: float = 0.0
    # keep-alive connections found closed by the server before reuse (reopened)
    stale_reopened: int = 0
    # monotonic start time of each failed request (to tell which event caused it)
    failure_times: list = field(default_factory=list)

    def summary(self) -> str:
        lat = sorted(self.latencies) or [0.0]
        p50 = lat[len(lat) // 2] * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        return (f"{self.total} requests in {self.seconds:.1f}s ({self.total / max(self.seconds, 0.001):.0f} req/s), "
                f"{self.failed} failed, statuses {dict(self.statuses)}, errors {dict(self.errors)}, "
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, {self.stale_reopened} idle keep-alive connections "
                "closed by the server and reopened")


class LoadGenerator:
    """Constant, rate-limited GET load of one path, unauthenticated unless ``headers`` says
    otherwise (the drills where users' traffic matters use userload.UserLoad: sessions,
    reads and writes). Through the edge in background threads (keep-alive,
    one connection per thread, reconnect on close; like urllib3 and browsers, an idle
    connection the server has closed, e.g. Nginx's old workers on a reload, is
    reopened before it is reused, and counted). A request fails on any status other
    than 200 or any exception. Bounded by max_seconds (LOAD_MAX_SECONDS) whatever
    happens; ``ran_out`` tells that the bound, not the test, stopped it (the load then
    did not cover the whole operation under test). ``headers``: a callable returning
    extra request headers, asked before every request (e.g. a bearer token that the
    test replaces while the load runs)."""

    def __init__(self, edge: Edge, path: str = READ_PATH, rps: float = LOAD_RPS, threads: int = LOAD_THREADS,
                 max_seconds: float = LOAD_MAX_SECONDS, headers: Callable[[], dict] | None = None):
        self.edge, self.path, self.rps, self.threads = edge, path, rps, threads
        self.headers = headers
        self.max_seconds = max_seconds
        self.ran_out = False
        self.result = LoadResult()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._start = 0.0

    def _worker(self):
        interval = self.threads / self.rps
        conn = None
        next_at = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - self._start >= self.max_seconds:
                self.ran_out = True
                break
            next_at += interval
            t0 = time.monotonic()
            status, error = None, None
            try:
                if conn is not None and _dropped(conn):
                    conn.close()
                    conn = None
                    with self._lock:
                        self.result.stale_reopened += 1
                if conn is None:
                    conn = self.edge.connection()
                extra = self.headers() if self.headers else {}
                conn.request("GET", self.path, headers={"User-Agent": "ssai-e2e-load", **extra})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
                if resp.will_close:
                    conn.close()
                    conn = None
            except Exception as exc:  # noqa: BLE001 - every error counts as a failure
                error = type(exc).__name__
                if conn is not None:
                    conn.close()
                conn = None
            elapsed = time.monotonic() - t0
            with self._lock:
                self.result.total += 1
                if status is not None:
                    self.result.statuses[status] += 1
                if error:
                    self.result.errors[error] += 1
                if status != 200:
                    self.result.failed += 1
                    self.result.failure_times.append(t0)
                self.result.latencies.append(elapsed)
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
        if conn is not None:
            conn.close()

    def __enter__(self) -> LoadGenerator:
        self._start = time.monotonic()
        for _ in range(self.threads):
            t = threading.Thread(target=self._worker, daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=30)
        self.result.seconds = time.monotonic() - self._start
        print("load:", self.result.summary(), "(stopped by its time bound)" if self.ran_out else "",
              file=sys.stderr)


def labctl(inv: dict, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run lab/labctl on the lab of this inventory (LAB_NAME/LAB_SUBNET from its variables)."""
    allv = lab_all_vars(inv)
    env = dict(os.environ, LAB_NAME=allv["lab_name"], LAB_SUBNET=allv["lab_network_cidr"],
               LAB_INVENTORY=str(INVENTORY))
    return subprocess.run([str(REPO / "lab" / "labctl"), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def fab(*args: str, timeout: int = 1800, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a Fabric task of fabfile.py against the lab inventory (env: extra variables)."""
    env = dict(ansible_env(), SSAI_INVENTORY=str(INVENTORY), SSAI_VAULT_PASSWORD_FILE=str(VAULT_PASS), **(env or {}))
    fab_bin = os.path.join(os.path.dirname(sys.executable), "fab")
    return subprocess.run([fab_bin, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def build_release(suffix: str = "") -> str:
    """Build (or reuse) an artifact of this checkout; return its version."""
    cmd = [sys.executable, str(REPO / "scripts" / "build-release")]
    if suffix:
        cmd += ["--version-suffix", suffix]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True, timeout=900).stdout
    name = os.path.basename(out.strip().splitlines()[-1])
    return name.removeprefix("socialsphere-").removesuffix(".tar.gz")


def haproxy_ctl(inv: dict, edge: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ssai-haproxy (roles/haproxy's runtime-API client) on an edge host."""
    return lab_exec(inv, edge, "ssai-haproxy", *args, check=check)


def haproxy_servers(inv: dict, edge: str) -> dict[str, dict]:
    """The app servers of the edge host's HAProxy by name (`ssai-haproxy status --json`):
    admin (ready/drain/maint), status (UP, DOWN, DRAIN, MAINT...), check, sessions,
    total (sessions since start), lastchg (seconds since the last status change)."""
    servers = json.loads(haproxy_ctl(inv, edge, "status", "--json").stdout)["servers"]
    return {s["name"]: s for s in servers}


def current_release(inv: dict, host: str) -> str:
    return os.path.basename(lab_exec(inv, host, "readlink", "/srv/socialsphere/current").stdout.strip())


def wait_server_status(inv: dict, edge_host: str, server: str, prefix: str, timeout: float) -> float | None:
    """Wait until HAProxy on edge_host shows server in a status starting with prefix;
    return when it changed (monotonic clock, from HAProxy's lastchg), or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.monotonic()
        row = haproxy_servers(inv, edge_host).get(server, {})
        if row.get("status", "").startswith(prefix):
            return now - row.get("lastchg", 0)
        time.sleep(0.2)
    return None


def destroy(inv: dict, host: str) -> None:
    """The machine is gone: its container removed (a disaster drill's first step)."""
    subprocess.run(["docker", "rm", "-f", container(inv, host)], check=False, capture_output=True)
    gone = subprocess.run(["docker", "inspect", container(inv, host)], check=False, capture_output=True)
    assert gone.returncode != 0, f"{host} still exists"


class HaproxyWatch:
    """Samples `show stat` of every edge HAProxy in the background; records the
    statuses each app server went through."""

    def __init__(self, inv):
        self.inv = inv
        self.seen: dict[tuple[str, str], set[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for edge_host in group_hosts(self.inv, "edge"):
                try:
                    servers = haproxy_servers(self.inv, edge_host)
                except Exception:  # noqa: BLE001, S112 - a missed sample is not a result
                    continue
                for name, row in servers.items():
                    self.seen.setdefault((edge_host, name), set()).add(row["status"].split()[0])
            self._stop.wait(0.3)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)


def assert_drained_and_up(inv: dict, watch: HaproxyWatch, apps: list[str], during: str) -> None:
    """Every edge HAProxy drained each app host at some point (watch saw DRAIN) and
    shows it UP now: the rollout took each one out gracefully and brought it back."""
    for edge_host in group_hosts(inv, "edge"):
        for host in apps:
            assert "DRAIN" in watch.seen.get((edge_host, host), set()), \
                f"{edge_host}: {host} was never seen DRAIN during {during} ({watch.seen})"
        servers = haproxy_servers(inv, edge_host)
        for host in apps:
            assert servers[host]["status"].startswith("UP"), (edge_host, host, servers[host]["status"])


# ---------------------------------------------------------------- the basic path
@pytest.fixture(scope="module")
def edge(lab_inventory):
    return Edge.from_inventory(lab_inventory)


def test_vip_reaches_gunicorn_and_the_app_is_ready(lab_inventory, edge):
    status, body = edge.get("/readyz")
    assert status == 200, body
    assert json.loads(body)["status"] == "ready"


def test_every_app_host_serves_readyz_on_its_private_address(lab_inventory):
    for host in group_hosts(lab_inventory, "app"):
        addr = host_address(lab_inventory, host)
        res = lab_exec(lab_inventory, host, "curl", "-fsS", f"http://{addr}:8000/readyz", check=False)
        assert res.returncode == 0, f"{host}: {res.stderr}"
        # Bound to the private address only, not to every interface.
        res = lab_exec(lab_inventory, host, "curl", "-fsS", "http://127.0.0.1:8000/healthz", check=False)
        assert res.returncode != 0, f"{host}: Gunicorn also answers on 127.0.0.1 (bind must be ansible_host)"


def test_every_app_host_runs_the_same_release(lab_inventory):
    releases = {h: current_release(lab_inventory, h) for h in group_hosts(lab_inventory, "app")}
    assert len(set(releases.values())) == 1, releases


def test_haproxy_sees_every_app_host_up(lab_inventory):
    apps = set(group_hosts(lab_inventory, "app"))
    for edge_host in group_hosts(lab_inventory, "edge"):
        servers = haproxy_servers(lab_inventory, edge_host)
        assert apps <= set(servers), f"{edge_host}: the app backend lacks {apps - set(servers)}"
        for name in apps:
            assert servers[name]["status"].startswith("UP"), (edge_host, name, servers[name]["status"])
