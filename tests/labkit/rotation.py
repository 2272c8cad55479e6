"""How long each app host was out of rotation during a rollout, as the edge HAProxies saw
it: from the moment the first HAProxy no longer sent it requests (drained, in
maintenance or down) to the moment every HAProxy sent it requests again (ready and UP).
That is the host's own activation (drain, wait for its sessions, configure, switch,
reload, every worker on the release, /readyz, ready, UP), without the rollout's common
steps (install on every host, migration, the deploy lock and log). Standard library only
(tests/unit/test_rotation_watch.py).

One thread per edge host reads its HAProxy and keeps every change of a server's (admin,
status), in one of two ways:
- ``stream_of(edge, interval)``: a process that prints one JSON line of servers per read
  (labkit.haproxy's haproxy_stream: one `ssai-haproxy status --watch` per edge host for
  the whole watch); a sample's time is its line's arrival. What the rollout drills use: a
  docker exec per sample costs the 2-core lab machine more CPU than the rollout it
  measures. The precision of a span is the longest gap between two lines (``resolution``).
- ``servers_of(edge)``: one read per call (labkit.haproxy's haproxy_servers), ``interval``
  apart; a sample's time is the middle of its read, the precision the longest read plus
  the interval.
The precision is printed with the figures.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable


def in_rotation(admin: str, status: str) -> bool:
    """The server gets new requests: ready, and its health check says UP ("UP", "UP 1/2")."""
    return admin == "ready" and status.split(" ")[0] == "UP"


def out_of_rotation_spans(samples: list[tuple]) -> dict[str, list[tuple[float, float | None]]]:
    """samples: (time, edge, server, admin, status), any order. For each server, the spans
    (start, end) during which at least one edge that reported it had it out of rotation;
    end None: still out at the last sample."""
    state: dict[tuple[str, str], bool] = {}
    out_since: dict[str, float] = {}
    spans: dict[str, list[tuple[float, float | None]]] = defaultdict(list)
    for t, edge, server, admin, status in sorted(samples, key=lambda s: s[0]):
        state[(edge, server)] = in_rotation(admin, status)
        out = any(not inside for (e, s), inside in state.items() if s == server)
        if out and server not in out_since:
            out_since[server] = t
        elif not out and server in out_since:
            spans[server].append((out_since.pop(server), t))
    for server, t in out_since.items():
        spans[server].append((t, None))
    return dict(spans)


class RotationWatch:
    """Samples every edge HAProxy in the background (one thread per edge host). ``seen``
    has the shape of labkit.haproxy.HaproxyWatch's (the statuses each (edge, server)
    went through), so assert_drained_and_up takes either."""

    def __init__(self, edges: list[str], servers_of: Callable[[str], dict[str, dict]] | None = None,
                 interval: float = 0.25, stream_of: Callable[[str, float], subprocess.Popen] | None = None):
        if (servers_of is None) == (stream_of is None):
            raise ValueError("RotationWatch needs servers_of or stream_of (one of them)")
        self.edges, self.servers_of, self.stream_of, self.interval = edges, servers_of, stream_of, interval
        self._procs: list[subprocess.Popen] = []
        self.samples: list[tuple] = []
        self.seen: dict[tuple[str, str], set[str]] = {}
        self.reads: Counter = Counter()
        self.longest_read: dict[str, float] = {}
        self._last: dict[tuple[str, str], tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        run = self._run if stream_of is None else self._run_stream
        self._threads = [threading.Thread(target=run, args=(edge,), daemon=True) for edge in edges]

    def _run_stream(self, edge: str) -> None:
        proc = self.stream_of(edge, self.interval)
        with self._lock:
            self._procs.append(proc)
        last = None
        for line in proc.stdout:
            if self._stop.is_set():
                break
            t = time.monotonic()
            try:
                servers = {row["name"]: row for row in json.loads(line)["servers"]}
            except (ValueError, KeyError, TypeError):
                continue  # not a line of servers: a missed sample, not a result
            self.record(edge, t, servers)
            with self._lock:
                self.reads[edge] += 1
                if last is not None:  # resolution adds the interval back
                    self.longest_read[edge] = max(self.longest_read.get(edge, 0.0), t - last - self.interval)
            last = t

    def _run(self, edge: str) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                servers = self.servers_of(edge)
            except Exception:  # noqa: BLE001, S112 - a missed sample is not a result
                self._stop.wait(self.interval)
                continue
            t1 = time.monotonic()
            self.record(edge, (t0 + t1) / 2, servers)
            with self._lock:
                self.reads[edge] += 1
                self.longest_read[edge] = max(self.longest_read.get(edge, 0.0), t1 - t0)
            self._stop.wait(self.interval)

    def record(self, edge: str, t: float, servers: dict[str, dict]) -> None:
        """One read of an edge's servers at time t (kept only where something changed)."""
        with self._lock:
            for name, row in servers.items():
                admin, status = row.get("admin", ""), row.get("status", "")
                self.seen.setdefault((edge, name), set()).add(status.split(" ")[0])
                if self._last.get((edge, name)) != (admin, status):
                    self._last[(edge, name)] = (admin, status)
                    self.samples.append((t, edge, name, admin, status))

    @property
    def resolution(self) -> float:
        """The longest read of any edge plus the pause between reads (seconds)."""
        return max(self.longest_read.values(), default=0.0) + self.interval

    def spans(self) -> dict[str, list[tuple[float, float | None]]]:
        with self._lock:
            return out_of_rotation_spans(list(self.samples))

    def __enter__(self) -> RotationWatch:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            proc.terminate()
        for thread in self._threads:
            thread.join(30)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            if proc.stdout:
                proc.stdout.close()


def per_host_report(spans: dict[str, list[tuple[float, float | None]]], hosts: list[str], origin: float,
                    goal: float, resolution: float, failures_between: Callable[[float, float], Counter] | None = None,
                    ) -> tuple[list[str], list[float]]:
    """Lines describing each host's time out of rotation (seconds from ``origin``), the
    median and max against ``goal`` (printed, not asserted), and the durations."""
    lines, durations = [], []
    for host in hosts:
        host_spans = spans.get(host, [])
        if not host_spans:
            lines.append(f"  {host}: never out of rotation (not drained: nothing to activate, or kept as the last one)")
            continue
        for start, end in host_spans:
            if end is None:
                lines.append(f"  {host}: out of rotation from +{start - origin:.1f}s and not back at the end")
                continue
            durations.append(end - start)
            text = f"  {host}: {end - start:.1f}s out of rotation (+{start - origin:.1f}s to +{end - origin:.1f}s)"
            if failures_between is not None:
                failed = failures_between(start, end)
                text += f", failed requests meanwhile: {dict(failed) if failed else 0}"
            lines.append(text)
    if durations:
        med, top = statistics.median(durations), max(durations)
        verdict = "within" if top <= goal else "ABOVE"
        lines.append(f"  per host: median {med:.1f}s, max {top:.1f}s; goal <= {goal:.0f}s per host: {verdict} "
                     f"(+/- {resolution:.1f}s sampling; printed, not asserted)")
    return lines, durations
