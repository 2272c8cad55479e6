"""Passwords (argon2id), JWT access tokens (HS256 + kid), opaque tokens, Fernet."""
from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app, g, request

from .errors import ApiError
from .timeutil import utcnow

ALGORITHMS = ["HS256"]  # explicit allow-list: "none" and asymmetric confusion are rejected

_hashers: dict[bool, PasswordHasher] = {}


def _hasher() -> PasswordHasher:
    fast = bool(current_app.config.get("PASSWORD_HASH_FAST"))
    if fast not in _hashers:
        # tests use cheap parameters; production uses argon2-cffi's RFC 9106 low-memory profile
        _hashers[fast] = (
            PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1) if fast else PasswordHasher()
        )
    return _hashers[fast]


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return _hasher().verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


_DUMMY_HASH: dict[bool, str] = {}


def burn_password_check(password: str) -> None:
    """Same cost as a real check, for unknown accounts (no timing enumeration)."""
    fast = bool(current_app.config.get("PASSWORD_HASH_FAST"))
    if fast not in _DUMMY_HASH:
        _DUMMY_HASH[fast] = _hasher().hash(secrets.token_urlsafe(16))
    verify_password(_DUMMY_HASH[fast], password)


def new_opaque_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- JWT --------------------------------------------------------------------

def issue_access_token(user_id: int, role: str, session_id: str | None = None) -> tuple[str, int]:
    """A signed access JWT.  ``session_id`` (claim ``sid``) is the refresh token family of the
    login: the token is refused once that session is revoked (/logout, refresh token reuse,
    revocation of all sessions).  Without it only user-wide revocation applies (CLI/tests,
    and tokens of releases before issue 11 item 2)."""
    cfg = current_app.config
    kid = cfg["JWT_ACTIVE_KID"]
    ttl = int(cfg["ACCESS_TOKEN_TTL"])
    now = utcnow().replace(tzinfo=UTC)
    claims = {
        "sub": str(user_id),
        "role": role,
        "iss": cfg["JWT_ISSUER"],
        "aud": cfg["JWT_AUDIENCE"],
        # NumericDate with microseconds (RFC 7519 allows non-integer values): revocation compares
        # it with sessions_revoked_at, so a token of the same second as a revocation is told apart
        "iat": _microseconds(now) / 1_000_000,
        "nbf": now,
        "exp": now + timedelta(seconds=ttl),
        "jti": uuid.uuid4().hex,
        "typ": "access",
    }
    if session_id is not None:
        claims["sid"] = session_id
    token = jwt.encode(claims, cfg["JWT_KEYS"][kid], algorithm="HS256", headers={"kid": kid})
    return token, ttl


_SESSION_ID = re.compile(r"[0-9a-f]{32}")  # refresh token family ids: secrets.token_hex(16)
_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def _microseconds(instant: datetime) -> int:
    """Microseconds since the epoch, exactly (naive = UTC, as stored)."""
    if instant.tzinfo is not None:
        instant = instant.astimezone(UTC).replace(tzinfo=None)
    return (instant - _EPOCH) // _MICROSECOND


def _revoked(claims: dict[str, Any], revoked_at: datetime | None) -> bool:
    """Was the token issued at or before ``revoked_at``?  ``iat`` is compared in microseconds
    (tokens of earlier releases carry whole seconds: they count as issued at the start of their
    second, so one of the revocation's own second is refused, never wrongly accepted)."""
    if revoked_at is None:
        return False
    try:
        issued = round(float(claims["iat"]) * 1_000_000)
    except (TypeError, ValueError, OverflowError):
        raise _invalid_token() from None
    return issued <= _microseconds(revoked_at)


def _invalid_token() -> ApiError:
    """The one 401 for an access token that is not accepted, whatever the reason (malformed,
    forged, wrong key/alg/claims, unknown user): no library text, nothing to learn from."""
    return ApiError("invalid token", status=401, code="invalid_token")


def decode_access_token(token: str) -> dict[str, Any]:
    cfg = current_app.config
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _invalid_token() from None
    kid = header.get("kid")
    if header.get("alg") not in ALGORITHMS or not isinstance(kid, str) or kid not in cfg["JWT_KEYS"]:
        raise _invalid_token()
    try:
        claims = jwt.decode(
            token,
            cfg["JWT_KEYS"][kid],
            algorithms=ALGORITHMS,
            audience=cfg["JWT_AUDIENCE"],
            issuer=cfg["JWT_ISSUER"],
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            leeway=5,
        )
    except jwt.ExpiredSignatureError:
        raise ApiError("token expired", status=401, code="token_expired") from None
    except jwt.PyJWTError:
        raise _invalid_token() from None
    if claims.get("typ") != "access":
        raise _invalid_token()
    return claims


def current_user():
    return g.get("current_user")


def _load_user(user_id: int, claims: dict[str, Any]):
    """(user or None, is the token's session alive): one round trip.  The session check is
    folded into the user lookup as two EXISTS probes of an index (no extra query, no write)."""
    from sqlalchemy import select

    from .extensions import db
    from .models import RefreshToken, User

    sid = claims.get("sid")
    if sid is None:  # no session (see issue_access_token): user-wide revocation only
        return db.session.get(User, user_id), True
    if not isinstance(sid, str) or not _SESSION_ID.fullmatch(sid):
        raise _invalid_token()
    row = db.session.execute(
        select(User, RefreshToken.family_live(sid).label("session_live")).where(User.id == user_id)
    ).first()
    return (row[0], bool(row[1])) if row is not None else (None, False)


def _authenticate():
    from .models import MAX_ID

    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError("authentication required", status=401, code="unauthorized",
                       headers={"WWW-Authenticate": 'Bearer realm="socialsphere"'})
    claims = decode_access_token(token.strip())
    try:
        user_id = int(claims["sub"])
    except (TypeError, ValueError):
        raise _invalid_token() from None
    if not 1 <= user_id <= MAX_ID:  # no such id; too big for SQLite's INTEGER (OverflowError)
        raise _invalid_token()
    user, session_live = _load_user(user_id, claims)
    if user is None:  # deleted since the token was issued
        raise _invalid_token()
    if user.status != "active":
        raise ApiError("account suspended", status=403, code="account_suspended")
    if not session_live or _revoked(claims, user.sessions_revoked_at):
        raise ApiError("session revoked", status=401, code="token_revoked")
    # role changes take effect immediately because the role is read from the DB.
    g.current_user = user
    return user


def login_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        _authenticate()
        return view(*args, **kwargs)

    wrapper._auth = "user"  # type: ignore[attr-defined]
    return wrapper


def admin_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        user = _authenticate()
        if user.role != "admin":
            raise ApiError("admin role required", status=403, code="forbidden")
        return view(*args, **kwargs)

    wrapper._auth = "admin"  # type: ignore[attr-defined]
    return wrapper


# --- encryption at rest -----------------------------------------------------

def _fernet() -> MultiFernet:
    cfg = current_app.config
    keys = [cfg["TOKEN_ENCRYPTION_KEY"], *cfg.get("TOKEN_ENCRYPTION_KEYS", [])]
    return MultiFernet([Fernet(k) for k in keys])


def encrypt_secret(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt_secret(ciphertext: str) -> str:
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise RuntimeError("cannot decrypt stored secret (wrong TOKEN_ENCRYPTION_KEY?)") from None
