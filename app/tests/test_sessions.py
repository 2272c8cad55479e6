"""Session revocation of access tokens (issue 11, items 1 and 2).

Time is controlled with the ``clock`` fixture (conftest): every ``clock.set(x)`` with x < 1
is the same wall-clock second, so the tests need no sleeping.
"""

import pytest
from conftest import error_of, outbox_token
from sqlalchemy import select

NEW_PASSWORD = "a brand new password"


def _login(client, user, password=None):
    r = client.post("/api/v1/auth/login", json={"email": user.email, "password": password or user.password})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def _me(client, token):
    return client.as_user(token).get("/api/v1/auth/me")


def _reset_token(client, db, user):
    assert client.post("/api/v1/auth/password-reset/request", json={"email": user.email}).status_code == 202
    return outbox_token(db, "password_reset")


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


def test_logout_revokes_the_access_token_of_its_session(client, user):
    """Issue 11 item 2: /logout revoked only the refresh family; its access token kept working."""
    this = _login(client, user)
    other = _login(client, user)  # another device
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": this["refresh_token"]}).get_json()
    for body in (this, other, refreshed):
        assert _me(client, body["access_token"]).status_code == 200
    r = client.post("/api/v1/auth/logout", json={"refresh_token": refreshed["refresh_token"]})
    assert r.status_code == 204
    for body in (this, refreshed):  # every access token of the session, before and after rotation
        r = _me(client, body["access_token"])
        assert r.status_code == 401
        assert error_of(r)["error"] == "token_revoked"
    assert _me(client, other["access_token"]).status_code == 200


def test_refresh_reuse_revokes_the_access_tokens_of_the_family(client, user):
    """Issue 11 item 2: after reuse detection the thief's access token kept working."""
    victim = _login(client, user)
    other = _login(client, user)
    thief = client.post("/api/v1/auth/refresh", json={"refresh_token": victim["refresh_token"]}).get_json()
    assert _me(client, thief["access_token"]).status_code == 200
    r = client.post("/api/v1/auth/refresh", json={"refresh_token": victim["refresh_token"]})
    assert error_of(r)["error"] == "token_reused"
    for token in (victim["access_token"], thief["access_token"]):
        r = _me(client, token)
        assert r.status_code == 401
        assert error_of(r)["error"] == "token_revoked"
    assert _me(client, other["access_token"]).status_code == 200


def test_access_token_names_its_session(client, db, user):
    import jwt

    from socialsphere.models import RefreshToken

    body = _login(client, user)
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    family = db.session.scalar(select(RefreshToken.family_id))
    assert claims["sid"] == family


@pytest.mark.parametrize("sid", [123, "", "Z" * 32, "a" * 65, "ab\x00cd", ["a"]])
def test_malformed_session_claim_is_invalid_token(client, user, sid):
    """A sid that no login issues is a 401 invalid_token (never a 500), even when signed."""
    from socialsphere.security import issue_access_token

    token, _ = issue_access_token(user.id, "user", session_id=sid)
    r = _me(client, token)
    assert r.status_code == 401
    assert error_of(r) == {"error": "invalid_token", "message": "invalid token"}


def test_session_without_live_refresh_token_is_refused(client, db, user):
    """A well-formed sid of no stored session (e.g. its rows were deleted) is refused."""
    from socialsphere.security import issue_access_token

    token, _ = issue_access_token(user.id, "user", session_id="0" * 32)
    r = _me(client, token)
    assert r.status_code == 401
    assert error_of(r)["error"] == "token_revoked"


def test_token_inserted_into_a_revoked_family_is_dead(client, db, user):
    """The other order of a refresh racing a revocation: a token inserted into the family after
    the revoking UPDATE read it stays unrevoked; the session must stay dead anyway, for the
    access tokens and for that refresh token."""
    from socialsphere.models import RefreshToken
    from socialsphere.security import token_digest
    from socialsphere.timeutil import utcnow

    body = _login(client, user)
    row = db.session.scalar(select(RefreshToken))
    db.session.add(RefreshToken(user_id=user.id, family_id=row.family_id, token_hash=token_digest("late" * 11),
                                expires_at=row.expires_at))
    row.revoked_at = utcnow()
    db.session.commit()
    assert error_of(_me(client, body["access_token"]))["error"] == "token_revoked"
    r = client.post("/api/v1/auth/refresh", json={"refresh_token": "late" * 11})
    assert r.status_code == 401
    assert error_of(r)["error"] == "token_revoked"


def test_refresh_loses_to_a_revocation_committed_after_its_checks(client, db, user, monkeypatch):
    """The compare-and-set that rotates a refresh token requires revoked_at IS NULL: a logout
    landing between the refresh's checks and its UPDATE wins (the refresh gets a 401)."""
    from sqlalchemy import update

    from socialsphere import auth
    from socialsphere.extensions import db as _db
    from socialsphere.models import RefreshToken

    body = _login(client, user)
    real_get = _db.session.get

    def get_then_logout(model, ident, *args, **kwargs):
        found = real_get(model, ident, *args, **kwargs)
        if model is auth.User:  # refresh() loads the user right before its compare-and-set
            _db.session.execute(update(RefreshToken).values(revoked_at=auth.utcnow()))
        return found

    monkeypatch.setattr(_db.session, "get", get_then_logout)
    r = client.post("/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
    monkeypatch.undo()
    assert r.status_code == 401, r.get_json()
