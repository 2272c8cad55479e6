"""SocialSphere AI: Flask application factory."""
from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import IO, Any

from flask import Flask, Request, request
from werkzeug.exceptions import NotFound, RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter, ValidationError
from werkzeug.utils import cached_property

from .config import ConfigError, load_config, validate_config
from .extensions import db, migrate

__version__ = "1.0.0"
# app/migrations next to the package (source tree / release directory); a wheel install
# must point SOCIALSPHERE_MIGRATIONS_DIR at the release's migrations directory.
MIGRATIONS_DIR = os.environ.get("SOCIALSPHERE_MIGRATIONS_DIR") or str(
    Path(__file__).resolve().parent.parent / "migrations"
)
log = logging.getLogger(__name__)


class SocialSphereRequest(Request):
    """A streamed body (Transfer-Encoding: chunked, no Content-Length) over MAX_CONTENT_LENGTH
    is a 413, as one with Content-Length is.

    Werkzeug wraps such a stream in a ``LimitedStream`` whose ``read()`` stops at the limit
    and returns the body cut there without an error, so a whitespace-padded JSON body of any
    size was parsed from its first MAX_CONTENT_LENGTH bytes. Here the body is read up to the
    limit plus one byte: that byte means too large.
    """

    @cached_property
    def stream(self) -> IO[bytes]:
        limit = self.max_content_length
        if limit is None or self.content_length is not None or "wsgi.input_terminated" not in self.environ:
            return super().stream  # Content-Length is checked before reading; no stream: empty
        raw = self.environ["wsgi.input"]
        body = bytearray()
        while len(body) <= limit:
            chunk = raw.read(min(64 * 1024, limit + 1 - len(body)))
            if not chunk:
                return io.BytesIO(bytes(body))
            body += chunk
        raise RequestEntityTooLarge()


class SocialSphereFlask(Flask):
    request_class = SocialSphereRequest

    def log_exception(self, exc_info) -> None:
        """Exceptions Flask catches itself (raised in after_request or an error handler):
        counted and logged like those of the views (errors.report_unexpected)."""
        from .errors import report_unexpected

        if exc_info[1] is None:  # pragma: no cover - Flask always passes an active exception
            super().log_exception(exc_info)
            return
        report_unexpected(exc_info[1], signal=False)  # Flask has sent got_request_exception


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app.  ``config`` overrides values read from the environment."""
    instance_path = (config or {}).get("INSTANCE_PATH") or os.environ.get(
        "SOCIALSPHERE_INSTANCE_PATH"
    )
    app = SocialSphereFlask(
        __name__,
        static_folder=None,  # /static is served by the web blueprint (hashed assets)
        instance_path=instance_path,
        instance_relative_config=True,
    )
    cfg = load_config(app.instance_path)
    if config:
        cfg.update(config)
        if "SQLALCHEMY_DATABASE_URI" in config and "SQLALCHEMY_ENGINE_OPTIONS" not in config:
            from .config import engine_options, normalize_database_url

            cfg["SQLALCHEMY_DATABASE_URI"] = normalize_database_url(cfg["SQLALCHEMY_DATABASE_URI"])
            cfg["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(cfg["SQLALCHEMY_DATABASE_URI"], 5, 5)
    validate_config(cfg)
    app.config.update(cfg)

    from .logging_setup import configure_logging, init_request_logging

    configure_logging(app.config["LOG_LEVEL"])
    _init_sentry(app)

    if app.config["TRUSTED_PROXIES"]:
        n = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

    app.url_map.converters["int"] = BoundedInt  # ids beyond BIGINT are plain 404s
    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR, compare_type=True)
    _sqlite_pragmas(app)

    from . import models  # noqa: F401  (register tables)
    from .errors import register_error_handlers
    from .metrics import init_metrics

    init_request_logging(app)
    init_metrics(app)
    register_error_handlers(app)
    _security_headers(app)

    from .admin import bp as admin_bp
    from .auth import bp as auth_bp
    from .content import bp as content_bp
    from .ops import bp as ops_bp
    from .social import bp as social_bp

    app.register_blueprint(ops_bp)
    app.register_blueprint(auth_bp, url_prefix="/api/v1/auth")
    app.register_blueprint(content_bp, url_prefix="/api/v1")
    app.register_blueprint(social_bp, url_prefix="/api/v1/social")
    app.register_blueprint(admin_bp, url_prefix="/api/v1/admin")

    try:
        from .web import bp as web_bp
    except ImportError:  # the static frontend is optional for the API
        log.warning("socialsphere.web not available: HTML pages are not served")
    else:
        app.register_blueprint(web_bp)

    from .cli import register_cli

    register_cli(app)
    return app


class BoundedInt(IntegerConverter):
    """``<int:id>`` limited to 1 .. models.MAX_ID, so huge ids never reach the database.

    An id out of range is a 404 whatever the method. Not werkzeug's ValidationError: the
    matcher checks the range only after choosing the rule, and by then it has noted the
    other methods of the same path, so ``PATCH /posts/0`` became a 405 with an Allow header
    naming methods that would 404 as well.
    """

    def __init__(self, map, *args, **kwargs):  # noqa: A002 (werkzeug signature)
        from .models import MAX_ID

        kwargs.setdefault("min", 1)
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)

    def to_python(self, value: str) -> int:
        try:
            return super().to_python(value)
        except ValidationError:
            raise NotFound() from None


def _sqlite_pragmas(app: Flask) -> None:
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return
    from sqlalchemy import event

    with app.app_context():
        engine = db.engine

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()


def _init_sentry(app: Flask) -> None:
    dsn = app.config.get("SENTRY_DSN")
    if not dsn:
        return
    try:
        import sentry_sdk
        from sentry_sdk.integrations.flask import FlaskIntegration
    except ImportError:
        log.warning("SOCIALSPHERE_SENTRY_DSN is set but sentry-sdk is not installed")
        return
    sentry_sdk.init(
        dsn=dsn,
        integrations=[FlaskIntegration()],
        environment=app.config["ENV_NAME"],
        release=__version__,
        traces_sample_rate=0.0,
        before_send=_sentry_tag_request_id,
    )


def _sentry_tag_request_id(event: dict[str, Any], _hint: dict[str, Any]) -> dict[str, Any]:
    """Tag Sentry events with the request id, to find the matching JSON log lines."""
    from flask import g, has_request_context

    if has_request_context() and g.get("request_id"):
        event.setdefault("tags", {})["request_id"] = g.request_id
    return event


CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def _security_headers(app: Flask) -> None:
    origins = set(app.config["CORS_ORIGINS"])

    @app.before_request
    def _cors_preflight():
        if (
            origins
            and request.method == "OPTIONS"
            and request.headers.get("Origin") in origins
            and request.headers.get("Access-Control-Request-Method")
        ):
            response = app.make_default_options_response()
            response.status_code = 204
            return response
        return None

    @app.after_request
    def _headers(response):
        h = response.headers
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        h.setdefault("Content-Security-Policy", CSP)
        # No Strict-Transport-Security here: TLS ends at the edge, and the edge
        # (roles/nginx) sends HSTS on every HTTPS response; a second copy from the
        # app would reach clients twice.
        if request.path.startswith("/api/"):
            h.setdefault("Cache-Control", "no-store")
        origin = request.headers.get("Origin")
        if origins and origin in origins:
            h["Access-Control-Allow-Origin"] = origin
            h["Vary"] = "Origin"
            h["Access-Control-Allow-Headers"] = "Authorization, Content-Type, X-Request-ID"
            h["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE"
            h["Access-Control-Max-Age"] = "600"
        return response


__all__ = ["create_app", "ConfigError", "__version__"]
