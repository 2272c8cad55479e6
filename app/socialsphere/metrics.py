"""Prometheus metrics; multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set (Gunicorn)."""
from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

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


def metrics_response() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
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
            endpoint = request.url_rule.rule if request.url_rule else "unmatched"
            HTTP_REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
            HTTP_LATENCY.labels(request.method, endpoint).observe(time.perf_counter() - started)
        return response
