"""One JSON error shape for the whole API: ``{"error", "message", "fields"?}``."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, current_app, got_request_exception, jsonify, request
from werkzeug.exceptions import HTTPException

from .metrics import UNHANDLED_EXCEPTIONS, endpoint_label

log = logging.getLogger(__name__)


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.fields = fields
        self.headers = headers or {}


class ValidationError(ApiError):
    status = 422
    code = "validation_error"

    def __init__(self, fields: dict[str, str], message: str = "invalid input") -> None:
        super().__init__(message, fields=fields)


def not_found(what: str = "resource") -> ApiError:
    return ApiError(f"{what} not found", status=404, code="not_found")


def error_response(status: int, code: str, message: str, fields: dict[str, str] | None = None,
                   headers: dict[str, str] | None = None):
    body: dict[str, Any] = {"error": code, "message": message}
    if fields:
        body["fields"] = fields
    response = jsonify(body)
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def _wants_json() -> bool:
    path = request.path
    return (
        path.startswith("/api/")
        or path in ("/healthz", "/readyz", "/metrics")
        or request.accept_mimetypes.best == "application/json"
    )


def report_unexpected(exc: BaseException, *, signal: bool = True) -> None:
    """Count and log an exception no handler expected (in a request context).

    One JSON log entry (logging_setup.JsonFormatter): ``message`` "unhandled exception",
    ``request_id``, ``exception`` (class name), ``endpoint``, ``method``, ``path`` and the
    traceback in ``exc``; +1 on ``socialsphere_unhandled_exceptions_total{endpoint,
    exception}``. ``signal``: also send Flask's ``got_request_exception``, which Flask only
    sends for exceptions without a handler; Sentry's Flask integration listens to it, so
    without this the catch-all handler below would hide every error from Sentry.
    """
    name = type(exc).__name__
    endpoint = endpoint_label()
    UNHANDLED_EXCEPTIONS.labels(endpoint, name).inc()
    log.error(
        "unhandled exception",
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"exception": name, "endpoint": endpoint, "method": request.method, "path": request.path},
    )
    if signal:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        got_request_exception.send(app, _async_wrapper=app.ensure_sync, exception=exc)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def handle_api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.fields, exc.headers)

    @app.errorhandler(HTTPException)
    def handle_http(exc: HTTPException):
        status = exc.code or 500
        if status == 500 and getattr(exc, "original_exception", None) is not None:
            # Flask's handle_exception: raised after the view (after_request, an error
            # handler); already counted and logged by SocialSphereFlask.log_exception.
            return error_response(500, "internal_error", "internal server error")
        if not _wants_json() and status == 404:
            return exc
        code = _HTTP_CODES.get(status, "http_error")
        message = exc.description or exc.name
        if status == 413:
            message = f"request body larger than {app.config['MAX_CONTENT_LENGTH']} bytes"
        headers = {}
        if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return error_response(status, code, message, headers=headers)

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception):
        report_unexpected(exc)
        return error_response(500, "internal_error", "internal server error")
