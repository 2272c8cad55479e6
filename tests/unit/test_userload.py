"""tests/labkit/userload.py, the drills' user traffic, without the lab.

Its counting and report, its pacing and its accounts are checked as plain code. The
load itself runs against the app started here (Gunicorn from app/.venv on 127.0.0.1,
SQLite, the access token's shortest lifetime so that it is refreshed within seconds): the
users sign up, log in, read, write, edit, search, delete and refresh with 0 failed
requests and every acknowledged write is read back; a post removed or changed behind a
user's back is reported as a lost write; a refused connection and a 503 are counted per
request kind (a stand-in edge points the users at a closed port, then at a server that
answers 503, then back at the app). Those tests skip without app/.venv
(`make -C app venv`).
"""
import http.client
import json
import os
import pathlib
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from labkit import userload  # noqa: E402

APP_PYTHON = REPO / "app" / ".venv" / "bin" / "python"


# ---------------------------------------------------------------- plain code
def test_pacer_allows_count_per_window_then_says_how_long_to_wait():
    now = [100.0]
    pacer = userload.Pacer(2, 60.0, clock=lambda: now[0])
    assert pacer.delay() == 0 and pacer.delay() == 0
    assert pacer.delay() == pytest.approx(60.0)
    now[0] = 130.0
    assert pacer.delay() == pytest.approx(30.0)
    now[0] = 160.0  # both left the window: two more
    assert pacer.delay() == 0 and pacer.delay() == 0
    assert pacer.delay() == pytest.approx(60.0)


def test_accounts_are_derived_from_the_secret_and_pass_the_apps_password_rules():
    email, password = userload.account(b"one", 3, "socialsphere.lab")
    assert userload.account(b"one", 3, "socialsphere.lab") == (email, password)
    assert email.startswith("e2e-load-") and email.endswith("-03@socialsphere.lab")
    other_email, other_password = userload.account(b"two", 3, "socialsphere.lab")
    assert other_email != email and other_password != password  # a new lab: new accounts
    assert len(password) >= 10 and len(set(password)) >= 4  # app/socialsphere/auth: PASSWORD, _weak
    assert repr(userload.Session(email, password)).count(password) == 0


def count(result, kind, status=None, error=None, expected=200, t=10.0):
    return result.count(kind, t, 0.01, status, error, b'{"error": "x"}', expected, f"rid-{kind}", 0.0)


def test_result_counts_per_kind_and_keeps_a_sample_of_failures():
    result = userload.UserLoadResult(users=2, seconds=10.0)
    assert count(result, "me", 200)
    assert count(result, "create", 201, expected=201)
    assert not count(result, "create", 502, expected=201, t=12.0)
    assert not count(result, "edit", error="ConnectionResetError", t=13.0)
    assert not count(result, "list", 429, t=14.0)  # a rate-limited request fails too
    assert (result.total, result.failed, result.write_failed) == (5, 3, 2)
    assert result.http == {("create", 502): 1, ("list", 429): 1}
    assert result.conn == {("edit", "ConnectionResetError"): 1}
    assert result.failures_between(11.0, 13.5) == {"create": 1, "edit": 1}
    summary = result.summary()
    assert "5 requests in 10.0s (0 req/s)" in summary
    assert "3 failed (2 writes)" in summary
    assert "me 1 ok; list 0 ok HTTP {429: 1}; create 1 ok HTTP {502: 1}; edit 0 ok conn {'ConnectionResetError': 1}" \
        in summary
    report = result.report()
    assert "3 of 3 failures (the first 20, then the first of each other kind and status or error):" in report
    assert "+12.0s create 502 rid=rid-create" in report
    for _ in range(40):
        count(result, "read", 500)
    assert len(result.samples) == userload.FAILURE_SAMPLES
    count(result, "read", 503)
    count(result, "read", 503)
    count(result, "delete", 500, expected=204)
    assert [(s.kind, s.what) for s in result.samples[userload.FAILURE_SAMPLES:]] == [("read", "503"), ("delete", "500")]


def test_result_reports_lost_writes_and_incomplete_users():
    result = userload.UserLoadResult(users=1, created=3, edited=2, deleted=1, verified_posts=1)
    result.lost.append("user 1: post 7 acknowledged (last ('t', 'b')), missing after the run")
    result.incomplete.append("user 2: listing posts answered 503")
    assert "acknowledged writes: 3 creates, 2 edits, 1 deletes, 1 lost (1 posts read back)" in result.summary()
    assert "INCOMPLETE: user 2: listing posts answered 503" in result.summary()
    assert "acknowledged writes lost (1):\n  user 1: post 7" in result.report()


# ---------------------------------------------------------------- against the app
def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app_port(tmp_path_factory):
    if not APP_PYTHON.exists():
        pytest.skip("the app's venv (app/.venv: make -C app venv) is missing")
    from cryptography.fernet import Fernet

    tmp = tmp_path_factory.mktemp("app")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOCIALSPHERE_", "GUNICORN_"))}
    env.update({
        "SOCIALSPHERE_ENV": "testing", "SOCIALSPHERE_INSTANCE_PATH": str(tmp),
        "SOCIALSPHERE_DATABASE_URL": "sqlite:///" + str(tmp / "app.db"), "SOCIALSPHERE_LOG_LEVEL": "WARNING",
        "SOCIALSPHERE_SECRET_KEY": secrets.token_urlsafe(48),
        "SOCIALSPHERE_JWT_KEYS": json.dumps({"k1": secrets.token_urlsafe(48)}), "SOCIALSPHERE_JWT_ACTIVE_KID": "k1",
        "SOCIALSPHERE_TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "SOCIALSPHERE_ACCESS_TOKEN_TTL": "30",  # the shortest the app accepts: refreshed within the test
        "PYTHONPATH": str(REPO / "app"),
    })
    flask = [str(APP_PYTHON), "-m", "flask", "--app", "socialsphere.wsgi"]
    res = subprocess.run([*flask, "db", "upgrade"], env=env, cwd=tmp, capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.returncode == 0, res.stderr
    port = free_port()
    # One sync worker: SQLite takes one writer at a time.
    env.update({"GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1"})
    log = open(tmp / "gunicorn.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([str(APP_PYTHON), "-m", "gunicorn", "-c", "python:socialsphere.gunicorn_conf",
                             "socialsphere.wsgi:app"], env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp / "gunicorn.log").read_text()[-3000:]
                time.sleep(0.2)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


class LocalEdge:
    """Stands in for labkit.edge.Edge: plain HTTP to a port of 127.0.0.1."""

    def __init__(self, port):
        self.port, self.address, self.domain = port, f"127.0.0.1:{port}", "example.test"

    def connection(self, timeout=10.0):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)


@pytest.fixture(autouse=True)
def no_login_pacing(monkeypatch):
    # The edge's login limit is HAProxy's; here every test logs in its own users.
    monkeypatch.setattr(userload, "LOGINS", userload.Pacer(1000, 60.0))


def api(port, method, path, token, payload=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn.request(method, "/api/v1" + path, body=None if payload is None else json.dumps(payload), headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, (json.loads(body) if body else None)


def test_users_read_write_refresh_and_every_acknowledged_write_is_there(app_port):
    secret = secrets.token_bytes(16)
    load = userload.UserLoad(LocalEdge(app_port), secret, users=3, rps=15, keep_posts=2, refresh_margin=27)
    with load:
        time.sleep(6)  # the tokens live 30 s, renewed 27 s before: after 3 s
    result = load.result
    print(result.report())
    assert result.failed == 0, result.report()
    assert set(result.kinds()) == {"me", "list", "accounts", "create", "read", "edit", "search", "delete", "refresh"}
    assert result.ok["refresh"] >= 3
    assert result.created > 0 and result.edited > 0 and result.deleted > 0
    assert result.lost == [] and result.incomplete == []
    assert result.verified_posts > 0
    assert result.total / result.seconds > 20
    # Cleaned up: the users have no post left; their sessions stay for the next load.
    session = load.vusers[0].session
    assert api(app_port, "GET", "/posts", session.access)[1]["total"] == 0

    again = userload.UserLoad(LocalEdge(app_port), secret, users=3, rps=15, keep_posts=2, refresh_margin=27)
    logins = []
    original = userload.VirtualUser.login
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(userload.VirtualUser, "login", lambda self, measured: logins.append(self.index) or
                   original(self, measured))
        with again:
            time.sleep(1)
    assert logins == [], "the second load logged in again instead of reusing the sessions"
    assert again.result.failed == 0, again.result.report()


def test_a_post_lost_or_changed_behind_a_users_back_is_reported(app_port):
    load = userload.UserLoad(LocalEdge(app_port), secrets.token_bytes(16), users=2, rps=15, keep_posts=5)
    load.start()
    time.sleep(2)
    load.stop()
    user = load.vusers[0]
    assert len(user.live) >= 2, user.live
    gone, changed = list(user.live)[:2]
    token = user.session.access
    assert api(app_port, "DELETE", f"/posts/{gone}", token)[0] == 204
    assert api(app_port, "PATCH", f"/posts/{changed}", token, {"body": "changed behind its back"})[0] == 200
    load.verify()
    lost = load.result.lost
    assert len(lost) == 2, load.result.report()
    assert f"user 1: post {gone} acknowledged" in lost[0] and "missing after the run" in lost[0]
    assert f"user 1: post {changed} is" in lost[1] and "changed behind its back" in lost[1]


class Answer503(BaseHTTPRequestHandler):
    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = b'{"error": "unavailable"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, *args):
        pass


class SwitchableEdge(LocalEdge):
    def __init__(self, port):
        super().__init__(port)
        self.app_port = port

    def point_at(self, port):
        self.port = port


def test_refused_connections_and_errors_are_counted_per_kind_and_the_users_recover(app_port):
    edge = SwitchableEdge(app_port)
    load = userload.UserLoad(edge, secrets.token_bytes(16), users=2, rps=20, keep_posts=3, timeout=2)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer503)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with load:
            time.sleep(1)
            edge.point_at(free_port())  # nothing listens there
            time.sleep(1)
            edge.point_at(server.server_address[1])
            time.sleep(1)
            edge.point_at(app_port)
            time.sleep(3)
    finally:
        server.shutdown()
    result = load.result
    print(result.report())
    conn_kinds = {kind for kind, error in result.conn if error == "ConnectionRefusedError"}
    http_kinds = {kind for kind, status in result.http if status == 503}
    assert conn_kinds and http_kinds, result.report()
    assert result.failed == sum(result.http.values()) + sum(result.conn.values())
    assert result.write_failed == sum(n for (k, _), n in (result.http + result.conn).items() if k in userload.WRITES)
    assert any("503" in str(s) for s in result.samples) and any("ConnectionRefusedError" in str(s) for s in result.samples)
    # Back on the app, the users go on (reads succeed again) and nothing acknowledged is lost.
    assert result.lost == [] and result.incomplete == [], result.report()
    late = [t for t, _ in result.failure_times if t > load.started + 4.5]
    assert late == [], f"failures after the app was back: {late}"


def test_a_refused_login_during_the_load_stops_that_user_instead_of_trying_again(app_port):
    load = userload.UserLoad(LocalEdge(app_port), secrets.token_bytes(16), users=2, rps=20)
    logins = []
    original = userload.VirtualUser.login
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(userload.VirtualUser, "login", lambda self, measured: logins.append((self.index, measured)) or
                   original(self, measured))
        with load:
            user = load.vusers[0]
            user.session.password = "not-its-password"  # noqa: S105
            user.relogin = True
            time.sleep(1.5)
    assert [login for login in logins if login[1]] == [(1, True)], "a second wrong login (fail2ban counts them)"
    assert load.result.http[("login", 401)] == 1
    assert load.result.incomplete == ["user 1 stopped: its login was refused (401)"]
    assert load.result.ok["me"] > 0  # user 2 went on
