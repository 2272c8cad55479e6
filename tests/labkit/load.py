"""Load through the edge: the pacing loop every load thread runs (the GET load below and
the virtual users of labkit.userload), the keep-alive check they share, and the constant
GET load of one path (LoadGenerator). Bounded in time and rate; only to the lab's VIP."""
from __future__ import annotations

import http.client
import os
import select
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from labkit.edge import READ_PATH, Edge

# Below HAProxy's per-IP request limit (1000 / 10 s): the load must not be rate limited.
LOAD_RPS = float(os.environ.get("SSAI_E2E_LOAD_RPS", "60"))
LOAD_THREADS = int(os.environ.get("SSAI_E2E_LOAD_THREADS", "6"))
LOAD_MAX_SECONDS = float(os.environ.get("SSAI_E2E_LOAD_MAX_SECONDS", "600"))


def dropped(conn: http.client.HTTPConnection) -> bool:
    """True when an idle keep-alive connection was closed by the server (its socket
    is readable: EOF or a TLS close_notify). The check urllib3 (and so requests)
    and browsers make before reusing a pooled connection; a request that fails
    on a connection that was alive when it was sent still counts as failed."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def paced(stop: threading.Event, interval: float, started: float, max_seconds: float,
          on_ran_out: Callable[[], None], first_delay: float = 0.0, catch_up: float | None = None) -> Iterator[None]:
    """The pacing loop of one load thread: yields once per step, ``interval`` seconds
    apart (the step's own time included), until ``stop`` is set. The first step comes
    after ``first_delay`` (to spread threads). ``max_seconds`` after ``started``
    (monotonic) it calls ``on_ran_out`` and ends: the bound, not the test, stopped it.
    A step that ends late is followed at once; with ``catch_up`` (a number of
    intervals), a thread more than that far behind (a slow answer) starts its schedule
    again from now instead of sending a burst to catch up. A caller that leaves its
    loop (break) ends it."""
    next_at = time.monotonic() + first_delay
    if stop.wait(max(0.0, next_at - time.monotonic())):
        return
    while not stop.is_set():
        if time.monotonic() - started >= max_seconds:
            on_ran_out()
            return
        next_at += interval
        yield
        delay = next_at - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        elif catch_up is not None and delay < -catch_up * interval:
            next_at = time.monotonic()


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
    otherwise (the drills where users' traffic matters use labkit.userload.UserLoad: sessions,
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

    def _ran_out(self) -> None:
        self.ran_out = True

    def _worker(self):
        conn = None
        for _ in paced(self._stop, self.threads / self.rps, self._start, self.max_seconds, self._ran_out):
            t0 = time.monotonic()
            status, error = None, None
            try:
                if conn is not None and dropped(conn):
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
