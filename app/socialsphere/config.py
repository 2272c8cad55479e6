"""Configuration from the environment (prefix ``SOCIALSPHERE_``).

Every variable is documented in ``app/.env.example`` and in the table of
``app/README.md``; ``VARIABLES`` below is the single list both are checked
against by ``tests/test_config.py``.

Production (``SOCIALSPHERE_ENV=production``) refuses to start without its
secrets: there is no fallback value for any of them.  Development generates
throw-away secrets once and keeps them in the instance folder so restarts keep
sessions and encrypted tokens readable.
"""
from __future__ import annotations

import base64
import ipaddress
import json
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from sqlalchemy.engine import make_url

PREFIX = "SOCIALSPHERE_"


class ConfigError(RuntimeError):
    """Raised when the configuration is missing or invalid (app refuses to start)."""


#: name -> (secret?, required in production?, description).  Keep in sync with
#: .env.example and README.md (a test checks it).
VARIABLES: dict[str, tuple[bool, bool, str]] = {
    "SOCIALSPHERE_ENV": (False, False, "production | development | testing (default development)"),
    "SOCIALSPHERE_DATABASE_URL": (True, True, "SQLAlchemy URL; PostgreSQL via psycopg2 in production"),
    "SOCIALSPHERE_SECRET_KEY": (True, True, "Flask secret key (>= 32 chars)"),
    "SOCIALSPHERE_JWT_KEYS": (True, True, 'JSON object {"kid": "secret (>= 32 chars)"} of HS256 keys'),
    "SOCIALSPHERE_JWT_ACTIVE_KID": (False, True, "kid (key of SOCIALSPHERE_JWT_KEYS) used to sign new tokens"),
    "SOCIALSPHERE_JWT_ISSUER": (False, False, "iss claim (default socialsphere)"),
    "SOCIALSPHERE_JWT_AUDIENCE": (False, False, "aud claim (default socialsphere-api)"),
    "SOCIALSPHERE_ACCESS_TOKEN_TTL": (False, False, "access JWT lifetime in seconds (default 900)"),
    "SOCIALSPHERE_REFRESH_TOKEN_TTL": (False, False, "refresh token lifetime in seconds (default 1209600)"),
    "SOCIALSPHERE_TOKEN_ENCRYPTION_KEYS": (True, False, "optional older Fernet keys, comma separated (key rotation)"),
    "SOCIALSPHERE_TOKEN_ENCRYPTION_KEY": (True, True, "Fernet key encrypting social tokens at rest"),
    "SOCIALSPHERE_BASE_URL": (False, True, "public https URL, used in email links"),
    "SOCIALSPHERE_SMTP_HOST": (False, False, "SMTP server for the send-email worker"),
    "SOCIALSPHERE_SMTP_PORT": (False, False, "SMTP port (default 587)"),
    "SOCIALSPHERE_SMTP_USER": (False, False, "SMTP user (empty: no AUTH)"),
    "SOCIALSPHERE_SMTP_PASSWORD": (True, False, "SMTP password"),
    "SOCIALSPHERE_SMTP_STARTTLS": (False, False, "true|false: STARTTLS (default true)"),
    "SOCIALSPHERE_SMTP_SSL": (False, False, "true|false: implicit TLS, port 465 (default false)"),
    "SOCIALSPHERE_SMTP_TIMEOUT": (False, False, "SMTP timeout in seconds (default 20)"),
    "SOCIALSPHERE_SMTP_CA_FILE": (False, False, "CA bundle to verify the SMTP server (default: system CAs)"),
    "SOCIALSPHERE_SMTP_FROM": (False, False, "From address (default no-reply@localhost)"),
    "SOCIALSPHERE_AI_PROVIDER": (False, False, "offline | openai (default offline)"),
    "SOCIALSPHERE_AI_BASE_URL": (False, False, "OpenAI-compatible base URL, e.g. https://api.openai.com/v1"),
    "SOCIALSPHERE_AI_API_KEY": (True, False, "API key for the AI provider"),
    "SOCIALSPHERE_AI_MODEL": (False, False, "model name (default gpt-4o-mini)"),
    "SOCIALSPHERE_AI_TIMEOUT": (False, False, "AI HTTP timeout in seconds (default 15)"),
    "SOCIALSPHERE_SENTRY_DSN": (True, False, "Sentry DSN; Sentry is enabled only when set"),
    "SOCIALSPHERE_LOG_LEVEL": (False, False, "log level (default INFO)"),
    "SOCIALSPHERE_MAX_CONTENT_LENGTH": (False, False, "max request body bytes (default 1048576)"),
    "SOCIALSPHERE_CORS_ORIGINS": (False, False, "comma separated allowed origins (default empty: CORS off)"),
    "SOCIALSPHERE_TRUSTED_PROXIES": (False, False, "number of proxies in front (X-Forwarded-*), default 0"),
    "SOCIALSPHERE_RATE_LIMIT_REGISTER": (
        False, False, "sign-ups per client IP: COUNT/SECONDS, 0 = off (default 20/3600; per worker)"),
    "SOCIALSPHERE_RATE_LIMIT_PASSWORD_RESET": (
        False, False,
        "password reset requests per client IP: COUNT/SECONDS, 0 = off (default 10/3600; per worker)"),
    "SOCIALSPHERE_METRICS_ALLOW": (
        False, False,
        "comma separated CIDRs allowed to GET /metrics, others get 404 "
        "(default: all in development/testing, loopback + private ranges in production)"),
    "SOCIALSPHERE_DB_POOL_SIZE": (False, False, "SQLAlchemy pool size per process (default 5)"),
    "SOCIALSPHERE_DB_MAX_OVERFLOW": (False, False, "SQLAlchemy pool overflow (default 5)"),
    "SOCIALSPHERE_LOGIN_LIMIT_ACCOUNT": (
        False, False,
        "login attempts per email (account or not): COUNT/SECONDS, 0 = off (default 5/180; shared by all workers)"),
    "SOCIALSPHERE_LOGIN_LIMIT_IP": (
        False, False,
        "failed login attempts per client IP: COUNT/SECONDS, 0 = off (default 20/600; shared by all workers)"),
    "SOCIALSPHERE_PUBLISH_MAX_ATTEMPTS": (False, False, "publish attempts before a publication fails (default 5)"),
    "SOCIALSPHERE_EMAIL_MAX_ATTEMPTS": (False, False, "SMTP attempts before an email fails (default 5)"),
    "SOCIALSPHERE_WEBHOOK_ALLOW_PRIVATE": (False, False, "allow private webhook targets (default false in production)"),
    "SOCIALSPHERE_WEBHOOK_TIMEOUT": (False, False, "webhook HTTP timeout in seconds (default 10)"),
    "SOCIALSPHERE_SECURE_COOKIES": (False, False, "Secure flag on the refresh cookie (default true in production)"),
    "SOCIALSPHERE_MIGRATIONS_DIR": (
        False, False, "Alembic migrations dir (default: app/migrations beside the package)"),
    "PROMETHEUS_MULTIPROC_DIR": (False, False, "writable dir: enables prometheus multiprocess mode (Gunicorn)"),
}

PRODUCTION_REQUIRED = [name for name, (_s, req, _d) in VARIABLES.items() if req]


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(PREFIX + name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _bool(name: str, default: bool) -> bool:
    value = _env(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{PREFIX}{name} must be true or false, got {value!r}")


def _int(name: str, default: int, minimum: int = 0) -> int:
    value = _env(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{PREFIX}{name} must be >= {minimum}")
    return number


def _float(name: str, default: float) -> float:
    value = _env(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name} must be a number, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{PREFIX}{name} must be > 0")
    return number


def normalize_database_url(url: str) -> str:
    """Turn libpq multi-host ``?host=db1:5432,db2:5432`` into repeated ``host=``.

    SQLAlchemy's psycopg2 dialect understands ``host=db1:5432&host=db2:5432``
    (and hands libpq ``host=db1,db2 port=5432,5432``) but not a single
    comma-separated value with ports.  Everything else in the query string
    (``target_session_attrs``, ``sslmode``, ``sslrootcert``...) passes through.
    """
    if "?" not in url or not url.startswith("postgres"):
        return url
    base, query = url.split("?", 1)
    pairs = parse_qsl(query, keep_blank_values=True)
    out: list[tuple[str, str]] = []
    for key, value in pairs:
        if key == "host" and "," in value:
            out.extend(("host", part.strip()) for part in value.split(",") if part.strip())
        else:
            out.append((key, value))
    return base + "?" + urlencode(out, safe="/:,")


def engine_options(url: str, pool_size: int, max_overflow: int) -> dict[str, Any]:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": 30}}
    return {
        "pool_pre_ping": True,  # survive a failover: stale connections are replaced
        "pool_recycle": 1800,
        "pool_size": pool_size,
        "max_overflow": max_overflow,
    }


def _parse_jwt_keys(raw: str) -> dict[str, str]:
    try:
        keys = json.loads(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}JWT_KEYS must be a JSON object {{kid: secret}}") from None
    if not isinstance(keys, dict) or not keys:
        raise ConfigError(f"{PREFIX}JWT_KEYS must be a non-empty JSON object {{kid: secret}}")
    for kid, secret in keys.items():
        if not isinstance(secret, str) or len(secret) < 32:
            raise ConfigError(f"{PREFIX}JWT_KEYS[{kid!r}] must be a string of at least 32 characters")
    return keys


def _check_fernet(key: str, name: str) -> None:
    try:
        if len(base64.urlsafe_b64decode(key.encode())) != 32:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"{name} must be a Fernet key (32 url-safe base64 bytes; "
            "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
        ) from None


def _dev_secrets(instance_path: str) -> dict[str, str]:
    """Throw-away secrets for development, persisted in the instance folder."""
    path = Path(instance_path) / "dev-secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    from cryptography.fernet import Fernet

    data = {
        "SECRET_KEY": secrets.token_urlsafe(48),
        "JWT_KEYS": json.dumps({"dev1": secrets.token_urlsafe(48)}),
        "JWT_ACTIVE_KID": "dev1",
        "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    return data


def load_config(instance_path: str) -> dict[str, Any]:
    """Build the Flask config mapping from the environment."""
    env = (_env("ENV", "development") or "development").lower()
    if env not in {"production", "development", "testing"}:
        raise ConfigError(f"{PREFIX}ENV must be production, development or testing, got {env!r}")
    production = env == "production"

    if production:
        missing = [name for name in PRODUCTION_REQUIRED if _env(name[len(PREFIX):]) is None]
        if missing:
            raise ConfigError(
                "production configuration incomplete: missing " + ", ".join(missing)
            )
        fallback: dict[str, str] = {}
    else:
        fallback = _dev_secrets(instance_path) if env == "development" else {}

    def secret(name: str) -> str | None:
        return _env(name, fallback.get(name))

    database_url = _env("DATABASE_URL") or (
        "sqlite:///" + str(Path(instance_path) / "socialsphere.db")
    )
    database_url = normalize_database_url(database_url)
    pool_size = _int("DB_POOL_SIZE", 5, 1)
    max_overflow = _int("DB_MAX_OVERFLOW", 5, 0)

    cfg: dict[str, Any] = {
        "ENV_NAME": env,
        "TESTING": env == "testing",
        "SECRET_KEY": secret("SECRET_KEY"),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options(database_url, pool_size, max_overflow),
        "SQLALCHEMY_TRACK_MODIFICATIONS": False,
        "JWT_KEYS": _parse_jwt_keys(secret("JWT_KEYS")) if secret("JWT_KEYS") else {},
        "JWT_ACTIVE_KID": secret("JWT_ACTIVE_KID"),
        "JWT_ISSUER": _env("JWT_ISSUER", "socialsphere"),
        "JWT_AUDIENCE": _env("JWT_AUDIENCE", "socialsphere-api"),
        "ACCESS_TOKEN_TTL": _int("ACCESS_TOKEN_TTL", 900, 30),
        "REFRESH_TOKEN_TTL": _int("REFRESH_TOKEN_TTL", 14 * 24 * 3600, 60),
        "TOKEN_ENCRYPTION_KEY": secret("TOKEN_ENCRYPTION_KEY"),
        "TOKEN_ENCRYPTION_KEYS": [
            k.strip() for k in (_env("TOKEN_ENCRYPTION_KEYS", "") or "").split(",") if k.strip()
        ],
        "BASE_URL": (_env("BASE_URL", "http://127.0.0.1:5000") or "").rstrip("/"),
        "SMTP_HOST": _env("SMTP_HOST"),
        "SMTP_PORT": _int("SMTP_PORT", 587, 1),
        "SMTP_USER": _env("SMTP_USER"),
        "SMTP_PASSWORD": _env("SMTP_PASSWORD"),
        "SMTP_STARTTLS": _bool("SMTP_STARTTLS", True),
        "SMTP_SSL": _bool("SMTP_SSL", False),
        "SMTP_TIMEOUT": _float("SMTP_TIMEOUT", 20.0),
        "SMTP_CA_FILE": _env("SMTP_CA_FILE"),
        "SMTP_FROM": _env("SMTP_FROM", "SocialSphere AI <no-reply@localhost>"),
        "AI_PROVIDER": (_env("AI_PROVIDER", "offline") or "offline").lower(),
        "AI_BASE_URL": _env("AI_BASE_URL"),
        "AI_API_KEY": _env("AI_API_KEY"),
        "AI_MODEL": _env("AI_MODEL", "gpt-4o-mini"),
        "AI_TIMEOUT": _float("AI_TIMEOUT", 15.0),
        "SENTRY_DSN": _env("SENTRY_DSN"),
        "LOG_LEVEL": (_env("LOG_LEVEL", "INFO") or "INFO").upper(),
        "MAX_CONTENT_LENGTH": _int("MAX_CONTENT_LENGTH", 1024 * 1024, 1024),
        "CORS_ORIGINS": [
            o.strip().rstrip("/") for o in (_env("CORS_ORIGINS", "") or "").split(",") if o.strip()
        ],
        "TRUSTED_PROXIES": _int("TRUSTED_PROXIES", 0, 0),
        "RATE_LIMIT_REGISTER": _env("RATE_LIMIT_REGISTER", "20/3600"),
        "RATE_LIMIT_PASSWORD_RESET": _env("RATE_LIMIT_PASSWORD_RESET", "10/3600"),
        # None = the environment's default (see metrics_allow_networks)
        "METRICS_ALLOW": _env("METRICS_ALLOW"),
        "LOGIN_LIMIT_ACCOUNT": _env("LOGIN_LIMIT_ACCOUNT", "5/180"),
        "LOGIN_LIMIT_IP": _env("LOGIN_LIMIT_IP", "20/600"),
        "PUBLISH_MAX_ATTEMPTS": _int("PUBLISH_MAX_ATTEMPTS", 5, 1),
        "EMAIL_MAX_ATTEMPTS": _int("EMAIL_MAX_ATTEMPTS", 5, 1),
        "WEBHOOK_ALLOW_PRIVATE": _bool("WEBHOOK_ALLOW_PRIVATE", not production),
        "WEBHOOK_TIMEOUT": _float("WEBHOOK_TIMEOUT", 10.0),
        "SECURE_COOKIES": _bool("SECURE_COOKIES", production),
        "PASSWORD_HASH_FAST": env == "testing",
        "JSON_SORT_KEYS": False,
    }
    return cfg


def validate_config(cfg: dict[str, Any]) -> None:
    """Check the final config (after overrides); raise ConfigError naming the variable."""
    if not cfg.get("SECRET_KEY") or len(cfg["SECRET_KEY"]) < 32:
        raise ConfigError(f"{PREFIX}SECRET_KEY must be set (at least 32 characters)")
    keys = cfg.get("JWT_KEYS") or {}
    if not keys:
        raise ConfigError(f"{PREFIX}JWT_KEYS must be set")
    if isinstance(keys, str):
        cfg["JWT_KEYS"] = keys = _parse_jwt_keys(keys)
    if cfg.get("JWT_ACTIVE_KID") not in keys:
        raise ConfigError(f"{PREFIX}JWT_ACTIVE_KID must name a key of {PREFIX}JWT_KEYS")
    if not cfg.get("TOKEN_ENCRYPTION_KEY"):
        raise ConfigError(f"{PREFIX}TOKEN_ENCRYPTION_KEY must be set")
    _check_fernet(cfg["TOKEN_ENCRYPTION_KEY"], f"{PREFIX}TOKEN_ENCRYPTION_KEY")
    for key in cfg.get("TOKEN_ENCRYPTION_KEYS", []):
        _check_fernet(key, f"{PREFIX}TOKEN_ENCRYPTION_KEYS")
    if cfg.get("AI_PROVIDER") not in {"offline", "openai"}:
        raise ConfigError(f"{PREFIX}AI_PROVIDER must be offline or openai")
    if cfg.get("AI_PROVIDER") == "openai" and not cfg.get("AI_BASE_URL"):
        raise ConfigError(f"{PREFIX}AI_BASE_URL must be set when {PREFIX}AI_PROVIDER=openai")
    if cfg.get("ENV_NAME") == "production" and not str(cfg.get("BASE_URL", "")).startswith("https://"):
        raise ConfigError(f"{PREFIX}BASE_URL must be an https:// URL in production")
    from .ratelimit import parse_limit

    for key, default in (("RATE_LIMIT_REGISTER", "20/3600"), ("RATE_LIMIT_PASSWORD_RESET", "10/3600"),
                         ("LOGIN_LIMIT_ACCOUNT", "5/180"), ("LOGIN_LIMIT_IP", "20/600")):
        try:
            cfg[key] = parse_limit(cfg.get(key) or default, PREFIX + key)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    cfg["METRICS_ALLOW_NETWORKS"] = metrics_allow_networks(cfg.get("METRICS_ALLOW"),
                                                           cfg.get("ENV_NAME", "development"))


#: /metrics in production when SOCIALSPHERE_METRICS_ALLOW is unset: loopback + private ranges
METRICS_DEFAULT_PRODUCTION = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12",
                              "192.168.0.0/16", "fc00::/7")


def metrics_allow_networks(value: Any, env: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None:
    """Networks allowed to read /metrics; None = everyone (development/testing default)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if env != "production":
            return None
        value = METRICS_DEFAULT_PRODUCTION
    items = value.split(",") if isinstance(value, str) else list(value)
    networks = []
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{PREFIX}METRICS_ALLOW must be a comma separated list of CIDRs, "
                              f"got {item!r}") from None
    return tuple(networks)
