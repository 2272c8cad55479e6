"""Session revocation of access tokens (issue 11, items 1 and 2).

Time is controlled with the ``clock`` fixture (conftest): every ``clock.set(x)`` with x < 1
is the same wall-clock second, so the tests need no sleeping.
"""
import re

import pytest
from conftest import error_of
from sqlalchemy import select

NEW_PASSWORD = "a brand new password"


def _login(client, user, password=None):
    r = client.post("/api/v1/auth/login", json={"email": user.email, "password": password or user.password})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def _me(client, token):
    return client.as_user(token).get("/api/v1/auth/me")


def _reset_token(client, db, user):
    from socialsphere.models import EmailMessage

    assert client.post("/api/v1/auth/password-reset/request", json={"email": user.email}).status_code == 202
    msg = db.session.scalars(select(EmailMessage).where(EmailMessage.template == "password_reset")
                             .order_by(EmailMessage.id.desc())).first()
    return re.search(r"token=([A-Za-z0-9_\-]+)", msg.body_text).group(1)


def _revoke(cause, client, db, user, admin_client, token, reset_token):
    """Revoke the user's sessions in one of the four ways that set sessions_revoked_at."""
    if cause == "logout_all":
        r = client.as_user(token).post("/api/v1/auth/logout-all")
        assert r.status_code == 204
    elif cause == "admin_revoke":
        assert admin_client.post(f"/api/v1/admin/users/{user.id}/revoke-sessions").status_code == 204
    elif cause == "password_reset":
        r = client.post("/api/v1/auth/password-reset/confirm", json={"token": reset_token, "password": NEW_PASSWORD})
        assert r.status_code == 200, r.get_json()
    elif cause == "suspension":
        r = admin_client.patch(f"/api/v1/admin/users/{user.id}", json={"status": "suspended"})
        assert r.status_code == 200
        # reactivated within the same second: the tokens of before the suspension stay dead
        assert admin_client.patch(f"/api/v1/admin/users/{user.id}", json={"status": "active"}).status_code == 200
    else:
        raise AssertionError(cause)


@pytest.mark.parametrize("cause", ["logout_all", "admin_revoke", "password_reset", "suspension"])
def test_revocation_holds_within_the_same_second(client, db, user, admin_client, clock, cause):
    """Issue 11 item 1: tokens issued earlier in the same second as the revocation are refused
    (iat was compared in whole seconds); tokens issued after it, same second, are accepted."""
    from socialsphere.security import issue_access_token

    reset_token = _reset_token(client, db, user) if cause == "password_reset" else None
    clock.set(0.1)
    from_login = _login(client, user)["access_token"]
    without_session, _ = issue_access_token(user.id, "user")  # as CLI/earlier releases issue them
    for token in (from_login, without_session):
        assert _me(client, token).status_code == 200
    clock.set(0.5)
    _revoke(cause, client, db, user, admin_client, from_login, reset_token)
    clock.set(0.6)
    for token in (from_login, without_session):
        r = _me(client, token)
        assert r.status_code == 401, (cause, r.get_json())
        assert error_of(r)["error"] == "token_revoked"
    clock.set(0.9)
    password = NEW_PASSWORD if cause == "password_reset" else None
    assert _me(client, _login(client, user, password)["access_token"]).status_code == 200
    after, _ = issue_access_token(user.id, "user")
    assert _me(client, after).status_code == 200
