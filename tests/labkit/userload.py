"""What users send, through the edge VIP: the load of the release, failure and scale-out
drills (issue 13 item 4). Standard library and labkit.load's pacing loop only
(tests/unit/test_userload.py runs it against the app started on 127.0.0.1).

N virtual users (threads), each with its own account, each on its own keep-alive
connection (reopened when the server closed it, as labkit.load.LoadGenerator and browsers
do), each paced to ``rps`` requests per second (labkit.load.paced). A user repeats what the dashboard does
(app/frontend/assets/js/dashboard.js): after login it reads ``GET /auth/me`` (usage and
announcement), the first page of ``GET /posts`` and ``GET /social/accounts``; then it
writes a post (``POST /posts``), reads it back, edits it (``PATCH``), searches its posts
(``GET /posts?q=``) and deletes its oldest post once it has more than ``keep_posts``.
The access token is refreshed (``POST /auth/refresh``, the refresh token in the body) when
it nears its expiry (``expires_in`` of the login); after a failed refresh (its refresh
token may have rotated unseen) the user logs in again.

Counted per request kind: ok, HTTP errors (by status), connection errors (by exception).
Every request that does not get its expected status (201 create, 204 delete, else 200)
fails, reads and writes alike; a 429 is a failure too (the load stays under every limit).
A sample of the first failures (kind, status or error, body head, time, request id: the
``X-Request-ID`` the app logs) goes into the assertion message.

Acknowledged writes lost: after the run each user lists its posts and every post it was
told was created (201) and not deleted is there with the content of its last acknowledged
edit; no post it was told was deleted (204) is back. A post found gone while the load ran
(404 on a post it had been told exists) counts too. A write that failed without an answer
may or may not have happened: both outcomes are accepted for it (it already counts as a
failed request). Then the run's posts are deleted again, so the plan's post quota (30 a
month on ``free``: deleted posts do not count) never stops the next run.

The edge's limits (roles/haproxy defaults, per client address) are kept: logins at most
``LOGINS_PER_MINUTE`` (HAProxy refuses the 11th a minute), accounts created once per lab
(``POST /auth/register``: 5 per 10 minutes), never a wrong password (fail2ban's
socialsphere-auth jail bans after 10 failed logins in 5 minutes). Accounts are
``e2e-load-<tag>-NN@<domain>``; their passwords, and the tag, are derived from a secret
the lab already has (its vault password file, ``lab_user_load``), so nothing new is
stored and a rebuilt lab (a new vault password) gets new accounts. Logged-in sessions are
kept for the whole pytest run: the next load reuses them (one login per user per run).
Setup (accounts, logins, removing posts an interrupted run left) is not measured; it
waits out a 429 of the sign-up limit (Retry-After) up to ``SETUP_MAX_SECONDS``. A login
refused during the load (401) stops that user rather than trying again. Users that
stopped early or whose posts could not be read back are listed in ``incomplete``.
Two UserLoads must not run at the same time: they would share the users' sessions.
"""
from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import http.client
import json
import os
import secrets
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from labkit.inventory import VAULT_PASS
from labkit.load import dropped, paced

API = "/api/v1"
USERS = int(os.environ.get("SSAI_E2E_USERS", "5"))
# 5 users x 12 = 60 requests/s, the rate of LoadGenerator (LOAD_RPS).
USER_RPS = float(os.environ.get("SSAI_E2E_USER_RPS", "12"))
MAX_SECONDS = float(os.environ.get("SSAI_E2E_LOAD_MAX_SECONDS", "600"))
KEEP_POSTS = 8
# HAProxy refuses more than haproxy_ratelimit_login_max (10) logins a minute per address.
LOGINS_PER_MINUTE = 8
SETUP_MAX_SECONDS = 900
USER_AGENT = "ssai-e2e-user"
FAILURE_SAMPLES = 20
WRITES = ("create", "edit", "delete", "refresh", "login")
EXPECTED = {"create": 201, "delete": 204}


class LoadSetupError(RuntimeError):
    """The users could not be made ready (before any load ran)."""


class Pacer:
    """At most ``count`` events in any ``seconds`` (sliding window), shared by threads."""

    def __init__(self, count: int, seconds: float, clock=time.monotonic):
        self.count, self.seconds, self.clock = count, seconds, clock
        self._times: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def delay(self) -> float:
        """Seconds until the next event is allowed (0: now); records it when 0."""
        with self._lock:
            now = self.clock()
            while self._times and self._times[0] <= now - self.seconds:
                self._times.popleft()
            if len(self._times) < self.count:
                self._times.append(now)
                return 0.0
            return self._times[0] + self.seconds - now

    def take(self, stop: threading.Event | None = None) -> bool:
        """Wait for a slot; False when ``stop`` was set meanwhile."""
        while True:
            wait = self.delay()
            if wait <= 0:
                return True
            if stop is not None:
                if stop.wait(wait):
                    return False
            else:
                time.sleep(wait)


LOGINS = Pacer(LOGINS_PER_MINUTE, 60.0)


# ---------------------------------------------------------------- counting
@dataclass
class Failure:
    t: float  # seconds since the load started
    kind: str
    what: str  # HTTP status or exception name
    body: str
    request_id: str

    def __str__(self) -> str:
        return f"+{self.t:.1f}s {self.kind} {self.what} rid={self.request_id} {self.body!r}"


@dataclass
class UserLoadResult:
    users: int = 0
    total: int = 0
    failed: int = 0
    write_failed: int = 0
    seconds: float = 0.0
    ok: Counter = field(default_factory=Counter)  # kind -> n
    http: Counter = field(default_factory=Counter)  # (kind, status) -> n
    conn: Counter = field(default_factory=Counter)  # (kind, exception name) -> n
    latencies: list = field(default_factory=list)
    # monotonic start time and kind of every failed request (which event caused it)
    failure_times: list = field(default_factory=list)
    # the first FAILURE_SAMPLES failures, then the first of every other (kind, status or error)
    samples: list = field(default_factory=list)
    stale_reopened: int = 0
    # acknowledged writes and their check after the run
    created: int = 0
    edited: int = 0
    deleted: int = 0
    verified_posts: int = 0
    lost: list = field(default_factory=list)  # what was acknowledged and is not so
    # users whose load stopped early or whose posts could not be read back
    incomplete: list = field(default_factory=list)
    unacknowledged_found: int = 0  # posts of failed creates that exist anyway
    cleanup_errors: list = field(default_factory=list)

    def count(self, kind: str, started: float, elapsed: float, status: int | None, error: str | None,
              body: bytes, expected: int, request_id: str, origin: float) -> bool:
        """Count one request (the caller holds the lock); True when it succeeded."""
        self.total += 1
        self.latencies.append(elapsed)
        if status == expected:
            self.ok[kind] += 1
            return True
        self.failed += 1
        if kind in WRITES:
            self.write_failed += 1
        if status is not None:
            self.http[(kind, status)] += 1
        else:
            self.conn[(kind, error or "?")] += 1
        self.failure_times.append((started, kind))
        what = str(status) if status is not None else str(error)
        if len(self.samples) < FAILURE_SAMPLES or not any((s.kind, s.what) == (kind, what) for s in self.samples):
            self.samples.append(Failure(started - origin, kind, what, body[:160].decode("utf-8", "replace"),
                                        request_id))
        return False

    def kinds(self) -> list[str]:
        seen = set(self.ok) | {k for k, _ in self.http} | {k for k, _ in self.conn}
        order = ["me", "list", "accounts", "create", "read", "edit", "search", "delete", "refresh", "login"]
        return [k for k in order if k in seen] + sorted(seen - set(order))

    def per_kind(self) -> str:
        parts = []
        for kind in self.kinds():
            text = f"{kind} {self.ok[kind]} ok"
            http_errors = {s: n for (k, s), n in self.http.items() if k == kind}
            conn_errors = {e: n for (k, e), n in self.conn.items() if k == kind}
            if http_errors:
                text += f" HTTP {dict(sorted(http_errors.items()))}"
            if conn_errors:
                text += f" conn {dict(sorted(conn_errors.items()))}"
            parts.append(text)
        return "; ".join(parts)

    def summary(self) -> str:
        lat = sorted(self.latencies) or [0.0]
        p50 = lat[len(lat) // 2] * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        rate = self.total / max(self.seconds, 0.001)
        text = (f"{self.users} users, {self.total} requests in {self.seconds:.1f}s ({rate:.0f} req/s), "
                f"{self.failed} failed ({self.write_failed} writes): {self.per_kind()}; p50 {p50:.1f} ms, "
                f"p99 {p99:.1f} ms; {self.stale_reopened} idle keep-alive connections closed by the server and "
                f"reopened; acknowledged writes: {self.created} creates, {self.edited} edits, {self.deleted} deletes, "
                f"{len(self.lost)} lost ({self.verified_posts} posts read back)")
        if self.incomplete:
            text += f"; INCOMPLETE: {'; '.join(self.incomplete)}"
        if self.unacknowledged_found:
            text += f"; {self.unacknowledged_found} posts of failed creates exist"
        return text

    def report(self) -> str:
        """The summary, then the sample of failures and the lost writes (assertion messages)."""
        lines = [self.summary()]
        if self.samples:
            lines.append(f"{len(self.samples)} of {self.failed} failures (the first {FAILURE_SAMPLES}, then the first "
                         "of each other kind and status or error):")
            lines += [f"  {s}" for s in self.samples]
        if self.lost:
            lines.append(f"acknowledged writes lost ({len(self.lost)}):")
            lines += [f"  {item}" for item in self.lost[:FAILURE_SAMPLES]]
        return "\n".join(lines)

    def failures_between(self, start: float, end: float) -> Counter:
        """Failed requests by kind that started within [start, end] (monotonic)."""
        return Counter(kind for t, kind in self.failure_times if start <= t <= end)

    def requests_per_second(self) -> float:
        return self.total / max(self.seconds, 0.001)


# ---------------------------------------------------------------- accounts
@dataclass
class Session:
    email: str
    password: str = field(repr=False)
    access: str = field(default="", repr=False)
    refresh: str = field(default="", repr=False)
    renew_at: float = 0.0  # monotonic: refresh from then on

    def take(self, body: dict, margin: float | None) -> None:
        """The tokens of a login or refresh answer."""
        self.access, self.refresh = body["access_token"], body["refresh_token"]
        lifetime = float(body.get("expires_in") or 900)
        self.renew_at = time.monotonic() + lifetime - (min(120.0, lifetime / 3) if margin is None else margin)


def account(secret: bytes, index: int, domain: str) -> tuple[str, str]:
    """(email, password) of load user ``index``, derived from ``secret``."""
    tag = hmac.new(secret, b"ssai-e2e-load:tag", hashlib.sha256).hexdigest()[:8]
    email = f"e2e-load-{tag}-{index:02d}@{domain}"
    digest = hmac.new(secret, f"ssai-e2e-load:password:{email}".encode(), hashlib.sha256).digest()
    return email, base64.urlsafe_b64encode(digest).decode().rstrip("=")


# Logged-in sessions of this process: (edge address, email) -> Session.
_SESSIONS: dict[tuple[str, str], Session] = {}
_SESSIONS_LOCK = threading.Lock()


@dataclass
class Reply:
    status: int | None
    data: object
    body: bytes
    error: str | None
    ok: bool
    retry_after: float = 0.0


class VirtualUser:
    """One user: its session, its connection, the posts it was told it has."""

    def __init__(self, load: UserLoad, index: int, session: Session):
        self.load, self.index, self.session = load, index, session
        self.conn: http.client.HTTPConnection | None = None
        self.seq = 0
        self.relogin = False
        self.live: dict[int, tuple[str | None, str]] = {}  # id -> acknowledged (title, body), oldest first
        self.maybe: dict[int, list] = {}  # id -> contents of writes without an answer
        self.maybe_deleted: set[int] = set()
        self.deleted: set[int] = set()
        self.before: set[int] = set()  # posts present at setup that could not be removed

    # ------------------------------------------------------------ transport
    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def call(self, kind: str, method: str, path: str, payload: dict | None = None, *, auth: bool = True,
             measured: bool = True) -> Reply:
        self.seq += 1
        rid = f"e2e-{self.load.run_id}-u{self.index:02d}-{self.seq:06d}"
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json", "X-Request-ID": rid}
        body = None
        if payload is not None:
            body = json.dumps(payload)
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.session.access}"
        status, error, raw, retry_after = None, None, b"", 0.0
        t0 = time.monotonic()
        try:
            if self.conn is not None and dropped(self.conn):
                self.close()
                with self.load.lock:
                    self.load.result.stale_reopened += 1
            if self.conn is None:
                self.conn = self.load.edge.connection(self.load.timeout)
            self.conn.request(method, API + path, body=body, headers=headers)
            resp = self.conn.getresponse()
            raw = resp.read()
            status = resp.status
            try:
                retry_after = float(resp.getheader("Retry-After") or 0)
            except ValueError:
                retry_after = 0.0
            if resp.will_close:
                self.close()
        except Exception as exc:  # noqa: BLE001 - every error counts as a failure
            error = type(exc).__name__
            self.close()
        expected = EXPECTED.get(kind, 200)
        if measured:
            with self.load.lock:
                ok = self.load.result.count(kind, t0, time.monotonic() - t0, status, error, raw, expected, rid,
                                            self.load.started)
        else:
            ok = status == expected
        data = None
        if raw:
            try:
                data = json.loads(raw)
            except ValueError:
                data = None
        return Reply(status, data, raw, error, ok, retry_after)

    # ------------------------------------------------------------ setup (not measured)
    def _setup_call(self, what: str, method: str, path: str, payload: dict | None = None, *,
                    auth: bool = True, accept=(200,)) -> Reply:
        """A setup request, retried on connection errors, 5xx and 429 (after Retry-After)."""
        deadline = self.load.setup_deadline
        while True:
            reply = self.call(what, method, path, payload, auth=auth, measured=False)
            if reply.status in accept:
                return reply
            if reply.status is not None and reply.status not in (429, 502, 503, 504):
                return reply
            wait = max(reply.retry_after, 1.0) if reply.status == 429 else 2.0
            if time.monotonic() + wait > deadline:
                raise LoadSetupError(f"user {self.index}: {what} {method} {path}: {reply.status or reply.error} "
                                     f"until the setup bound ({SETUP_MAX_SECONDS}s)")
            if reply.status == 429:
                print(f"userload: {what} of user {self.index} rate limited by the edge: waiting {wait:.0f}s",
                      file=sys.stderr)
            time.sleep(wait)

    def login(self, measured: bool) -> Reply:
        if not LOGINS.take(None if not measured else self.load.stop_event):
            return Reply(None, None, b"", "stopped", False)
        creds = {"email": self.session.email, "password": self.session.password}
        if measured:
            reply = self.call("login", "POST", "/auth/login", creds, auth=False)
        else:
            reply = self._setup_call("login", "POST", "/auth/login", creds, auth=False, accept=(200, 401))
        if reply.ok and isinstance(reply.data, dict):
            self.session.take(reply.data, self.load.refresh_margin)
            self.relogin = False
        return reply

    def register(self) -> None:
        reply = self._setup_call("register", "POST", "/auth/register",
                                 {"email": self.session.email, "password": self.session.password,
                                  "name": f"E2E load user {self.index}"}, auth=False, accept=(201, 409))
        if reply.status not in (201, 409):
            raise LoadSetupError(f"user {self.index}: sign-up answered {reply.status or reply.error}: "
                                 f"{reply.body[:200]!r}")

    def ready(self) -> None:
        """Logged in with a working access token; no post left from an earlier run."""
        self.logged_in()
        for post in self.all_posts():
            reply = self._setup_call("delete", "DELETE", f"/posts/{post['id']}", accept=(204, 404))
            if reply.status not in (204, 404):
                self.before.add(post["id"])

    def logged_in(self) -> None:
        """A working access token: the session's (refreshed when due), else a login (after
        a sign-up when the accounts are not there)."""
        if self.session.access:
            if time.monotonic() >= self.session.renew_at:
                reply = self._setup_call("refresh", "POST", "/auth/refresh", {"refresh_token": self.session.refresh},
                                         auth=False, accept=(200, 401))
                if reply.status == 200 and isinstance(reply.data, dict):
                    self.session.take(reply.data, self.load.refresh_margin)
                else:
                    self.session.access = ""
            if self.session.access and self._setup_call("me", "GET", "/auth/me", accept=(200, 401)).status != 200:
                self.session.access = ""
        if not self.session.access:
            if not self.load.accounts_missing:
                reply = self.login(measured=False)
                if reply.status == 401:
                    # Not there (a new lab, or a database restored from before): create the
                    # accounts first from now on, so no other login fails (fail2ban).
                    self.load.accounts_missing = True
            if not self.session.access:
                self.register()
                reply = self.login(measured=False)
                if reply.status != 200:
                    raise LoadSetupError(f"user {self.index} ({self.session.email}): login after sign-up answered "
                                         f"{reply.status or reply.error}: {reply.body[:200]!r}")

    def all_posts(self) -> list[dict]:
        """Every post of this user (setup and verification: retried, not measured)."""
        posts, page = [], 1
        while True:
            reply = self._setup_call("list", "GET", f"/posts?page={page}&per_page=100")
            if reply.status != 200 or not isinstance(reply.data, dict):
                raise LoadSetupError(f"user {self.index}: listing posts answered {reply.status or reply.error}")
            posts += reply.data.get("items", [])
            if page >= int(reply.data.get("pages") or 0):
                return posts
            page += 1

    # ------------------------------------------------------------ the load
    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - reported, the drill fails on it
            with self.load.lock:
                self.load.result.incomplete.append(f"user {self.index} stopped: {type(exc).__name__}: {exc}")
        finally:
            self.close()

    def _run(self) -> None:
        load = self.load
        interval = 1.0 / load.rps
        steps = self.visits()
        # The users' requests spread over the interval; a user far behind (a slow answer)
        # does not send a burst to catch up.
        for _ in paced(load.stop_event, interval, load.started, load.max_seconds, load.bound_reached,
                       first_delay=interval * self.index / max(load.users, 1), catch_up=5):
            if self.relogin:
                if self.login(measured=True).status == 401:
                    # Never a second wrong login (fail2ban bans the load's address after 10).
                    with load.lock:
                        load.result.incomplete.append(f"user {self.index} stopped: its login was refused (401)")
                    break
            elif time.monotonic() >= self.session.renew_at:
                self.refresh()
            else:
                next(steps)

    def refresh(self) -> None:
        reply = self.call("refresh", "POST", "/auth/refresh", {"refresh_token": self.session.refresh}, auth=False)
        if reply.ok and isinstance(reply.data, dict):
            self.session.take(reply.data, self.load.refresh_margin)
        else:
            # Its refresh token may have rotated without the answer reaching us: log in again.
            self.relogin = True

    def checked(self, reply: Reply) -> Reply:
        if reply.status == 401:
            self.session.renew_at = 0.0  # refresh before the next request
        return reply

    def visits(self):
        """One request per step: the dashboard's reads, then a post written, read, edited."""
        n = 0
        while True:
            n += 1
            self.checked(self.call("me", "GET", "/auth/me"))
            yield
            self.checked(self.call("list", "GET", "/posts?page=1&per_page=10"))
            yield
            self.checked(self.call("accounts", "GET", "/social/accounts"))
            yield
            post_id = self.create(n)
            yield
            if post_id is not None:
                self.read(post_id)
                yield
                if post_id in self.live:
                    self.edit(post_id, n)
                    yield
                self.checked(self.call("search", "GET", f"/posts?q={self.load.run_id}-{self.index}-{n}&per_page=10"))
                yield
            if len(self.live) > self.load.keep_posts:
                self.delete(next(iter(self.live)))
                yield

    def _content(self, n: int, what: str) -> tuple[str, str]:
        title = f"e2e load {self.load.run_id}-{self.index}-{n}"
        return title, f"{what} by virtual user {self.index} ({secrets.token_hex(6)})"

    def create(self, n: int) -> int | None:
        title, body = self._content(n, "written")
        reply = self.checked(self.call("create", "POST", "/posts", {"title": title, "body": body,
                                                                    "platforms": ["twitter"]}))
        if reply.ok and isinstance(reply.data, dict) and isinstance(reply.data.get("id"), int):
            self.live[reply.data["id"]] = (title, body)
            with self.load.lock:
                self.load.result.created += 1
            return reply.data["id"]
        return None

    def _gone(self, kind: str, post_id: int) -> None:
        """A post it was told exists answered 404: an acknowledged write is lost."""
        if post_id not in self.maybe_deleted:
            with self.load.lock:
                self.load.result.lost.append(f"user {self.index}: post {post_id} acknowledged, then 404 on {kind}")
        self.live.pop(post_id, None)

    def read(self, post_id: int) -> None:
        reply = self.checked(self.call("read", "GET", f"/posts/{post_id}"))
        if reply.status == 404:
            self._gone("read", post_id)
        elif reply.ok and isinstance(reply.data, dict):
            got = (reply.data.get("title"), reply.data.get("body"))
            if got != self.live[post_id] and got not in self.maybe.get(post_id, []):
                with self.load.lock:
                    self.load.result.lost.append(f"user {self.index}: post {post_id} read back as {got!r}, "
                                                 f"acknowledged {self.live[post_id]!r}")

    def edit(self, post_id: int, n: int) -> None:
        title, body = self._content(n, "edited")
        reply = self.checked(self.call("edit", "PATCH", f"/posts/{post_id}", {"title": title, "body": body}))
        if reply.status == 404:
            self._gone("edit", post_id)
        elif reply.ok:
            self.live[post_id] = (title, body)
            with self.load.lock:
                self.load.result.edited += 1
        else:
            self.maybe.setdefault(post_id, []).append((title, body))

    def delete(self, post_id: int) -> None:
        reply = self.checked(self.call("delete", "DELETE", f"/posts/{post_id}"))
        if reply.status == 404:
            self._gone("delete", post_id)
        elif reply.ok:
            self.live.pop(post_id)
            self.deleted.add(post_id)
            with self.load.lock:
                self.load.result.deleted += 1
        elif reply.status is None or reply.status >= 500:
            self.maybe_deleted.add(post_id)
            self.live.pop(post_id)  # whether it still exists is checked after the run

    # ------------------------------------------------------------ after the run
    def verify(self) -> list[dict]:
        """Compare the posts the app has with what this user was told; return them."""
        self.logged_in()
        posts = self.all_posts()
        existing = {p["id"]: (p.get("title"), p.get("body")) for p in posts}
        lost = []
        for post_id, want in self.live.items():
            got = existing.get(post_id)
            if got is None:
                lost.append(f"user {self.index}: post {post_id} acknowledged (last {want!r}), missing after the run")
            elif got != want and got not in self.maybe.get(post_id, []):
                lost.append(f"user {self.index}: post {post_id} is {got!r} after the run, acknowledged {want!r}")
        for post_id in sorted(self.deleted & set(existing)):
            lost.append(f"user {self.index}: post {post_id} deleted (204) and there again after the run")
        known = set(self.live) | self.deleted | self.maybe_deleted | self.before
        with self.load.lock:
            self.load.result.lost += lost
            self.load.result.verified_posts += len(set(self.live) & set(existing))
            self.load.result.unacknowledged_found += len(set(existing) - known)
        return posts

    def clean_up(self, posts: list[dict]) -> None:
        for post in posts:
            reply = self.call("delete", "DELETE", f"/posts/{post['id']}", measured=False)
            if reply.status not in (204, 404):
                with self.load.lock:
                    self.load.result.cleanup_errors.append(f"user {self.index}: post {post['id']}: "
                                                           f"{reply.status or reply.error}")
        self.close()


class UserLoad:
    """N virtual users through the edge in background threads, bounded by max_seconds
    whatever happens (``ran_out`` tells that the bound, not the test, stopped it).
    ``edge``: anything with ``connection(timeout)`` returning an http.client connection
    to the service (labkit.edge.Edge: the VIP with TLS and the service's Host) and
    ``domain`` (the accounts' email domain). ``secret``: bytes the accounts' passwords are
    derived from. ``refresh_margin``: seconds before the access token's expiry when it is
    refreshed (default: a third of its lifetime, at most 120 s)."""

    def __init__(self, edge, secret: bytes, users: int = USERS, rps: float = USER_RPS,
                 max_seconds: float = MAX_SECONDS, keep_posts: int = KEEP_POSTS, refresh_margin: float | None = None,
                 timeout: float = 10.0, email_domain: str | None = None):
        self.edge, self.secret, self.users, self.rps = edge, secret, users, rps
        self.max_seconds, self.keep_posts, self.refresh_margin, self.timeout = max_seconds, keep_posts, refresh_margin, timeout
        self.domain = email_domain or getattr(edge, "domain", "example.test")
        self.run_id = secrets.token_hex(3)
        self.result = UserLoadResult(users=users)
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.ran_out = False
        self.accounts_missing = False
        self.started = 0.0
        self.setup_deadline = 0.0
        self.vusers: list[VirtualUser] = []
        self._threads: list[threading.Thread] = []
        self._stopped = False

    def _session(self, index: int) -> Session:
        email, password = account(self.secret, index, self.domain)
        key = (str(getattr(self.edge, "address", "")), email)
        with _SESSIONS_LOCK:
            return _SESSIONS.setdefault(key, Session(email, password))

    def start(self) -> UserLoad:
        """Make every user ready (not measured), then start the load."""
        self.setup_deadline = time.monotonic() + SETUP_MAX_SECONDS
        self.started = time.monotonic()  # request ids and sample times of the setup
        t0 = time.monotonic()
        self.vusers = [VirtualUser(self, i, self._session(i)) for i in range(1, self.users + 1)]
        for user in self.vusers:
            user.ready()
        setup = time.monotonic() - t0
        if setup > 5:
            print(f"userload: {self.users} users ready in {setup:.0f}s", file=sys.stderr)
        self.started = time.monotonic()
        for user in self.vusers:
            thread = threading.Thread(target=user.run, name=f"vuser-{user.index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def bound_reached(self) -> None:
        """A user's load reached max_seconds (the bound, not the test, stopped it)."""
        self.ran_out = True

    def stop(self) -> None:
        """Stop the users (the load's figures end here)."""
        if self._stopped:
            return
        self._stopped = True
        self.stop_event.set()
        for thread in self._threads:
            thread.join(timeout=60)
        self.result.seconds = time.monotonic() - self.started

    def verify(self, clean_up: bool = True) -> None:
        """Read every user's posts back (acknowledged writes lost), then delete them."""
        self.setup_deadline = time.monotonic() + 120  # retries of the reads back, not measured
        for user in self.vusers:
            try:
                posts = user.verify()
            except (LoadSetupError, KeyError, TypeError, ValueError) as exc:
                self.result.incomplete.append(f"user {user.index}: posts not read back: {exc}")
                continue
            if clean_up:
                user.clean_up(posts)

    def __enter__(self) -> UserLoad:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self.verify()
        print("user load:", self.result.summary(), "(stopped by its time bound)" if self.ran_out else "",
              file=sys.stderr)
        if self.result.cleanup_errors:
            print("user load: posts not removed:", "; ".join(self.result.cleanup_errors[:10]), file=sys.stderr)


def lab_user_load(edge, **kwargs) -> UserLoad:
    """A UserLoad on the lab: the accounts' secret is the lab's vault password file (never
    printed; a rebuilt lab has a new one, hence new accounts)."""
    return UserLoad(edge, VAULT_PASS.read_bytes(), **kwargs)
