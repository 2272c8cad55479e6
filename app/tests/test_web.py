"""The page and asset routes of the ``socialsphere.web`` blueprint, and the pages in a browser.

The route tests run against the real application (the ``client`` fixture of
conftest.py) when it is available, else against a bare Flask app with only the
web blueprint.

The browser tests (end of file) drive headless Chromium over the DevTools
protocol; they are skipped when Chromium is not installed. Deselect them with
``-k "not browser"``; set ``SOCIALSPHERE_SCREENSHOTS=<dir>`` to save screenshots.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask import Blueprint, Flask, jsonify, request
from werkzeug.serving import make_server

from socialsphere import web

APP_DIR = Path(__file__).resolve().parent.parent
IMMUTABLE = "public, max-age=31536000, immutable"
PAGE_URLS = sorted(web.PAGES)


@pytest.fixture
def web_client(request):
    """The test client of the full app if conftest provides one, else of a bare app."""
    try:
        return request.getfixturevalue("client")
    except pytest.FixtureLookupError:
        app = Flask("socialsphere_web_test", static_folder=None, root_path=str(APP_DIR))
        app.config["TESTING"] = True
        app.register_blueprint(web.bp)
        return app.test_client()


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.inline: list[str] = []
        self._script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self._script = True
            if not a.get("src"):
                self.inline.append("<script> without src")
        if "style" in a:
            self.inline.append(f"<{tag} style>")
        for key in ("src", "href"):
            if a.get(key, "").startswith("/static/"):
                self.refs.append(a[key])

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = False

    def handle_data(self, data):
        if self._script and data.strip():
            self.inline.append("inline script body")


def _get(client, url, **kwargs):
    response = client.get(url, **kwargs)
    data = response.get_data()
    response.close()
    return response, data


@pytest.mark.parametrize("url", PAGE_URLS)
def test_page_is_served_with_no_cache(web_client, url):
    response, body = _get(web_client, url)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert body == web.page_path(url).read_bytes()
    assert body.startswith(b"<!doctype html>")


@pytest.mark.parametrize("url", PAGE_URLS)
def test_page_references_only_hashed_assets_that_are_served(web_client, url):
    _, body = _get(web_client, url)
    parser = _Refs()
    parser.feed(body.decode("utf-8"))
    assert parser.inline == [], f"{url}: not CSP compatible: {parser.inline}"
    assert parser.refs, f"{url}: no assets referenced"
    for ref in parser.refs:
        assert re.search(r"\.[0-9a-f]{8}\.[a-z0-9]+$", ref), f"{url}: unhashed {ref}"
        response, _ = _get(web_client, ref)
        assert response.status_code == 200, ref
        assert response.headers["Cache-Control"] == IMMUTABLE, ref


def test_pages_accept_token_query_strings(web_client):
    for url in ("/verify-email?token=abc.def", "/reset-password?token=x", "/login?next=%2Fapp"):
        response, _ = _get(web_client, url)
        assert response.status_code == 200, url


def test_head_request(web_client):
    response = web_client.head("/login")
    response.close()
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-cache"


def test_page_conditional_get(web_client):
    response, _ = _get(web_client, "/app")
    etag = response.headers["ETag"]
    again, body = _get(web_client, "/app", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert body == b""


@pytest.mark.parametrize(
    "ext, mimetype",
    [(".js", "text/javascript"), (".css", "text/css"), (".svg", "image/svg+xml")],
)
def test_hashed_assets_content_type_and_cache(web_client, ext, mimetype):
    manifest = json.loads((web.STATIC_DIR / "manifest.json").read_text("utf-8"))
    names = [n for n in manifest["files"] if n.endswith(ext)]
    assert names
    for name in names:
        response, body = _get(web_client, f"/static/{name}")
        assert response.status_code == 200
        assert response.mimetype == mimetype
        assert response.headers["Cache-Control"] == IMMUTABLE
        assert response.headers.get("X-Content-Type-Options", "nosniff") == "nosniff"
        assert body == (web.STATIC_DIR / name).read_bytes()


def test_asset_conditional_get(web_client):
    manifest = json.loads((web.STATIC_DIR / "manifest.json").read_text("utf-8"))
    name = manifest["assets"]["js/api.js"]
    response, _ = _get(web_client, f"/static/{name}")
    etag = response.headers["ETag"]
    again, _ = _get(web_client, f"/static/{name}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.headers["Cache-Control"] == IMMUTABLE


def test_manifest_is_served_and_not_cached(web_client):
    response, body = _get(web_client, "/static/manifest.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-cache"
    manifest = json.loads(body)
    assert manifest["assets"]["css/style.css"].startswith("css/style.")


@pytest.mark.parametrize(
    "url",
    [
        "/static/js/nope.12345678.js",
        "/static/js/api.js",  # logical names are not served: only hashed ones exist
        "/static/css",
        "/static/",
        "/static/../web/__init__.py",
        "/static/%2e%2e/web/__init__.py",
        "/static/.hidden",
        "/nope",
    ],
)
def test_unknown_paths_404(web_client, url):
    response, body = _get(web_client, url)
    assert response.status_code == 404
    assert b"__init__" not in body


def test_pages_only_answer_get_and_head(web_client):
    response = web_client.post("/login")
    response.close()
    assert response.status_code == 405


def test_security_headers_when_served_by_the_full_app(request, web_client):
    if "client" not in request.fixturenames:
        pytest.skip("conftest provides no full-app client")
    response, _ = _get(web_client, "/app")
    csp = response.headers.get("Content-Security-Policy", "")
    assert "default-src 'self'" in csp
    assert "'unsafe-inline'" not in csp


# -- optional end-to-end smoke in headless Chromium --------------------------------------
#
# The pages run in a real browser against a stub of the API (so this checks the
# frontend itself: module loading under the production CSP, the cookie refresh
# flow, 401 -> refresh -> retry, login redirect, field errors). Chromium is
# driven over the DevTools protocol on a pipe (--remote-debugging-pipe), so no
# extra Python package is needed. Skipped when Chromium is not installed.


PRODUCTION_CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _stub_api(calls: list[str]) -> Blueprint:
    """Just enough of the API contract for the pages."""
    stub = Blueprint("stub_api", __name__, url_prefix="/api/v1")
    users = {
        "ada@example.com": {
            "id": 1,
            "email": "ada@example.com",
            "name": "Ada",
            "role": "admin",
            "status": "active",
            "email_verified": True,
        },
    }
    sessions: dict[str, str] = {}  # refresh token -> email
    issued = {"n": 0}
    expired: dict[str, str | None] = {"token": None}
    posts = [
        {
            "id": i,
            "title": f"Post {i}",
            "body": f"Body {i}",
            "status": "draft",
            "platforms": ["mastodon"],
            "scheduled_at": None,
            "published_at": None,
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
        }
        for i in range(1, 4)
    ]

    def error(status, code, message, fields=None):
        body = {"error": code, "message": message}
        if fields:
            body["fields"] = fields
        return jsonify(body), status

    def bearer():
        header = request.headers.get("Authorization", "")
        return header.removeprefix("Bearer ") if header.startswith("Bearer ") else None

    def issue(email, response):
        issued["n"] += 1
        refresh_token = f"r{issued['n']}"
        sessions[refresh_token] = email
        response.set_cookie("ss_refresh", refresh_token, httponly=True, samesite="Strict", path="/api/v1/auth")
        return f"fresh-{issued['n']}"

    @stub.before_request
    def record():
        calls.append(f"{request.method} {request.path}")

    @stub.get("/plans")
    def plans():
        return jsonify(
            [
                {
                    "id": 1,
                    "code": "free",
                    "name": "Free",
                    "price_cents": 0,
                    "posts_per_month": 30,
                    "ai_generations_per_month": 20,
                    "connected_accounts": 2,
                    "active": True,
                },
                {
                    "id": 2,
                    "code": "pro",
                    "name": "Pro",
                    "price_cents": 1900,
                    "posts_per_month": None,
                    "ai_generations_per_month": 500,
                    "connected_accounts": 10,
                    "active": True,
                },
            ]
        )

    @stub.post("/auth/login")
    def login():
        data = request.get_json()
        if data.get("email") not in users or data.get("password") != "correct horse":
            return error(401, "invalid_credentials", "wrong email or password")
        body = {
            "token_type": "Bearer",
            "expires_in": 900,
            "user": users[data["email"]],
            "refresh_token": "ignored-by-the-browser",
        }
        response = jsonify(body)
        body["access_token"] = issue(data["email"], response)
        response.set_data(json.dumps(body))
        return response

    @stub.post("/auth/refresh")
    def refresh():
        if request.headers.get("X-Requested-With") != "fetch":
            return error(401, "csrf", "X-Requested-With: fetch required")
        token = request.cookies.get("ss_refresh")
        email = sessions.pop(token, None)
        if email is None:
            return error(401, "invalid_refresh_token", "no session")
        response = jsonify({"token_type": "Bearer", "expires_in": 900, "user": users[email]})
        access = issue(email, response)
        body = response.get_json()
        body["access_token"] = access
        response.set_data(json.dumps(body))
        return response

    @stub.post("/auth/logout")
    def logout():
        sessions.pop(request.cookies.get("ss_refresh"), None)
        response = jsonify({})
        response.status_code = 204
        response.delete_cookie("ss_refresh", path="/api/v1/auth")
        return response

    @stub.get("/auth/me")
    def me():
        if not bearer():
            return error(401, "unauthorized", "missing token")
        return jsonify(
            {
                "user": users["ada@example.com"],
                "subscription": {
                    "plan": {"code": "free", "name": "Free"},
                    "period_start": "2026-01-01T00:00:00Z",
                    "usage": {"posts": 3, "ai_generations": 1, "accounts": 0},
                    "limits": {"posts": 30, "ai_generations": 20, "accounts": 2},
                },
            }
        )

    def token_expired() -> bool:
        """The first token used for posts/accounts "expires" then: both parallel calls get 401."""
        token = bearer()
        if expired["token"] is None:
            expired["token"] = token
        return token is None or token == expired["token"]

    @stub.get("/posts")
    def list_posts():
        if token_expired():
            return error(401, "token_expired", "access token expired")
        return jsonify({"items": posts, "page": 1, "per_page": 10, "total": len(posts), "pages": 1})

    @stub.post("/posts")
    def create_post():
        data = request.get_json()
        if len(data.get("body", "")) > 20:
            fields = {"body": "at most 20 characters"}
            return error(422, "validation_error", "invalid input", fields)
        post = dict(posts[0], id=len(posts) + 1, title=data.get("title"), body=data["body"])
        posts.insert(0, post)
        return jsonify(post), 201

    @stub.post("/ai/generate")
    def generate():
        data = request.get_json()
        return jsonify(
            {
                "caption": f"All about {data['topic']}",
                "hashtags": ["stub", "ai"],
                "provider": "offline",
            }
        )

    @stub.get("/social/accounts")
    def accounts():
        if token_expired():
            return error(401, "token_expired", "access token expired")
        return jsonify({"items": []})

    return stub


def _high_fd(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class _Browser:
    """A minimal DevTools-protocol client over --remote-debugging-pipe."""

    def __init__(self, binary: str, profile: str) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # keep the child's ends clear of fds 3 and 4, which the shell reassigns
        to_chrome_r, from_chrome_w = (_high_fd(to_chrome_r), _high_fd(from_chrome_w))

        args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-default-apps",
            "--disable-extensions",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        # Chromium reads commands on fd 3 and writes replies on fd 4: a tiny Python
        # trampoline puts the pipe ends there and execs it (no preexec_fn in a
        # threaded process, no shell fd-number limits).
        trampoline = (
            "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
            "os.execv(sys.argv[3], sys.argv[3:])"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", trampoline, str(to_chrome_r), str(from_chrome_w), binary, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(to_chrome_r, from_chrome_w),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._replies: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        self._pending: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            created = self.send(
                "Target.createTarget",
                {"url": "about:blank"},
                timeout=20,
            )
            target = created["targetId"]
            attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
            self.session = attached["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                self.send(f"{domain}.enable", session=True)
            self.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                session=True,
            )
        except BaseException:
            self.close()
            raise

    def _read(self) -> None:
        buffer = b""
        with os.fdopen(self._from_chrome, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                buffer += chunk
                *messages, buffer = buffer.split(b"\0")
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        with self._lock:
                            waiter = self._pending.pop(message["id"], None)
                        if waiter:
                            waiter.put(message)
                    else:
                        self.events.append(message)

    def send(self, method: str, params: dict | None = None, session: bool = False, timeout=10.0):
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            waiter: queue.Queue = queue.Queue()
            self._pending[ident] = waiter
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        reply = waiter.get(timeout=timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def evaluate(self, expression: str):
        # `$` and `$$` are shorthands for querySelector / querySelectorAll
        wrapped = (
            "(($, $$) => (" + expression + "))"
            "((s) => document.querySelector(s), (s) => [...document.querySelectorAll(s)])"
        )
        result = self.send(
            "Runtime.evaluate",
            {"expression": wrapped, "returnByValue": True, "awaitPromise": True},
            session=True,
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except (AssertionError, RuntimeError):
                value = None  # navigation in progress
            if value:
                return value
            time.sleep(0.05)
        page = self.evaluate("location.href + ' ' + document.body.innerText.slice(0, 500)")
        raise AssertionError(f"timed out waiting for {expression!r}; page: {page}")

    def screenshot(self, name: str) -> None:
        """Save a PNG when SOCIALSPHERE_SCREENSHOTS names a directory (for reviewing the UI)."""
        target = os.environ.get("SOCIALSPHERE_SCREENSHOTS")
        if not target:
            return
        import base64

        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=True)
        Path(target).mkdir(parents=True, exist_ok=True)
        (Path(target) / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))

    def goto(self, url: str) -> None:
        self.send("Page.navigate", {"url": url}, session=True)

    def problems(self) -> list[str]:
        out = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(json.dumps(params["exceptionDetails"])[:300])
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                entry = params["entry"]
                if entry.get("source") == "network":
                    continue  # expected 4xx answers of the stub API are logged as network errors
                out.append(f"{entry.get('source')}: {entry.get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                out.append(json.dumps(params.get("args"))[:300])
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("Browser.close", timeout=3)
            except (queue.Empty, RuntimeError, OSError):
                pass  # best effort; terminated below
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # our own child, by its handle
            self.proc.wait()
        os.close(self._to_chrome)


@contextlib.contextmanager
def _live_server(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def _chromium_process():
    binary = _chromium()
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="ss-chromium-")
    instance = None
    try:
        try:
            instance = _Browser(binary, profile)
        except (OSError, queue.Empty, RuntimeError) as exc:  # installed but unusable here
            pytest.skip(f"chromium did not start: {exc!r}")
        yield instance
    finally:
        if instance is not None:
            instance.close()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(_chromium_process):
    """One Chromium per module; every test starts with no cookies and no recorded events."""
    _chromium_process.goto("about:blank")
    _chromium_process.send("Network.clearBrowserCookies", session=True)
    _chromium_process.events.clear()
    return _chromium_process


@pytest.fixture
def browser_site(browser):
    """The pages in Chromium against a stub API (frontend behaviour in isolation)."""
    calls: list[str] = []
    app = Flask("socialsphere_browser_test", static_folder=None, root_path=str(APP_DIR))
    app.register_blueprint(web.bp)
    app.register_blueprint(_stub_api(calls))

    @app.after_request
    def csp(response):
        response.headers.setdefault("Content-Security-Policy", PRODUCTION_CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    with _live_server(app) as base:
        yield browser, base, calls


def test_browser_smoke(browser_site):
    browser, base, calls = browser_site

    # landing: modules load under the CSP and render the public plans
    browser.goto(base + "/")
    browser.wait_for("document.querySelectorAll('#plans article').length === 2")
    browser.screenshot("landing")

    # a signed-in page without a session goes to the login page, keeping `next`
    browser.goto(base + "/app")
    browser.wait_for(
        "location.pathname === '/login' && document.body.dataset.ready === 'true' && !$('#login-notice').hidden"
    )
    assert browser.evaluate("location.search") == "?next=%2Fapp"

    # wrong password: the API message is shown in the form
    browser.evaluate("""(() => {
        $('#login-email').value = 'ada@example.com';
        $('#login-password').value = 'nope';
        $('#login-form').requestSubmit(); })()""")
    browser.wait_for("$('[data-form-error]').textContent.includes('wrong email')")

    # sign in: back to /app; /posts answers 401 to the first token -> refresh -> retry
    browser.evaluate("""(() => {
        $('#login-password').value = 'correct horse';
        $('#login-form').requestSubmit(); })()""")
    browser.wait_for("location.pathname === '/app' && $$('#posts li.post').length === 3")
    assert browser.evaluate("$('#nav-user').textContent") == "ada@example.com"
    assert not browser.evaluate("$('#nav-admin').hidden")
    assert browser.evaluate("document.querySelectorAll('#usage progress').length") == 3
    # page-load refresh; then /posts and /social/accounts, sent in parallel, both get 401
    # and share ONE refresh (a rotated refresh token must never be presented twice); retries
    browser.wait_for("$$('#accounts li').length === 1")
    after_login = calls[calls.index("POST /api/v1/auth/login") + 1 :]
    assert after_login.count("POST /api/v1/auth/refresh") == 2
    assert after_login.count("GET /api/v1/posts") == 2
    assert after_login.count("GET /api/v1/social/accounts") == 2
    # the tokens are nowhere JavaScript-readable outside the api.js module
    assert browser.evaluate(
        "localStorage.length + sessionStorage.length === 0 && !document.cookie.includes('ss_refresh')"
    )

    # AI generation fills the editor; an invalid post shows the field error
    browser.evaluate("""(() => {
        $('#ai-panel').open = true;
        $('#ai-topic').value = 'spring';
        $('#ai-form').requestSubmit(); })()""")
    browser.wait_for("$('#post-body').value.includes('All about spring')")
    assert "#stub #ai" in browser.evaluate("$('#post-body').value")
    browser.evaluate("$('#post-form').requestSubmit()")
    browser.wait_for("!$('#post-body-error').hidden")
    assert browser.evaluate("$('#post-body-error').textContent") == "At most 20 characters"
    assert browser.evaluate("$('#post-body').getAttribute('aria-invalid')") == "true"

    # a valid draft is saved and listed
    browser.evaluate("""(() => {
        $('#post-body').value = 'Short and sweet';
        $('#post-form').requestSubmit(); })()""")
    browser.wait_for("document.querySelectorAll('#posts li.post').length === 4")

    # reload: the HttpOnly cookie alone restores the session
    browser.goto(base + "/app")
    browser.wait_for("location.pathname === '/app' && !$('#dashboard').hidden")

    assert browser.problems() == []

    # and the CSP is really enforced (so the check above means something)
    browser.evaluate("""(() => { const s = document.createElement('script');
        s.textContent = 'window.inlineRan = true'; document.body.append(s); })()""")
    browser.wait_for("true")
    assert browser.evaluate("window.inlineRan === undefined")
    time.sleep(0.2)
    assert any("Content Security Policy" in p for p in browser.problems()), browser.problems()


def _click(browser, scope: str, text: str) -> None:
    """Click the first button inside `scope` whose text is `text`."""
    assert browser.evaluate(
        f"(() => {{ const b = $$({json.dumps(scope + ' button')})"
        f".find((x) => x.textContent.trim() === {json.dumps(text)});"
        " if (b) b.click(); return Boolean(b); })()"
    ), f"no button {text!r} in {scope}"


def test_browser_end_to_end_with_the_real_api(request, browser):
    """Sign in, generate, save, connect, schedule, then administer: the real backend."""
    try:
        app = request.getfixturevalue("app")
        admin = request.getfixturevalue("admin")
    except pytest.FixtureLookupError:
        pytest.skip("conftest provides no app/admin fixtures")
    request.getfixturevalue("user")  # another account for the admin list

    with _live_server(app) as base:
        # sign up: a client-side check, then the real registration
        browser.goto(f"{base}/signup")
        browser.wait_for("document.body.dataset.ready === 'true'")
        browser.evaluate("""(() => { $('#signup-name').value = 'Bob';
            $('#signup-email').value = 'bob@example.com';
            $('#signup-password').value = 'plum tree under snow 42';
            $('#signup-password2').value = 'plum tree under snow 24';
            $('#signup-form').requestSubmit(); })()""")
        browser.wait_for("!$('#signup-password2-error').hidden")
        browser.evaluate("""(() => { $('#signup-password2').value = $('#signup-password').value;
            $('#signup-form').requestSubmit(); })()""")
        browser.wait_for("!$('#signup-done').hidden && $('#signup-form').hidden")

        # forgot password always answers the same; bad or missing tokens are explained
        browser.goto(f"{base}/forgot-password")
        browser.wait_for("document.body.dataset.ready === 'true'")
        browser.evaluate("""(() => { $('#forgot-email').value = 'nobody@example.com';
            $('#forgot-form').requestSubmit(); })()""")
        browser.wait_for("!$('#forgot-done').hidden")
        browser.goto(f"{base}/verify-email?token=not-a-real-token")
        browser.wait_for("$('#verify-status').classList.contains('alert-error')")
        assert browser.evaluate("location.search") == ""  # the token left the address bar
        browser.goto(f"{base}/reset-password")
        browser.wait_for("!$('#reset-missing').hidden && $('#reset-form').hidden")

        browser.goto(f"{base}/login?next=%2Fapp")
        browser.wait_for("document.body.dataset.ready === 'true'")
        browser.screenshot("login")
        browser.evaluate(f"""(() => {{
            $('#login-email').value = {json.dumps(admin.email)};
            $('#login-password').value = {json.dumps(admin.password)};
            $('#login-form').requestSubmit(); }})()""")
        browser.wait_for("location.pathname === '/app' && !$('#dashboard').hidden")
        browser.wait_for("$$('#usage .usage-row').length === 3")
        assert not browser.evaluate("$('#nav-admin').hidden")

        # AI caption into the editor, then save the draft
        browser.evaluate("""(() => { $('#ai-panel').open = true; $('#ai-topic').value = 'coffee';
            $('#ai-form').requestSubmit(); })()""")
        browser.wait_for("$('#post-body').value.includes('#')")
        browser.evaluate("$('#post-form').requestSubmit()")
        browser.wait_for("$$('#posts li.post').length === 1")

        # connect a dry-run account; a webhook account without URL is refused next to the field
        browser.evaluate("""(() => { $('#connect-panel').open = true;
            $('#account-platform').value = 'mastodon'; $('#account-handle').value = '@team';
            $('#account-token').value = 'tok'; $('#account-form').requestSubmit(); })()""")
        browser.wait_for("!$('#account-webhook-error').hidden")
        browser.screenshot("dashboard-field-error")
        browser.evaluate("""(() => { const a = $('#account-adapter'); a.value = 'log';
            a.dispatchEvent(new Event('change')); $('#account-form').requestSubmit(); })()""")
        browser.wait_for("$$('#accounts li button').length === 1")

        # schedule the draft to that account and see the pending publication
        _click(browser, "#posts li.post", "Schedule")
        browser.wait_for("$('#schedule-dialog').open && $$('#schedule-accounts input').length === 1")
        browser.evaluate("""(() => { $('#schedule-accounts input').checked = true;
            $('#schedule-form').requestSubmit(); })()""")
        browser.wait_for("!$('#schedule-dialog').open && $$('#pubs .badge-pending').length === 1")
        browser.wait_for("$('#posts li.post .badge').textContent === 'scheduled'")
        browser.screenshot("dashboard")

        # admin panel: users, typed settings (with a server-side validation error), plans, audit
        browser.goto(base + "/admin")
        browser.wait_for("!$('#admin').hidden && $$('#users tr').length === 3")
        browser.screenshot("admin-users")
        browser.evaluate("$('#tab-settings').click()")
        browser.wait_for("$$('#settings form').length >= 3")
        browser.screenshot("admin-settings")
        browser.evaluate("""(() => { const f = $('form[aria-label="Setting ai_max_hashtags"]');
            f.elements.value.value = '999'; f.requestSubmit(); })()""")
        browser.wait_for("!$('form[aria-label=\"Setting ai_max_hashtags\"] [data-error-for=value]').hidden")
        browser.evaluate("""(() => { const f = $('form[aria-label="Setting ai_max_hashtags"]');
            f.elements.value.value = '3'; f.requestSubmit(); })()""")
        browser.wait_for("$$('#toasts .alert-success').some((t) => t.textContent.includes('ai_max'))")
        browser.evaluate("$('#tab-plans').click()")
        browser.wait_for("$$('#plans tr').length >= 3")
        n_plans = browser.evaluate("$$('#plans tr').length")
        browser.evaluate("$('#plan-new').click()")
        browser.wait_for("$('#plan-dialog').open")
        browser.evaluate("""(() => { $('#plan-code').value = 'team'; $('#plan-name').value = 'Team';
            $('#plan-price').value = '4900'; $('#plan-posts').value = '200';
            $('#plan-form').requestSubmit(); })()""")
        browser.wait_for(f"!$('#plan-dialog').open && $$('#plans tr').length === {n_plans + 1}")
        browser.screenshot("admin-plans")
        browser.evaluate("window.confirm = () => true")
        _click(browser, "#plans tr", "Delete")  # the first plan is in use: 409, explained
        browser.wait_for("$$('#toasts .alert-error').some((t) => t.textContent.includes('deactivate'))")
        browser.evaluate("$('#tab-audit').click()")
        browser.wait_for("$$('#audit tr td.mono').some((td) => td.textContent.includes('setting'))")
        browser.screenshot("admin-audit")

        # the admin finds the new sign-up, suspends and reactivates them, makes them admin
        browser.evaluate("$('#tab-users').click()")
        browser.evaluate("""(() => { $('#users-q').value = 'bob';
            $('#users-filters').requestSubmit(); })()""")
        browser.wait_for("$$('#users tr').length === 1 && $('#users').textContent.includes('bob@')")
        # the plan dropdown shows the current plan (GET /admin/users items carry subscription.plan)
        assert browser.evaluate("$$('#users tr select')[1].selectedOptions[0].textContent") == "Free"
        browser.evaluate("window.confirm = () => true")  # accept the confirmation dialogs
        _click(browser, "#users tr", "Suspend")
        browser.wait_for("$('#users .badge-suspended') !== null")
        _click(browser, "#users tr", "Reactivate")
        browser.wait_for("$('#users .badge-active') !== null")
        browser.evaluate("""(() => { const s = $('#users tr select');
            s.value = 'admin'; s.dispatchEvent(new Event('change')); })()""")
        browser.wait_for("$$('#toasts .alert-success').some((t) => t.textContent.includes('changed to admin'))")
        browser.wait_for("$('#users tr select').value === 'admin'")

        # sign out: the refresh cookie is revoked, so the dashboard asks for a login again
        browser.evaluate("$('#logout').click()")
        browser.wait_for("location.pathname === '/login' && document.body.dataset.ready === 'true'")
        browser.goto(base + "/app")
        browser.wait_for("location.pathname === '/login' && location.search === '?next=%2Fapp'")

        assert browser.problems() == []
