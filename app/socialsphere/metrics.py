"""Prometheus metrics; multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set (Gunicorn).

Counters and histograms are updated where things happen (in multiprocess mode each worker
writes them to PROMETHEUS_MULTIPROC_DIR and the scrape aggregates the files). The email
outbox gauges are different: :class:`EmailOutboxCollector` computes them from the database
when /metrics is read, so every worker reports the same current values.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

from flask import Flask, Response, g, has_app_context, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

HTTP_REQUESTS = Counter(
    "socialsphere_http_requests_total", "HTTP requests", ["method", "endpoint", "status"]
)
HTTP_LATENCY = Histogram(
    "socialsphere_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PUBLICATIONS = Counter("socialsphere_publications_total", "Publish attempts", ["outcome"])
EMAILS = Counter("socialsphere_emails_total", "Email send attempts", ["outcome"])
AI_REQUESTS = Counter("socialsphere_ai_generations_total", "AI generations", ["provider", "outcome"])
LOGIN_FAILURES = Counter("socialsphere_login_failures_total", "Failed logins", ["reason"])
RATE_LIMITED = Counter("socialsphere_rate_limited_total", "Requests refused by the app's rate limits",
                       ["limit"])
UNHANDLED_EXCEPTIONS = Counter(
    "socialsphere_unhandled_exceptions_total",
    "Exceptions no handler expected (answered with a 500 internal_error), by url rule and class name",
    ["endpoint", "exception"],
)

# Every status of models.EmailMessage, exposed even when no row has it (0).
EMAIL_OUTBOX_STATUSES = ("queued", "sending", "sent", "failed")
# PostgreSQL: a scrape never waits long on a locked table (e.g. during a migration).
OUTBOX_QUERY_TIMEOUT_MS = 2000


def endpoint_label() -> str:
    """The ``endpoint`` label of the HTTP metrics: the url rule, or "unmatched" (404s)."""
    return request.url_rule.rule if request.url_rule else "unmatched"


class EmailOutboxCollector:
    """Scrape-time gauges of the ``email_outbox`` table (one grouped query per scrape).

    * ``socialsphere_email_outbox_messages{status}``: rows by status, every status present;
    * ``socialsphere_email_outbox_oldest_queued_age_seconds``: age (since ``created_at``)
      of the oldest queued message, retries included; 0 when none is queued;
    * ``socialsphere_email_outbox_up``: 1 when the query worked, 0 when the database could
      not be read (the two above are then left out; /metrics still answers).

    Needs an application context (the /metrics request); outside one it yields nothing.
    """

    def describe(self) -> list[Metric]:
        # Registering must not query the database (REGISTRY calls describe, else collect).
        return [
            GaugeMetricFamily("socialsphere_email_outbox_messages", "Email outbox rows by status",
                              labels=["status"]),
            GaugeMetricFamily("socialsphere_email_outbox_oldest_queued_age_seconds",
                              "Age of the oldest queued email (0: none queued)"),
            GaugeMetricFamily("socialsphere_email_outbox_up",
                              "1 if the email outbox could be read at scrape time, else 0"),
        ]

    def collect(self) -> Iterator[Metric]:
        if not has_app_context():
            return
        messages, age, up = self.describe()
        try:
            counts, oldest_queued = _read_outbox()
        except Exception as exc:  # any failure: report it as a metric, never fail the scrape
            log.warning("metrics: cannot read the email outbox: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        for status in sorted(set(EMAIL_OUTBOX_STATUSES) | set(counts)):
            messages.add_metric([status], counts.get(status, 0))
        age.add_metric([], _age_seconds(oldest_queued))
        up.add_metric([], 1)
        yield messages
        yield age
        yield up


def _read_outbox():
    """({status: count}, created_at of the oldest queued message or None)."""
    from sqlalchemy import func, select

    from .extensions import db
    from .models import EmailMessage

    stmt = (
        select(EmailMessage.status, func.count(), func.min(EmailMessage.created_at))
        .group_by(EmailMessage.status)
    )
    with db.engine.connect() as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {OUTBOX_QUERY_TIMEOUT_MS}")
        rows = conn.execute(stmt).all()
    counts = {status: int(n) for status, n, _oldest in rows}
    oldest_queued = next((oldest for status, _n, oldest in rows if status == "queued"), None)
    return counts, oldest_queued


def _age_seconds(oldest) -> float:
    if oldest is None:
        return 0.0
    from datetime import UTC

    from .timeutil import utcnow

    if oldest.tzinfo is not None:  # stored as naive UTC; tolerate an aware value from a driver
        oldest = oldest.astimezone(UTC).replace(tzinfo=None)
    return max(0.0, (utcnow() - oldest).total_seconds())


EMAIL_OUTBOX = EmailOutboxCollector()
REGISTRY.register(EMAIL_OUTBOX)  # single-process mode; multiprocess registers per scrape


def metrics_response() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(EMAIL_OUTBOX)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def init_metrics(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe(response):
        started = g.get("metrics_started")
        if started is not None:
            endpoint = endpoint_label()
            HTTP_REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
            HTTP_LATENCY.labels(request.method, endpoint).observe(time.perf_counter() - started)
        return response
