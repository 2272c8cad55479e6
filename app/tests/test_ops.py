import shutil

import pytest
from conftest import error_of, run_isolated
from sqlalchemy import text

from socialsphere import MIGRATIONS_DIR, schema
from socialsphere.schema import SCHEMA_HEAD


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.get_json() == {"status": "ok"}


def _set_revision(db, *revisions):
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM alembic_version"))
        for rev in revisions:
            conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": rev})


@pytest.fixture
def restore_revision(db):
    yield
    _set_revision(db, SCHEMA_HEAD)


@pytest.fixture
def two_step_migrations(tmp_path):
    """A copy of app/migrations plus a no-op revision after SCHEMA_HEAD."""
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory, ignore=shutil.ignore_patterns("__pycache__"))
    (directory / "versions" / "0002_readyz_test.py").write_text(
        f'revision = "0002_readyz_test"\ndown_revision = "{SCHEMA_HEAD}"\nbranch_labels = None\n'
        "depends_on = None\n\n\ndef upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n")
    return str(directory)


def _readyz(app, migrations_dir=None):
    if migrations_dir:
        app.extensions["migrate"].directory = migrations_dir
    r = app.test_client().get("/readyz")
    return r.status_code, r.get_json()


def test_readyz_equal(client):
    r = client.get("/readyz")
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"status": "ready", "schema": {
        "database": SCHEMA_HEAD, "code": SCHEMA_HEAD, "relation": "equal"}}


def test_readyz_unknown_newer_revision_is_ready(app, db, restore_revision):
    """A newer release ran its (expand/contract) migrations: old hosts stay in rotation."""
    _set_revision(db, "zzz_from_a_newer_release")
    status, body = _readyz(app)
    assert status == 200, body
    assert body == {"status": "ready", "schema": {
        "database": "zzz_from_a_newer_release", "code": SCHEMA_HEAD, "relation": "ahead"}}


def test_readyz_known_descendant_is_ready(app, db, restore_revision, two_step_migrations):
    _set_revision(db, "0002_readyz_test")
    status, body = _readyz(app, two_step_migrations)
    assert status == 200, body
    assert body["schema"] == {"database": "0002_readyz_test", "code": SCHEMA_HEAD, "relation": "ahead"}


def test_readyz_behind(app, db, restore_revision, two_step_migrations, monkeypatch):
    """The code needs 0002 but the database is still at its ancestor: not ready."""
    monkeypatch.setattr(schema, "SCHEMA_HEAD", "0002_readyz_test")
    status, body = _readyz(app, two_step_migrations)
    assert status == 503, body
    assert body["status"] == "not_ready" and body["error"] == "schema_behind"
    assert body["schema"] == {"database": SCHEMA_HEAD, "code": "0002_readyz_test", "relation": "behind"}


def test_readyz_no_prefix_matching(app, db, restore_revision, two_step_migrations, monkeypatch):
    """Alembic resolves revision prefixes; readiness compares exact ids only."""
    monkeypatch.setattr(schema, "SCHEMA_HEAD", "0002_readyz_test")
    _set_revision(db, "0002")
    status, body = _readyz(app, two_step_migrations)
    assert status == 200 and body["schema"]["relation"] == "ahead", body


def test_readyz_several_heads(app, db, restore_revision):
    _set_revision(db, SCHEMA_HEAD, "zzz_new_branch")
    status, body = _readyz(app)
    assert status == 200 and body["schema"]["relation"] == "ahead", body
    assert body["schema"]["database"] == f"{SCHEMA_HEAD},zzz_new_branch"


def test_readyz_empty_version_table(app, db, restore_revision):
    _set_revision(db)
    status, body = _readyz(app)
    assert status == 503, body
    assert body["error"] == "schema_missing"
    assert body["schema"] == {"database": None, "code": SCHEMA_HEAD, "relation": "missing"}


def test_readyz_missing_version_table(app, db):
    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE alembic_version RENAME TO alembic_version_saved"))
    try:
        status, body = _readyz(app)
    finally:
        with db.engine.begin() as conn:
            conn.execute(text("ALTER TABLE alembic_version_saved RENAME TO alembic_version"))
    assert status == 503, body
    assert body["status"] == "not_ready" and body["error"] == "schema_missing"
    assert body["schema"] == {"database": None, "code": SCHEMA_HEAD, "relation": "missing"}


def test_readyz_unreadable_migrations_fail_closed(app, db, restore_revision, tmp_path):
    _set_revision(db, "zzz_unknown")
    status, body = _readyz(app, str(tmp_path / "no-such-dir"))
    assert status == 503, body
    assert body["error"] == "schema_unverifiable"
    assert body["schema"] == {"database": "zzz_unknown", "code": SCHEMA_HEAD, "relation": None}


def test_readyz_equal_needs_no_migration_scripts(app, tmp_path):
    status, body = _readyz(app, str(tmp_path / "no-such-dir"))
    assert status == 200 and body["schema"]["relation"] == "equal", body


def test_schema_relation_sibling_branch_is_behind(two_step_migrations, tmp_path):
    """A known revision that does not descend from the code's head: its migrations are not applied."""
    versions = tmp_path / "migrations" / "versions"
    (versions / "0003_sibling.py").write_text(
        f'revision = "0003_sibling"\ndown_revision = "{SCHEMA_HEAD}"\nbranch_labels = None\n'
        "depends_on = None\n\n\ndef upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n")
    script = schema.load_scripts(two_step_migrations)
    assert schema.schema_relation(["0003_sibling"], script, "0002_readyz_test") == "behind"
    assert schema.schema_relation(["0002_readyz_test", "0003_sibling"], script, "0002_readyz_test") == "ahead"
    assert schema.schema_relation([SCHEMA_HEAD], script, "0002_readyz_test") == "behind"


def test_readyz_database_down(make_app, tmp_path):
    app = make_app(SQLALCHEMY_DATABASE_URI="postgresql+psycopg2://nobody@127.0.0.1:1/none?connect_timeout=1")
    r = app.test_client().get("/readyz")
    assert r.status_code == 503
    body = r.get_json()
    assert body["status"] == "not_ready" and body["error"] == "database_unavailable"
    assert body["schema"] == {"database": None, "code": SCHEMA_HEAD, "relation": None}


def test_readyz_not_migrated(make_app, tmp_path):
    app = make_app(SQLALCHEMY_DATABASE_URI="sqlite:///" + str(tmp_path / "empty.db"))
    r = app.test_client().get("/readyz")
    assert r.status_code == 503
    assert r.get_json()["schema"]["relation"] == "missing"


def test_metrics(client):
    client.get("/healthz")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.mimetype == "text/plain"
    assert b"socialsphere_http_requests_total" in r.data


def test_metrics_multiprocess(client, tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    r = client.get("/metrics")
    assert r.status_code == 200


def test_request_id_echoed(client):
    r = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["X-Request-ID"] == "abc-123"


def test_request_id_generated_when_missing_or_bad(client):
    r = client.get("/healthz")
    assert len(r.headers["X-Request-ID"]) == 32
    r = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert r.headers["X-Request-ID"] != "bad id with spaces"
    assert " " not in r.headers["X-Request-ID"]


def test_security_headers(client):
    r = client.get("/api/v1/plans")
    h = r.headers
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
    assert h["Referrer-Policy"] == "no-referrer"
    assert h["Cache-Control"] == "no-store"
    assert "Access-Control-Allow-Origin" not in h  # CORS off by default
    assert "Strict-Transport-Security" not in h


def test_no_hsts_from_the_app_in_production(make_app):
    # The edge (Nginx) owns HSTS; the app must not add a second header.
    app = make_app(ENV_NAME="production")
    r = app.test_client().get("/healthz")
    assert r.status_code == 200
    assert "Strict-Transport-Security" not in r.headers


def test_cors_off_by_default(client):
    r = client.options("/api/v1/plans", headers={"Origin": "https://evil.example",
                                                  "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in r.headers


def test_cors_allowed_origin(make_app):
    app = make_app(CORS_ORIGINS=["https://app.example"])
    c = app.test_client()
    r = c.options("/api/v1/posts", headers={"Origin": "https://app.example",
                                             "Access-Control-Request-Method": "POST"})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    r = c.get("/api/v1/plans", headers={"Origin": "https://other.example"})
    assert "Access-Control-Allow-Origin" not in r.headers


def test_body_too_large(client):
    r = client.post("/api/v1/auth/login", data="x" * (1024 * 1024 + 10),
                    content_type="application/json")
    assert r.status_code == 413
    assert error_of(r)["error"] == "payload_too_large"


def test_unknown_api_route_json_404(client):
    r = client.get("/api/v1/nope")
    assert r.status_code == 404
    assert error_of(r)["error"] == "not_found"


def test_method_not_allowed_json(client):
    r = client.put("/healthz")
    assert r.status_code == 405
    assert error_of(r)["error"] == "method_not_allowed"


def test_internal_error_is_json_without_details(make_app):
    app = make_app()

    @app.get("/api/v1/_boom")
    def boom():
        raise RuntimeError("secret detail")

    r = app.test_client().get("/api/v1/_boom")
    assert r.status_code == 500
    body = r.get_json()
    assert body == {"error": "internal_error", "message": "internal server error"}


def test_sentry_enabled_only_with_dsn(tmp_path):
    """Run in a subprocess: sentry-sdk patches Flask globally."""

    code = (
        "import sentry_sdk, socialsphere\n"
        "from socialsphere import create_app\n"
        "a = create_app({'SENTRY_DSN': None})\n"
        "assert not sentry_sdk.get_client().is_active()\n"
        "b = create_app({'SENTRY_DSN': 'http://public@127.0.0.1:9/1'})\n"
        "assert sentry_sdk.get_client().is_active()\n"
        "assert b.test_client().get('/healthz').status_code == 200\n"
        "sentry_sdk.get_client().close(timeout=0)\n"
        "print('ok')\n"
    )
    r = run_isolated(code, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "ok"


def test_json_log_lines_carry_request_id(app):
    import json
    import logging

    from socialsphere.logging_setup import JsonFormatter

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(JsonFormatter().format(record))

    handler = Keep(level=logging.INFO)
    access = logging.getLogger("socialsphere.access")
    old_level = access.level
    access.setLevel(logging.INFO)
    access.addHandler(handler)
    try:
        app.test_client().get("/api/v1/plans?token=secret-in-query", headers={"X-Request-ID": "req-42"})
    finally:
        access.removeHandler(handler)
        access.setLevel(old_level)
    entry = json.loads(records[-1])
    assert entry["request_id"] == "req-42"
    assert entry["path"] == "/api/v1/plans" and entry["status"] == 200 and entry["method"] == "GET"
    assert "secret-in-query" not in records[-1]
    assert entry["level"] == "INFO" and entry["ts"].endswith("+00:00")
