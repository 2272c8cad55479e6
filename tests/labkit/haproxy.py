"""The edge HAProxies' view of the app servers, through ssai-haproxy (roles/haproxy's
runtime-API client) on each edge host: statuses, waiting for one, and a background watch
of the statuses each server went through during an operation."""
from __future__ import annotations

import json
import subprocess
import threading
import time

from labkit.hosts import container, group_hosts, lab_exec


def haproxy_ctl(inv: dict, edge: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ssai-haproxy (roles/haproxy's runtime-API client) on an edge host."""
    return lab_exec(inv, edge, "ssai-haproxy", *args, check=check)


def haproxy_stream(inv: dict, edge: str, interval: float) -> subprocess.Popen:
    """One `ssai-haproxy status --watch` on the edge host for as long as the caller reads:
    a JSON line of the servers every `interval` seconds (labkit.rotation's stream_of). Its
    standard input is a pipe: when this process goes away (terminate), docker closes the
    watch's stdin and the watch ends, instead of running on in the container."""
    return subprocess.Popen(["docker", "exec", "-i", container(inv, edge), "ssai-haproxy", "status", "--watch",
                             str(interval)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def haproxy_servers(inv: dict, edge: str) -> dict[str, dict]:
    """The app servers of the edge host's HAProxy by name (`ssai-haproxy status --json`):
    admin (ready/drain/maint), status (UP, DOWN, DRAIN, MAINT...), check, sessions,
    total (sessions since start), lastchg (seconds since the last status change)."""
    servers = json.loads(haproxy_ctl(inv, edge, "status", "--json").stdout)["servers"]
    return {s["name"]: s for s in servers}


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
