from datetime import timedelta

import pytest
from conftest import create_user, error_of, outbox_token
from sqlalchemy import select

REG = {"email": "Bob@Example.com", "password": "a long enough pass", "name": "Bob"}


def login(client, email, password, **kw):
    return client.post("/api/v1/auth/login", json={"email": email, "password": password}, **kw)


def test_register_queues_verification_and_verify(client, db):
    r = client.post("/api/v1/auth/register", json=REG)
    assert r.status_code == 201, r.get_json()
    user = r.get_json()["user"]
    assert user["email"] == "bob@example.com"
    assert user["email_verified"] is False
    assert "password" not in str(r.get_json())
    token = outbox_token(db, "verify_email")
    r = client.post("/api/v1/auth/verify-email", json={"token": token})
    assert r.status_code == 200
    assert r.get_json()["user"]["email_verified"] is True
    # single use
    r = client.post("/api/v1/auth/verify-email", json={"token": token})
    assert r.status_code == 400
    assert error_of(r)["error"] == "invalid_token"


def test_verify_email_bad_token(client):
    r = client.post("/api/v1/auth/verify-email", json={"token": "nope"})
    assert r.status_code == 400


def test_verify_email_expired(client, db):
    from socialsphere.models import OneTimeToken
    from socialsphere.timeutil import utcnow

    client.post("/api/v1/auth/register", json=REG)
    token = outbox_token(db, "verify_email")
    row = db.session.scalars(select(OneTimeToken)).one()
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert client.post("/api/v1/auth/verify-email", json={"token": token}).status_code == 400


def test_register_duplicate_email(client, user):
    r = client.post("/api/v1/auth/register", json={**REG, "email": user.email.upper()})
    assert r.status_code == 409
    assert error_of(r)["error"] == "email_taken"


@pytest.mark.parametrize("body,field", [
    ({"email": "not-an-email", "password": "a long enough pass", "name": "x"}, "email"),
    ({"email": "a@b.co", "password": "short", "name": "x"}, "password"),
    ({"email": "a@b.co", "password": "aaaaaaaaaaaa", "name": "x"}, "password"),
    ({"email": "a@b.co", "password": "a long enough pass", "name": ""}, "name"),
    ({"email": "a@b.co", "password": "a long enough pass", "name": "x" * 101}, "name"),
    ({"email": "a@b.co", "password": "a long enough pass"}, "name"),
    ({"email": 5, "password": "a long enough pass", "name": "x"}, "email"),
    ({"email": "a@b.co", "password": "a long enough pass", "name": "x", "role": "admin"}, "role"),
    ({"email": "a@b.co", "password": ["x"], "name": "x"}, "password"),
])
def test_register_validation(client, body, field):
    r = client.post("/api/v1/auth/register", json=body)
    assert r.status_code == 422, r.get_json()
    err = error_of(r)
    assert err["error"] == "validation_error"
    assert field in err["fields"]


def test_register_malformed_json(client):
    r = client.post("/api/v1/auth/register", data="{not json", content_type="application/json")
    assert r.status_code == 400
    assert error_of(r)["error"] == "bad_request"


def test_register_body_not_object(client):
    r = client.post("/api/v1/auth/register", json=[1, 2])
    assert r.status_code == 400


def test_register_wrong_content_type(client):
    r = client.post("/api/v1/auth/register", data="email=a", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 415


def test_register_closed(client, db, admin_client):
    assert admin_client.put("/api/v1/admin/settings/registration_open", json={"value": False}).status_code == 200
    r = client.post("/api/v1/auth/register", json=REG)
    assert r.status_code == 403
    assert error_of(r)["error"] == "registration_closed"


def test_login_success_and_me(client, user):
    r = login(client, user.email, user.password)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["refresh_token"]
    cookie = r.headers.get("Set-Cookie")
    assert "ss_refresh=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/api/v1/auth" in cookie
    me = client.get("/api/v1/auth/me", headers={"Authorization": "Bearer " + body["access_token"]})
    assert me.status_code == 200
    data = me.get_json()
    assert data["user"]["id"] == user.id
    assert data["subscription"]["plan"]["code"] == "free"
    assert data["subscription"]["usage"] == {"posts": 0, "ai_generations": 0, "accounts": 0}
    assert data["subscription"]["limits"]["posts"] == 30


def test_secure_cookie_in_production(make_app, db, user):
    app = make_app(ENV_NAME="production", SECURE_COOKIES=True)
    r = login(app.test_client(), user.email, user.password)
    assert "Secure" in r.headers["Set-Cookie"]


def test_login_email_case_insensitive(client, user):
    assert login(client, user.email.upper(), user.password).status_code == 200


def test_login_wrong_password_and_unknown_user(client, user):
    r = login(client, user.email, "wrong password!")
    assert r.status_code == 401
    assert error_of(r)["error"] == "invalid_credentials"
    r2 = login(client, "nobody@example.com", "wrong password!")
    assert r2.status_code == 401
    assert r2.get_json() == r.get_json()  # no account enumeration


def test_login_validation(client):
    assert client.post("/api/v1/auth/login", json={"email": "x"}).status_code == 422
    assert client.post("/api/v1/auth/login", json={"email": 1, "password": 2}).status_code == 422


def test_suspended_cannot_login_or_use_token(client, db, user):
    from socialsphere.models import User

    db.session.get(User, user.id).status = "suspended"
    db.session.commit()
    r = login(client, user.email, user.password)
    assert r.status_code == 403
    r = client.as_user(user.token).get("/api/v1/auth/me")
    assert r.status_code == 403
    assert error_of(r)["error"] == "account_suspended"


def test_refresh_rotation_and_reuse_detection(client, user):
    first = login(client, user.email, user.password).get_json()["refresh_token"]
    r = client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert r.status_code == 200
    second = r.get_json()["refresh_token"]
    assert second != first
    # replaying the rotated token revokes the whole family
    r = client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert r.status_code == 401
    assert error_of(r)["error"] == "token_reused"
    r = client.post("/api/v1/auth/refresh", json={"refresh_token": second})
    assert r.status_code == 401
    assert error_of(r)["error"] == "token_revoked"


def test_refresh_reuse_does_not_touch_other_logins(client, user):
    a = login(client, user.email, user.password).get_json()["refresh_token"]
    b = login(client, user.email, user.password).get_json()["refresh_token"]
    client.post("/api/v1/auth/refresh", json={"refresh_token": a})
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": a}).status_code == 401
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": b}).status_code == 200


def test_refresh_with_cookie_needs_header(client, user):
    login(client, user.email, user.password)  # sets the cookie in the test client
    r = client.post("/api/v1/auth/refresh")
    assert r.status_code == 403
    assert error_of(r)["error"] == "csrf_check_failed"
    r = client.post("/api/v1/auth/refresh", headers={"X-Requested-With": "fetch"})
    assert r.status_code == 200


def test_refresh_missing_unknown_expired(client, db, user):
    fresh = client.application.test_client()
    r = fresh.post("/api/v1/auth/refresh", json={})
    assert r.status_code == 422
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": "x" * 43}).status_code == 401
    token = login(client, user.email, user.password).get_json()["refresh_token"]
    from socialsphere.models import RefreshToken
    from socialsphere.timeutil import utcnow

    for row in db.session.scalars(select(RefreshToken)):
        row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    r = client.post("/api/v1/auth/refresh", json={"refresh_token": token})
    assert r.status_code == 401
    assert error_of(r)["error"] == "token_expired"


def test_refresh_token_stored_hashed(client, db, user):
    token = login(client, user.email, user.password).get_json()["refresh_token"]
    from socialsphere.models import RefreshToken

    hashes = [r.token_hash for r in db.session.scalars(select(RefreshToken))]
    assert token not in hashes and len(hashes[0]) == 64


def test_logout_revokes_family(client, user):
    token = login(client, user.email, user.password).get_json()["refresh_token"]
    r = client.post("/api/v1/auth/logout", json={"refresh_token": token})
    assert r.status_code == 204
    assert "ss_refresh=;" in r.headers["Set-Cookie"]
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": token}).status_code == 401


def test_logout_without_token_is_204(client):
    assert client.post("/api/v1/auth/logout").status_code == 204


def test_logout_all(client, user):
    a = login(client, user.email, user.password).get_json()["refresh_token"]
    b = login(client, user.email, user.password).get_json()["refresh_token"]
    assert client.as_user(user.token).post("/api/v1/auth/logout-all").status_code == 204
    for token in (a, b):
        assert client.post("/api/v1/auth/refresh", json={"refresh_token": token}).status_code == 401
    assert client.post("/api/v1/auth/logout-all").status_code == 401


def test_password_reset_flow(client, db, user):
    r = client.post("/api/v1/auth/password-reset/request", json={"email": user.email})
    assert r.status_code == 202
    token = outbox_token(db, "password_reset")
    refresh = login(client, user.email, user.password).get_json()["refresh_token"]
    r = client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "password": "brand new password"})
    assert r.status_code == 200, r.get_json()
    assert login(client, user.email, user.password).status_code == 401
    assert login(client, user.email, "brand new password").status_code == 200
    # sessions were revoked, token is single use
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}).status_code == 401
    r = client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "password": "another new password"})
    assert r.status_code == 400


def test_password_reset_unknown_email_no_enumeration(client, db):
    from socialsphere.models import EmailMessage

    r = client.post("/api/v1/auth/password-reset/request", json={"email": "ghost@example.com"})
    assert r.status_code == 202
    assert db.session.scalars(select(EmailMessage)).all() == []


def test_password_reset_weak_password(client, db, user):
    client.post("/api/v1/auth/password-reset/request", json={"email": user.email})
    token = outbox_token(db, "password_reset")
    r = client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "password": "short"})
    assert r.status_code == 422
    r = client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "password": "good new password"})
    assert r.status_code == 200


def test_password_reset_validation(client):
    assert client.post("/api/v1/auth/password-reset/request", json={}).status_code == 422
    assert client.post("/api/v1/auth/password-reset/confirm", json={"token": "x"}).status_code == 422


def test_resend_verification(client, db):
    u = create_user(db, email="unverified@example.com", verified=False)
    r = client.as_user(u.token).post("/api/v1/auth/resend-verification")
    assert r.status_code == 202
    token = outbox_token(db, "verify_email")
    assert client.post("/api/v1/auth/verify-email", json={"token": token}).status_code == 200


def test_me_requires_auth(client):
    r = client.get("/api/v1/auth/me")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_logout_all_revokes_access_tokens_too(client, db, user, clock):
    from socialsphere.security import issue_access_token

    clock.set(0.2)
    token, _ = issue_access_token(user.id, "user")
    c = client.as_user(token)
    assert c.get("/api/v1/auth/me").status_code == 200
    clock.set(0.4)  # same second: iat and the revocation compare in microseconds
    assert c.post("/api/v1/auth/logout-all").status_code == 204
    r = c.get("/api/v1/auth/me")
    assert r.status_code == 401
    assert error_of(r)["error"] == "token_revoked"
    clock.set(0.6)
    fresh, _ = issue_access_token(user.id, "user")
    assert client.as_user(fresh).get("/api/v1/auth/me").status_code == 200


def test_me_announcement(client, admin_client, user):
    me = client.as_user(user.token)
    body = me.get("/api/v1/auth/me").get_json()
    assert "announcement" in body and body["announcement"] is None
    assert admin_client.put("/api/v1/admin/settings/announcement",
                            json={"value": "Maintenance on Sunday 02:00 UTC"}).status_code == 200
    assert me.get("/api/v1/auth/me").get_json()["announcement"] == "Maintenance on Sunday 02:00 UTC"
    assert admin_client.put("/api/v1/admin/settings/announcement", json={"value": ""}).status_code == 200
    assert me.get("/api/v1/auth/me").get_json()["announcement"] is None
