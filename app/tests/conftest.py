"""Test fixtures: app -> client -> db -> user.

The same suite runs on SQLite (default) and on PostgreSQL:

* ``SOCIALSPHERE_TEST_DB=postgres``: use ``SOCIALSPHERE_TEST_DATABASE_URL`` if set,
  otherwise start a throw-away PostgreSQL server (newest ``/usr/lib/postgresql/*/bin``)
  once per session, as the ``postgres`` user when running as root, in a temp dir,
  listening on a free port of 127.0.0.1 only.

The schema is created by running the Alembic migrations (so they are tested), and all
tables are emptied after each test.
"""
from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

os.environ["SOCIALSPHERE_ENV"] = "testing"
BACKEND = os.environ.get("SOCIALSPHERE_TEST_DB", "sqlite").lower()
JWT_KEYS = {"k1": "k1-secret-for-tests-only-0123456789abcdef", "k0": "k0-old-key-for-tests-only-0123456789abcdef"}
FERNET_KEY = Fernet.generate_key().decode()


def pytest_configure(config):
    """The frontend build is not committed (app/README.md, "Frontend build"): build it in
    place before the test modules are collected (test_assets.py parametrizes over the built
    pages, test_web.py serves them). Unchanged files are not rewritten: a no-op when current."""
    from socialsphere.web import build_from_sources

    build_from_sources()


def pytest_report_header(config):
    return f"socialsphere test database backend: {BACKEND}"


def pytest_collection_modifyitems(config, items):
    if BACKEND == "postgres":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (SOCIALSPHERE_TEST_DB=postgres)")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With SSAI_FAIL_ON_SKIP=1 (.ci/run exports it) a skipped test fails, except a
    PostgreSQL-only test in the SQLite pass (the PostgreSQL pass runs it): a test
    that skips because the machine lacks something (Chromium, say) proved nothing."""
    outcome = yield
    report = outcome.get_result()
    if (report.skipped and os.environ.get("SSAI_FAIL_ON_SKIP") == "1" and not hasattr(report, "wasxfail")
            and not (BACKEND != "postgres" and "postgres_only" in item.keywords)):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, and SSAI_FAIL_ON_SKIP=1 makes that a failure: {reason}"



def run_isolated(code: str, instance_path, **env) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter (warnings are errors) with a minimal
    development environment: for what must not leak into this process
    (sentry_sdk's global client, prometheus_client's multiprocess mode)."""
    base = {"PATH": "/usr/bin:/bin", "SOCIALSPHERE_ENV": "development",
            "SOCIALSPHERE_INSTANCE_PATH": str(instance_path), "SOCIALSPHERE_LOG_LEVEL": "CRITICAL"}
    return subprocess.run([sys.executable, "-W", "error", "-c", code], env={**base, **env}, capture_output=True,
                          text=True, timeout=120, check=False)

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bindir() -> str:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    if not candidates:
        pytest.exit("PostgreSQL binaries not found in /usr/lib/postgresql/*/bin "
                    "(apt-get install postgresql) and SOCIALSPHERE_TEST_DATABASE_URL unset", 2)
    return candidates[-1]


class PgServer:
    """A throw-away PostgreSQL cluster (trust auth, 127.0.0.1 only, fsync off)."""

    def __init__(self) -> None:
        self.bindir = _pg_bindir()
        # /tmp (not $TMPDIR, which may sit under a 0700 home) so the postgres user can enter it
        self.tmp = tempfile.mkdtemp(prefix="socialsphere-pg-", dir=os.environ.get("SOCIALSPHERE_TEST_PG_TMP", "/tmp"))
        self.datadir = os.path.join(self.tmp, "data")
        self.port = _free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # postgres refuses to run as root
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                pytest.exit("running as root but there is no 'postgres' user to run the test server "
                            "(apt-get install postgresql creates it)", 2)
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        proc = subprocess.run([*self.as_user, *args], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, cwd=self.tmp, timeout=120, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({proc.returncode}):\n"
                               + proc.stdout.decode(errors="replace")[-3000:])

    def start(self) -> str:
        self._run(f"{self.bindir}/initdb", "-D", self.datadir, "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--no-sync")
        opts = (f"-p {self.port} -k {self.tmp} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        self._run(f"{self.bindir}/pg_ctl", "-D", self.datadir, "-o", opts, "-l",
                  os.path.join(self.tmp, "log"), "-w", "-t", "60", "start")
        admin = create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres",
                              isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE socialsphere_test"))
        admin.dispose()
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/socialsphere_test"

    def stop(self) -> None:
        try:
            if os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
                self._run(f"{self.bindir}/pg_ctl", "-D", self.datadir, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    if BACKEND == "sqlite":
        yield "sqlite:///" + str(tmp_path_factory.mktemp("db") / "test.db")
        return
    if BACKEND != "postgres":
        pytest.exit(f"SOCIALSPHERE_TEST_DB must be sqlite or postgres, not {BACKEND}", 2)
    url = os.environ.get("SOCIALSPHERE_TEST_DATABASE_URL")
    if url:
        from sqlalchemy.engine import make_url

        # the suite drops and recreates the public schema: refuse anything not named *test*
        if "test" not in (make_url(url).database or ""):
            pytest.exit("SOCIALSPHERE_TEST_DATABASE_URL must name a database containing 'test' "
                        "(the suite wipes it)", 2)
        yield url
        return
    server = PgServer()
    try:
        yield server.start()
    finally:
        server.stop()


def make_config(database_url: str, instance_path: str, **overrides) -> dict:
    cfg = {
        "ENV_NAME": "testing",
        "TESTING": True,
        "INSTANCE_PATH": instance_path,
        "SECRET_KEY": "test-secret-key-0123456789-0123456789-abcdef",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "JWT_KEYS": dict(JWT_KEYS),
        "JWT_ACTIVE_KID": "k1",
        "TOKEN_ENCRYPTION_KEY": FERNET_KEY,
        "BASE_URL": "https://socialsphere.test",
        "PASSWORD_HASH_FAST": True,
        "WEBHOOK_ALLOW_PRIVATE": True,
        "WEBHOOK_TIMEOUT": 5.0,
        "LOG_LEVEL": "WARNING",
    }
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="session")
def _schema(database_url, tmp_path_factory):
    """Create the schema once per session by running the migrations."""
    from flask_migrate import upgrade

    from socialsphere import create_app
    from socialsphere.extensions import db

    instance = str(tmp_path_factory.mktemp("instance"))
    app = create_app(make_config(database_url, instance))
    with app.app_context():
        if BACKEND == "postgres":
            with db.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
        upgrade()
        db.engine.dispose()
    return instance


def _truncate(db) -> None:
    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    with db.engine.begin() as conn:
        # DELETE is faster than TRUNCATE for a handful of rows (and ids need no reset)
        for name in tables:
            conn.execute(text(f"DELETE FROM {name}"))


@pytest.fixture
def make_app(database_url, _schema):
    """Factory for extra apps sharing the test database (e.g. other config)."""
    from socialsphere import create_app
    from socialsphere.extensions import db

    apps = []

    def factory(**overrides):
        app = create_app(make_config(database_url, _schema, **overrides))
        apps.append(app)
        return app

    yield factory
    cleaner = next((a for a in apps if a.config["SQLALCHEMY_DATABASE_URI"] == database_url), None)
    if cleaner is None:
        cleaner = factory()
    with cleaner.app_context():
        db.session.remove()
        _truncate(db)
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


class ApiClient(FlaskClient):
    """Test client; each request starts and ends with a fresh DB session, as in production."""

    token: str | None = None

    def open(self, *args, **kwargs):
        from socialsphere.extensions import db

        if self.token:
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("Authorization", f"Bearer {self.token}")
            kwargs["headers"] = headers
        with self.application.app_context():
            db.session.remove()
        try:
            return super().open(*args, **kwargs)
        finally:
            with self.application.app_context():
                db.session.remove()

    def as_user(self, token: str | None) -> ApiClient:
        other = self.application.test_client()
        other.token = token
        return other


@pytest.fixture
def client(app):
    app.test_client_class = ApiClient
    return app.test_client()


@pytest.fixture
def db(app):
    from socialsphere.extensions import db as _db

    with app.app_context():
        yield _db
        _db.session.remove()


@dataclass
class UserInfo:
    id: int
    email: str
    password: str
    token: str
    role: str


def create_owned_resources(db, owner_id: int):
    """One draft post and one social account of owner_id, and a spare plan: an
    existing resource for each integer path parameter of the API. Returns
    (post, account, plan), committed."""
    from socialsphere.models import Plan, Post, SocialAccount
    from socialsphere.security import encrypt_secret

    post = Post(user_id=owner_id, title=None, body="x", status="draft", platforms=[])
    account = SocialAccount(user_id=owner_id, platform="twitter", handle="h", adapter="log",
                            token_encrypted=encrypt_secret("t"))
    plan = Plan(code="spare", name="Spare")
    db.session.add_all([post, account, plan])
    db.session.commit()
    return post, account, plan


def create_user(db, email="alice@example.com", password="correct horse battery", name="Alice",
                role="user", verified=True, plan_code=None) -> UserInfo:
    from socialsphere.models import Plan, User
    from socialsphere.security import hash_password, issue_access_token
    from socialsphere.subscriptions import ensure_default_plans, subscribe
    from socialsphere.timeutil import utcnow

    ensure_default_plans()
    user = User(email=email, name=name, password_hash=hash_password(password), role=role,
                email_verified_at=utcnow() if verified else None)
    db.session.add(user)
    plan = db.session.scalar(db.select(Plan).where(Plan.code == plan_code)) if plan_code else None
    subscribe(user, plan)
    db.session.commit()
    token, _ = issue_access_token(user.id, role)
    return UserInfo(user.id, email, password, token, role)


@pytest.fixture
def user(db, client) -> UserInfo:
    return create_user(db)


@pytest.fixture
def auth_client(client, user) -> ApiClient:
    return client.as_user(user.token)


@pytest.fixture
def admin(db) -> UserInfo:
    return create_user(db, email="root@example.com", name="Root", role="admin")


@pytest.fixture
def admin_client(client, admin) -> ApiClient:
    return client.as_user(admin.token)


def error_of(response) -> dict:
    body = response.get_json()
    assert body is not None, response.data
    assert set(body) >= {"error", "message"}, body
    return body


def outbox_token(db, template: str | None = None) -> str:
    """The one-time token of the newest queued mail (of ``template``), as the worker will send it
    (the outbox itself holds it only encrypted)."""
    import re

    from socialsphere.emails import render_for_sending
    from socialsphere.models import EmailMessage

    stmt = db.select(EmailMessage).order_by(EmailMessage.id.desc())
    if template is not None:
        stmt = stmt.where(EmailMessage.template == template)
    msg = db.session.scalars(stmt).first()
    assert msg is not None, "no mail queued"
    text, _html = render_for_sending(msg)
    match = re.search(r"token=([A-Za-z0-9_\-]+)", text)
    assert match, text
    return match.group(1)


class Clock:
    """The app's wall clock, under the test's control: ``socialsphere.timeutil.utcnow()`` (so
    token ``iat``, revocation and throttle times) returns ``base + offset``.  ``base`` is a whole
    second two seconds in the past, so PyJWT's own checks against the real clock (``nbf``,
    ``iat`` in the future, ``exp``) still pass and every ``set()`` below 1.0 is the same second."""

    def __init__(self, monkeypatch) -> None:
        from datetime import UTC, datetime, timedelta

        from socialsphere import timeutil

        self._timedelta = timedelta
        self.base = datetime.fromtimestamp(int(time.time()) - 2, UTC)
        self.now = self.base
        clock = self

        class _Frozen(datetime):
            @classmethod
            def now(cls, tz=None):
                return clock.now.astimezone(tz) if tz is not None else clock.now.replace(tzinfo=None)

        monkeypatch.setattr(timeutil, "datetime", _Frozen)

    def set(self, seconds: float) -> None:
        """Move the clock to ``base + seconds`` (forwards or backwards)."""
        self.now = self.base + self._timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def dump():
    return lambda r: json.dumps(r.get_json(), indent=1)


@pytest.fixture
def wait_for():
    def _wait(predicate, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return False

    return _wait
