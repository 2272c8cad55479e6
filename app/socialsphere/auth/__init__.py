"""Authentication: register, verify email, login, refresh rotation, logout, password reset."""
from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from flask import Blueprint, current_app, g, jsonify, request
from sqlalchemy import select, update

from .. import login_throttle
from ..apidoc import doc
from ..audit import audit
from ..emails import enqueue
from ..errors import ApiError
from ..extensions import db
from ..metrics import LOGIN_FAILURES
from ..models import OneTimeToken, RefreshToken, User
from ..ratelimit import rate_limited
from ..security import (
    burn_password_check,
    current_user,
    hash_password,
    issue_access_token,
    login_required,
    new_opaque_token,
    token_digest,
    verify_password,
)
from ..settings import get_setting
from ..subscriptions import subscribe, summary
from ..timeutil import utcnow
from ..validation import Field, validate_body

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)

COOKIE = "ss_refresh"
COOKIE_PATH = "/api/v1/auth"
VERIFY_TTL = timedelta(hours=48)
RESET_TTL = timedelta(hours=1)

PASSWORD = Field("password", required=True, min_length=10, max_length=256,
                 description="10 to 256 characters")
REGISTER = {
    "email": Field("email", required=True, max_length=254),
    "password": PASSWORD,
    "name": Field("string", required=True, min_length=1, max_length=100),
}
LOGIN = {
    "email": Field("string", required=True, max_length=254),
    "password": Field("password", required=True, max_length=256),
}
TOKEN = {"token": Field("string", required=True, max_length=200)}
REFRESH = {"refresh_token": Field("string", max_length=200)}
REFRESH_COOKIE = {COOKIE: Field("string", description="the refresh token, read when the body has none "
                                                    "(login and refresh set it)")}
FETCH_HEADER = {"X-Requested-With": Field("string", choices=("fetch",),
                                          description="required with the refresh cookie (CSRF check)")}
EMAIL_ONLY = {"email": Field("string", required=True, max_length=254)}
RESET_CONFIRM = {"token": Field("string", required=True, max_length=200), "password": PASSWORD}


def _weak(password: str, email: str) -> str | None:
    if password.lower() in {"password123", "1234567890", "qwertyuiop"} or password == email:
        return "is too common"
    if len(set(password)) < 4:
        return "is too simple"
    return None


def _one_time_token(user: User, purpose: str, ttl: timedelta) -> str:
    token = new_opaque_token()
    db.session.add(OneTimeToken(user_id=user.id, purpose=purpose, token_hash=token_digest(token),
                                expires_at=utcnow() + ttl))
    return token


def _use_one_time_token(token: str, purpose: str) -> User:
    row = db.session.scalar(
        select(OneTimeToken).where(OneTimeToken.token_hash == token_digest(token),
                                   OneTimeToken.purpose == purpose)
    )
    if row is None or row.used_at is not None or row.expires_at < utcnow():
        raise ApiError("token invalid or expired", status=400, code="invalid_token")
    # single use, race-safe: only one UPDATE can flip used_at
    result = db.session.execute(
        update(OneTimeToken).where(OneTimeToken.id == row.id, OneTimeToken.used_at.is_(None))
        .values(used_at=utcnow())
    )
    if result.rowcount != 1:
        raise ApiError("token invalid or expired", status=400, code="invalid_token")
    user = db.session.get(User, row.user_id)
    assert user is not None
    return user


def _send_verification(user: User) -> None:
    token = _one_time_token(user, "verify_email", VERIFY_TTL)
    enqueue(user.email, "verify_email", name=user.name, token=token)


@bp.post("/register")
@doc("Create an account (queues a verification email)", tag="auth", body=REGISTER, status=201,
     response_schema="UserEnvelope",
     responses={403: "registration closed", 409: "email taken",
                429: "too many sign-ups from this address (Retry-After)"})
@rate_limited("register")
def register():
    data = validate_body(REGISTER)
    if not get_setting("registration_open"):
        raise ApiError("registration is closed", status=403, code="registration_closed")
    reason = _weak(data["password"], data["email"])
    if reason:
        raise ApiError("invalid input", status=422, code="validation_error",
                       fields={"password": reason})
    if db.session.scalar(select(User.id).where(User.email == data["email"])) is not None:
        raise ApiError("an account with this email already exists", status=409, code="email_taken")
    user = User(email=data["email"], name=data["name"], password_hash=hash_password(data["password"]))
    db.session.add(user)
    subscribe(user)
    db.session.flush()
    _send_verification(user)
    db.session.commit()
    return jsonify(user=user.to_dict()), 201


@bp.post("/verify-email")
@doc("Confirm an email address with the emailed token", tag="auth", body=TOKEN,
     response_schema="UserEnvelope", responses={400: "invalid or expired token"})
def verify_email():
    data = validate_body(TOKEN)
    user = _use_one_time_token(data["token"], "verify_email")
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
    db.session.commit()
    return jsonify(user=user.to_dict())


@bp.post("/resend-verification")
@doc("Queue a new verification email", tag="auth", body={}, body_required=False, status=202,
     response_schema="Status", responses={401: "unauthenticated"})
@login_required
def resend_verification():
    validate_body({}, required=False)
    user = current_user()
    if user.email_verified_at is None:
        _send_verification(user)
        db.session.commit()
    return jsonify(status="accepted"), 202


def _issue_refresh(user: User, family_id: str | None = None) -> tuple[str, str]:
    """A new refresh token of session ``family_id`` (a new session when None): (token, family)."""
    token = new_opaque_token()
    family_id = family_id or secrets.token_hex(16)
    db.session.add(RefreshToken(
        user_id=user.id,
        family_id=family_id,
        token_hash=token_digest(token),
        expires_at=utcnow() + timedelta(seconds=current_app.config["REFRESH_TOKEN_TTL"]),
        user_agent=(request.headers.get("User-Agent") or "")[:255] or None,
    ))
    return token, family_id


def _token_response(user: User, refresh_token: str, session_id: str, status: int = 200):
    access, ttl = issue_access_token(user.id, user.role, session_id=session_id)
    response = jsonify(access_token=access, token_type="Bearer", expires_in=ttl,  # noqa: S106
                       refresh_token=refresh_token, user=user.to_dict())
    response.status_code = status
    response.set_cookie(
        COOKIE, refresh_token, max_age=current_app.config["REFRESH_TOKEN_TTL"],
        path=COOKIE_PATH, httponly=True, secure=current_app.config["SECURE_COOKIES"],
        samesite="Strict",
    )
    return response


def _bad_credentials(reason: str) -> ApiError:
    LOGIN_FAILURES.labels(reason).inc()
    return ApiError("invalid email or password", status=401, code="invalid_credentials")


@bp.post("/login")
@doc("Log in: access JWT + rotating refresh token (also set as HttpOnly cookie)", tag="auth",
     body=LOGIN, response_schema="TokenPair",
     responses={401: "bad credentials (the same answer whether the email has an account or not)",
                403: "account suspended",
                429: "too many attempts from this address or for this email (Retry-After)"})
def login():
    data = validate_body(LOGIN)
    email = data["email"].strip().lower()
    retry_after = login_throttle.attempt(email, request.remote_addr)
    if retry_after:
        LOGIN_FAILURES.labels("throttled").inc()
        raise ApiError("too many failed logins; try again later", status=429, code="rate_limited",
                       headers={"Retry-After": str(retry_after)})
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None:
        burn_password_check(data["password"])  # the same argon2 cost as a known account
        raise _bad_credentials("unknown_user")
    if not verify_password(user.password_hash, data["password"]):
        raise _bad_credentials("bad_password")
    if user.status != "active":
        raise ApiError("account suspended", status=403, code="account_suspended")
    user.last_login_at = utcnow()
    g.current_user = user
    login_throttle.succeeded(email, request.remote_addr)
    refresh, session_id = _issue_refresh(user)
    db.session.commit()
    return _token_response(user, refresh, session_id)


def _presented_refresh_token(data: dict) -> str:
    token = data.get("refresh_token")
    if token:
        return token
    cookie = request.cookies.get(COOKIE)
    if cookie:
        # the cookie is SameSite=Strict; the custom header also blocks form-based CSRF
        if request.headers.get("X-Requested-With") != "fetch":
            raise ApiError("cookie refresh requires header X-Requested-With: fetch", status=403,
                           code="csrf_check_failed")
        return cookie
    raise ApiError("refresh_token required", status=422, code="validation_error",
                   fields={"refresh_token": "is required (body or ss_refresh cookie)"})


def _revoke_family(family_id: str) -> None:
    db.session.execute(update(RefreshToken).where(RefreshToken.family_id == family_id,
                                                  RefreshToken.revoked_at.is_(None))
                       .values(revoked_at=utcnow()))


@bp.post("/refresh")
@doc("Rotate the refresh token and get a new access token", tag="auth", body=REFRESH,
     body_required=False, response_schema="TokenPair", headers=FETCH_HEADER, cookies=REFRESH_COOKIE,
     responses={401: "invalid, expired, revoked or reused refresh token",
                403: "the refresh cookie without X-Requested-With: fetch (csrf_check_failed)"})
def refresh():
    data = validate_body(REFRESH, required=False)
    presented = _presented_refresh_token(data)
    row = db.session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_digest(presented)))
    if row is None:
        raise ApiError("invalid refresh token", status=401, code="invalid_token")
    now = utcnow()
    if row.rotated_at is not None or row.revoked_at is not None:
        if row.rotated_at is not None:
            # reuse of a rotated token: assume theft, kill the whole family
            _revoke_family(row.family_id)
            audit("auth.refresh_reuse", "user", row.user_id, {"family": row.family_id},
                  actor_id=row.user_id)
            db.session.commit()
            log.warning("refresh token reuse detected", extra={"user_id": row.user_id})
            raise ApiError("refresh token reuse detected; all sessions of this login revoked",
                           status=401, code="token_reused")
        raise ApiError("refresh token revoked", status=401, code="token_revoked")
    if row.expires_at < now:
        raise ApiError("refresh token expired", status=401, code="token_expired")
    if not db.session.scalar(select(RefreshToken.family_live(row.family_id))):
        # a token a refresh inserted while its family was being revoked: the session stays dead
        raise ApiError("refresh token revoked", status=401, code="token_revoked")
    user = db.session.get(User, row.user_id)
    if user is None or user.status != "active":
        raise ApiError("account suspended", status=401, code="invalid_token")
    # compare-and-set: of two concurrent refreshes with the same token only one wins, and a
    # revocation (logout, reuse detection) committed since the row was read wins over both
    result = db.session.execute(update(RefreshToken).where(RefreshToken.id == row.id,
                                                           RefreshToken.rotated_at.is_(None),
                                                           RefreshToken.revoked_at.is_(None))
                                .values(rotated_at=now))
    if result.rowcount != 1:
        db.session.rollback()
        raise ApiError("refresh token already used", status=401, code="token_reused")
    g.current_user = user
    new_token, _ = _issue_refresh(user, row.family_id)
    db.session.commit()
    return _token_response(user, new_token, row.family_id)


def _clear_cookie(response):
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True,
                           secure=current_app.config["SECURE_COOKIES"], samesite="Strict")
    return response


@bp.post("/logout")
@doc("Revoke this login's session: its refresh token family and the access tokens issued with it",
     tag="auth", body=REFRESH, body_required=False, cookies=REFRESH_COOKIE,
     status=204, response_schema="empty")
def logout():
    data = validate_body(REFRESH, required=False)
    token = data.get("refresh_token") or request.cookies.get(COOKIE)
    if token:
        row = db.session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_digest(token)))
        if row is not None:
            _revoke_family(row.family_id)
            db.session.commit()
    return _clear_cookie(current_app.response_class(status=204))


def revoke_all_sessions(user_id: int) -> int:
    """Revoke every refresh token and every access token issued until now."""
    db.session.execute(update(User).where(User.id == user_id).values(sessions_revoked_at=utcnow()))
    result = db.session.execute(update(RefreshToken).where(RefreshToken.user_id == user_id,
                                                           RefreshToken.revoked_at.is_(None))
                                .values(revoked_at=utcnow()))
    return result.rowcount or 0


@bp.post("/logout-all")
@doc("Revoke every refresh token of the current user", tag="auth", status=204,
     response_schema="empty", responses={401: "unauthenticated"})
@login_required
def logout_all():
    revoke_all_sessions(current_user().id)
    db.session.commit()
    return _clear_cookie(current_app.response_class(status=204))


@bp.post("/password-reset/request")
@doc("Email a password reset link (always 202: no account enumeration)", tag="auth",
     body=EMAIL_ONLY, status=202, response_schema="Status",
     responses={429: "too many requests from this address (Retry-After)"})
@rate_limited("password_reset")
def password_reset_request():
    data = validate_body(EMAIL_ONLY)
    user = db.session.scalar(select(User).where(User.email == data["email"].strip().lower()))
    if user is not None and user.status == "active":
        token = _one_time_token(user, "password_reset", RESET_TTL)
        enqueue(user.email, "password_reset", name=user.name, token=token)
        db.session.commit()
    return jsonify(status="accepted"), 202


@bp.post("/password-reset/confirm")
@doc("Set a new password with the emailed token (revokes all sessions)", tag="auth",
     body=RESET_CONFIRM, response_schema="Status", responses={400: "invalid or expired token"})
def password_reset_confirm():
    data = validate_body(RESET_CONFIRM)
    user = _use_one_time_token(data["token"], "password_reset")
    reason = _weak(data["password"], user.email)
    if reason:
        db.session.rollback()
        raise ApiError("invalid input", status=422, code="validation_error",
                       fields={"password": reason})
    user.password_hash = hash_password(data["password"])
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()  # the emailed link proves the address
    revoke_all_sessions(user.id)
    login_throttle.clear_account(user.email)  # the emailed link proves the owner: let them in
    audit("auth.password_reset", "user", user.id, actor_id=user.id)
    db.session.commit()
    return jsonify(status="ok")


@bp.get("/me")
@doc("The current user, subscription usage and the dashboard announcement", tag="auth", response_schema="Me",
     responses={401: "unauthenticated"})
@login_required
def me():
    user = current_user()
    result = summary(user)
    announcement = get_setting("announcement")
    if not announcement or not announcement.strip():
        announcement = None  # "" (the default) means no banner
    db.session.commit()
    return jsonify(user=user.to_dict(), subscription=result, announcement=announcement)
