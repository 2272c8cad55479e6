"""Error tracking and email outbox metrics: the unhandled-exception counter and its JSON
log entry, the Sentry hand-off, and the scrape-time outbox gauges."""
from __future__ import annotations

import json
import logging
import re
from datetime import timedelta

import pytest
from conftest import run_isolated
from flask import got_request_exception

from socialsphere.logging_setup import JsonFormatter


def sample(text: str, name: str, **labels) -> float | None:
    """Value of one sample in Prometheus text format (labels in any order), else None."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if found == {k: str(v) for k, v in labels.items()}:
            return float(match.group(3))
    return None


class JsonLines(logging.Handler):
    """Formats records as the production handler does (JsonFormatter), in the request."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(JsonFormatter().format(record))


@pytest.fixture
def json_logs():
    handler = JsonLines()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler.lines
    root.removeHandler(handler)


def _metrics(client) -> str:
    r = client.get("/metrics")
    assert r.status_code == 200
    return r.get_data(as_text=True)


def _unhandled(client, endpoint: str, exception: str) -> float | None:
    """socialsphere_unhandled_exceptions_total for that endpoint and exception (None: no series)."""
    return sample(_metrics(client), "socialsphere_unhandled_exceptions_total", endpoint=endpoint, exception=exception)


# ---- unhandled exceptions ----------------------------------------------------------------


class BoomError(RuntimeError):
    pass


def test_unhandled_exception_counted_logged_and_json_500(make_app, json_logs):
    app = make_app()

    @app.get("/api/v1/_boom/<int:n>")
    def boom(n):
        raise BoomError("secret detail")

    client = app.test_client()
    before = _unhandled(client, "/api/v1/_boom/<int:n>", "BoomError") or 0.0
    json_logs.clear()
    r = client.get("/api/v1/_boom/7", headers={"X-Request-ID": "edge-req-77"})
    assert r.status_code == 500
    assert r.get_json() == {"error": "internal_error", "message": "internal server error"}
    assert r.headers["X-Request-ID"] == "edge-req-77"

    after = _unhandled(client, "/api/v1/_boom/<int:n>", "BoomError")
    assert after == before + 1

    entries = [json.loads(line) for line in json_logs if '"unhandled exception"' in line]
    assert len(entries) == 1, json_logs
    assert [json.loads(line)["level"] for line in json_logs].count("ERROR") == 1, json_logs
    line = next(line for line in json_logs if '"unhandled exception"' in line)
    assert "\n" not in line  # one line: the traceback's newlines are escaped inside JSON
    entry = entries[0]
    assert entry["level"] == "ERROR"
    assert entry["request_id"] == "edge-req-77"
    assert entry["exception"] == "BoomError"
    assert entry["endpoint"] == "/api/v1/_boom/<int:n>"
    assert entry["method"] == "GET" and entry["path"] == "/api/v1/_boom/7"
    assert entry["exc"].startswith("Traceback (most recent call last):")
    assert "in boom" in entry["exc"] and "BoomError: secret detail" in entry["exc"]


def test_unhandled_exception_in_before_request_is_unmatched(make_app):
    app = make_app()

    @app.before_request
    def explode():
        from flask import request

        if request.path == "/no/such/page":
            raise KeyError("x")

    client = app.test_client()
    before = _unhandled(client, "unmatched", "KeyError") or 0.0
    r = client.get("/no/such/page", headers={"Accept": "application/json"})
    assert r.status_code == 500
    assert r.get_json()["error"] == "internal_error"
    assert _unhandled(client, "unmatched", "KeyError") == before + 1


def test_exception_after_the_view_counted_logged_once(make_app, json_logs):
    """Raised in after_request: Flask's handle_exception path (log_exception)."""
    app = make_app(PROPAGATE_EXCEPTIONS=False)

    @app.get("/api/v1/_late")
    def late():
        return {"ok": True}

    @app.after_request
    def broken(response):
        from flask import request

        if request.path == "/api/v1/_late" and response.status_code == 200:
            raise ZeroDivisionError("late")
        return response

    client = app.test_client()
    before = _unhandled(client, "/api/v1/_late", "ZeroDivisionError") or 0.0
    json_logs.clear()
    r = client.get("/api/v1/_late", headers={"X-Request-ID": "late-1"})
    assert r.status_code == 500
    assert r.get_json() == {"error": "internal_error", "message": "internal server error"}
    errors = [json.loads(line) for line in json_logs if json.loads(line)["level"] == "ERROR"]
    assert len(errors) == 1, json_logs
    assert errors[0]["message"] == "unhandled exception"
    assert errors[0]["request_id"] == "late-1" and "ZeroDivisionError: late" in errors[0]["exc"]
    assert _unhandled(client, "/api/v1/_late", "ZeroDivisionError") == before + 1


def test_handled_errors_are_not_counted(client):
    text = _metrics(client)
    client.get("/api/v1/nothing-here")
    client.put("/healthz")
    assert _unhandled(client, "unmatched", "NotFound") is None
    assert "NotFound" not in text


def test_unhandled_exception_sends_got_request_exception(make_app):
    """The signal Sentry's Flask integration listens to (Flask skips it when a handler exists)."""
    app = make_app()

    @app.get("/api/v1/_boom")
    def boom():
        raise BoomError("x")

    seen = []

    def listener(sender, exception, **_):
        seen.append((sender, exception))

    got_request_exception.connect(listener, app)
    try:
        assert app.test_client().get("/api/v1/_boom").status_code == 500
    finally:
        got_request_exception.disconnect(listener, app)
    assert len(seen) == 1 and seen[0][0] is app and isinstance(seen[0][1], BoomError)


def test_sentry_receives_unhandled_exception_with_request_id(tmp_path):
    """Subprocess: sentry-sdk patches Flask globally. before_send drops the event (no network)."""
    code = (
        "import sentry_sdk\n"
        "from socialsphere import create_app\n"
        "app = create_app({'SENTRY_DSN': 'http://public@127.0.0.1:9/1'})\n"
        "@app.get('/api/v1/_boom')\n"
        "def boom():\n"
        "    raise LookupError('sentry test')\n"
        "client = sentry_sdk.get_client()\n"
        "events = []\n"
        "ours = client.options['before_send']\n"
        "client.options['before_send'] = lambda e, h: events.append(ours(e, h)) and None\n"
        "r = app.test_client().get('/api/v1/_boom', headers={'X-Request-ID': 'rid-sentry'})\n"
        "assert r.status_code == 500, r.status_code\n"
        "assert len(events) == 1, events\n"
        "e = events[0]\n"
        "assert e['exception']['values'][-1]['type'] == 'LookupError', e['exception']\n"
        "assert e['tags']['request_id'] == 'rid-sentry', e.get('tags')\n"
        "client.close(timeout=0)\n"
        "print('ok')\n"
    )
    r = run_isolated(code, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "ok"


# ---- email outbox ------------------------------------------------------------------------


def _email(status: str, age: timedelta = timedelta(0), **kw):
    from socialsphere.models import EmailMessage
    from socialsphere.timeutil import utcnow

    created = utcnow() - age
    return EmailMessage(to_addr="x@example.com", template="verify_email", subject="s", body_text="b",
                        status=status, created_at=created, next_attempt_at=created, **kw)


def test_outbox_metrics_empty(client, db):
    text = _metrics(client)
    for status in ("queued", "sending", "sent", "failed"):
        assert sample(text, "socialsphere_email_outbox_messages", status=status) == 0
    assert sample(text, "socialsphere_email_outbox_oldest_queued_age_seconds") == 0
    assert sample(text, "socialsphere_email_outbox_up") == 1


def test_outbox_metrics_reflect_rows(client, db):
    db.session.add_all([
        _email("queued", timedelta(minutes=10)),
        _email("queued", timedelta(minutes=3)),
        _email("queued", timedelta(seconds=5)),
        _email("sending", timedelta(hours=2)),
        _email("sent", timedelta(days=3)),
        _email("sent", timedelta(days=1)),
        _email("failed", timedelta(days=9)),
    ])
    db.session.commit()
    text = _metrics(client)
    assert sample(text, "socialsphere_email_outbox_messages", status="queued") == 3
    assert sample(text, "socialsphere_email_outbox_messages", status="sending") == 1
    assert sample(text, "socialsphere_email_outbox_messages", status="sent") == 2
    assert sample(text, "socialsphere_email_outbox_messages", status="failed") == 1
    age = sample(text, "socialsphere_email_outbox_oldest_queued_age_seconds")
    assert 600 <= age < 660  # the oldest *queued* one, not the older sending/sent/failed rows
    assert sample(text, "socialsphere_email_outbox_up") == 1
    # existing metric families are still there under their names
    assert "# TYPE socialsphere_emails_total counter" in text
    assert "# TYPE socialsphere_http_requests_total counter" in text


def test_outbox_metrics_follow_the_outbox(client, db):
    from socialsphere.models import EmailMessage

    msg = _email("queued", timedelta(minutes=1))
    db.session.add(msg)
    db.session.commit()
    assert sample(_metrics(client), "socialsphere_email_outbox_messages", status="queued") == 1
    msg = db.session.get(EmailMessage, msg.id)
    msg.status = "sent"
    db.session.commit()
    text = _metrics(client)
    assert sample(text, "socialsphere_email_outbox_messages", status="queued") == 0
    assert sample(text, "socialsphere_email_outbox_messages", status="sent") == 1
    assert sample(text, "socialsphere_email_outbox_oldest_queued_age_seconds") == 0


def test_outbox_metrics_database_down(make_app, json_logs):
    app = make_app(SQLALCHEMY_DATABASE_URI="postgresql+psycopg2://nobody@127.0.0.1:1/none?connect_timeout=1")
    r = app.test_client().get("/metrics")
    assert r.status_code == 200
    text = r.get_data(as_text=True)
    assert sample(text, "socialsphere_email_outbox_up") == 0
    assert "socialsphere_email_outbox_messages{" not in text
    assert "socialsphere_http_requests_total" in text
    assert any("cannot read the email outbox: OperationalError" in line for line in json_logs)


def test_outbox_metrics_query_failure(client, db, monkeypatch):
    from sqlalchemy.exc import ProgrammingError

    from socialsphere import metrics

    def fail():
        raise ProgrammingError("SELECT", {}, Exception("relation email_outbox does not exist"))

    monkeypatch.setattr(metrics, "_read_outbox", fail)
    r = client.get("/metrics")
    assert r.status_code == 200
    assert sample(r.get_data(as_text=True), "socialsphere_email_outbox_up") == 0


def test_outbox_collector_outside_app_context():
    from prometheus_client import REGISTRY, generate_latest

    assert b"socialsphere_email_outbox_up" not in generate_latest(REGISTRY)


def test_multiprocess_mode(tmp_path):
    """Gunicorn mode: PROMETHEUS_MULTIPROC_DIR set before prometheus_client is imported.
    The counter is aggregated from the worker files; the outbox gauges come from the DB."""
    prom = tmp_path / "prom"
    prom.mkdir()
    code = (
        "from socialsphere import create_app\n"
        "from socialsphere.extensions import db\n"
        "from socialsphere.models import EmailMessage\n"
        f"app = create_app({{'SQLALCHEMY_DATABASE_URI': 'sqlite:///{tmp_path}/mp.db'}})\n"
        "@app.get('/api/v1/_boom')\n"
        "def boom():\n"
        "    raise TypeError('x')\n"
        "with app.app_context():\n"
        "    db.create_all()\n"
        "    db.session.add(EmailMessage(to_addr='a@example.com', template='verify_email', subject='s',\n"
        "                                body_text='b', status='failed'))\n"
        "    db.session.commit()\n"
        "c = app.test_client()\n"
        "assert c.get('/api/v1/_boom').status_code == 500\n"
        "assert c.get('/api/v1/_boom').status_code == 500\n"
        "r = c.get('/metrics')\n"
        "assert r.status_code == 200\n"
        "print(r.get_data(as_text=True))\n"
    )
    r = run_isolated(code, tmp_path, PROMETHEUS_MULTIPROC_DIR=str(prom))
    assert r.returncode == 0, r.stderr[-3000:]
    assert any(p.name.startswith("counter_") for p in prom.iterdir())
    text = r.stdout
    assert sample(text, "socialsphere_unhandled_exceptions_total", endpoint="/api/v1/_boom", exception="TypeError") == 2
    assert sample(text, "socialsphere_email_outbox_messages", status="failed") == 1
    assert sample(text, "socialsphere_email_outbox_messages", status="queued") == 0
    assert sample(text, "socialsphere_email_outbox_up") == 1
