"""Structured JSON logs with the request id; no secrets (tokens, passwords) are logged."""
from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime

from flask import Flask, g, has_request_context, request

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if has_request_context():
            entry["request_id"] = g.get("request_id")
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_socialsphere", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._socialsphere = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)


def init_request_logging(app: Flask) -> None:
    access = logging.getLogger("socialsphere.access")

    @app.before_request
    def _request_id() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        g.request_started = time.perf_counter()

    @app.after_request
    def _log(response):
        rid = g.get("request_id")
        if rid:
            response.headers["X-Request-ID"] = rid
        started = g.get("request_started")
        duration = (time.perf_counter() - started) if started else 0.0
        user = g.get("current_user")
        access.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,  # path only: query strings may carry tokens
                "status": response.status_code,
                "duration_ms": round(duration * 1000, 2),
                "user_id": getattr(user, "id", None),
                "remote_addr": request.remote_addr,
            },
        )
        return response
