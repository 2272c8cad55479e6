"""Login throttling (issue 11 item 4): the same answers for known and unknown accounts, per
client address and per account (email) limits with short windows, no long lockout.

Defaults: 5 attempts per account per 180 s, 20 failed attempts per client address per 600 s
(``SOCIALSPHERE_LOGIN_LIMIT_ACCOUNT`` / ``SOCIALSPHERE_LOGIN_LIMIT_IP``).  Time is controlled
with the ``clock`` fixture.
"""
import pytest
from conftest import create_user, outbox_token

LOGIN = "/api/v1/auth/login"
WRONG = "wrong password!"


def _login(client, email, password, ip="192.0.2.10", **kw):
    return client.post(LOGIN, json={"email": email, "password": password},
                       environ_base={"REMOTE_ADDR": ip}, **kw)


def _answer(r):
    return r.status_code, r.get_json(), r.headers.get("Retry-After")


def test_known_and_unknown_accounts_answer_alike(client, user, clock):
    """Before: an existing account answered 429 locked_out after 5 failures, an unknown email
    kept answering 401: an account enumeration oracle."""
    known, unknown = [], []
    for i in range(8):
        clock.set(i * 0.1)
        known.append(_answer(_login(client, user.email, WRONG, ip="192.0.2.1")))
        unknown.append(_answer(_login(client, "nobody@example.com", WRONG, ip="192.0.2.2")))
    assert known == unknown
    assert [status for status, _, _ in known] == [401] * 5 + [429] * 3
    assert known[0][1] == {"error": "invalid_credentials", "message": "invalid email or password"}
    assert known[5][1] == {"error": "rate_limited", "message": "too many failed logins; try again later"}
    assert known[5][2] == "180"


def test_unknown_email_costs_a_password_hash(client, user, monkeypatch):
    """Similar timing: an unknown email verifies the password against a dummy hash."""
    from argon2 import PasswordHasher

    calls = []
    real = PasswordHasher.verify
    monkeypatch.setattr(PasswordHasher, "verify", lambda self, h, p: calls.append(h) or real(self, h, p))
    _login(client, user.email, WRONG)
    _login(client, "nobody@example.com", WRONG)
    assert len(calls) == 2 and calls[0] != calls[1]


def test_account_limit_slows_but_never_locks_for_long(client, user, clock):
    """Before: lockouts doubled per failure up to 24 h (17 h after 15 extra failures), so anyone
    could lock any known account.  Now an attacker who keeps failing for half an hour delays the
    owner by at most one window (180 s) after the last failure, whatever the count."""
    t = 0.0
    for _ in range(10):  # 10 windows of 5 failures + 3 refused attempts each, ~30 min
        for i in range(8):
            _login(client, user.email, WRONG, ip=f"198.51.100.{i + 1}")
            t += 1
            clock.set(t)
        t += 175
        clock.set(t)
    last = t
    clock.set(last + 1)
    r = _login(client, user.email, WRONG, ip="203.0.113.1")
    assert r.status_code in (401, 429)
    if r.status_code == 429:
        assert int(r.headers["Retry-After"]) <= 180
    clock.set(last + 181)
    r = _login(client, user.email, user.password, ip="203.0.113.1")
    assert r.status_code == 200, r.get_json()


def test_correct_password_gets_in_after_the_window(client, user, clock):
    for i in range(5):
        clock.set(i)
        assert _login(client, user.email, WRONG).status_code == 401
    clock.set(10)
    r = _login(client, user.email, user.password)  # refused without checking the password
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "170"
    clock.set(180)
    assert _login(client, user.email, user.password).status_code == 200


def test_success_resets_the_account_count(client, user, clock):
    for i in range(4):
        clock.set(i * 0.1)
        assert _login(client, user.email, WRONG).status_code == 401
    assert _login(client, user.email, user.password).status_code == 200
    for _ in range(5):
        assert _login(client, user.email, WRONG).status_code == 401
    assert _login(client, user.email, WRONG).status_code == 429


def test_per_address_limit(client, db, user, clock):
    """20 failed attempts per client address and window, across emails; other addresses and
    the accounts themselves (from elsewhere) are not affected; successes do not count."""
    create_user(db, email="bob@example.com")
    for i in range(20):
        if i % 5 == 0:  # a successful login from the same address (a colleague behind the NAT)
            assert _login(client, "bob@example.com", "correct horse battery", ip="192.0.2.99").status_code == 200
        assert _login(client, f"guess{i}@example.com", WRONG, ip="192.0.2.99").status_code == 401
    r = _login(client, user.email, user.password, ip="192.0.2.99")
    assert _answer(r)[:2] == (429, {"error": "rate_limited", "message": "too many failed logins; try again later"})
    assert r.headers["Retry-After"] == "600"
    assert _login(client, user.email, user.password, ip="192.0.2.100").status_code == 200
    clock.set(600)
    assert _login(client, user.email, user.password, ip="192.0.2.99").status_code == 200


def test_client_address_from_trusted_proxy_only(make_app, db, user, clock):
    """The address is request.remote_addr as ProxyFix derives it: X-Forwarded-For counts only
    with SOCIALSPHERE_TRUSTED_PROXIES > 0 (then its last entry, appended by the edge)."""
    limits = {"LOGIN_LIMIT_IP": "2/600", "LOGIN_LIMIT_ACCOUNT": "0"}
    direct = make_app(**limits).test_client()
    for i in range(2):
        _login(direct, user.email, WRONG, headers={"X-Forwarded-For": f"198.51.100.{i}"})
    r = _login(direct, user.email, user.password, headers={"X-Forwarded-For": "198.51.100.7"})
    assert r.status_code == 429  # a header nobody trusts picks no other counter
    proxied = make_app(TRUSTED_PROXIES=1, **limits).test_client()
    for _ in range(2):
        _login(proxied, user.email, WRONG, headers={"X-Forwarded-For": "203.0.113.5"})
    r = _login(proxied, user.email, user.password, headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.5"})
    assert r.status_code == 429
    r = _login(proxied, user.email, user.password, headers={"X-Forwarded-For": "203.0.113.5, 198.51.100.7"})
    assert r.status_code == 200


def test_password_reset_and_reactivation_clear_the_account_count(client, db, user, admin_client, clock):
    for _ in range(6):
        _login(client, user.email, WRONG)
    detail = admin_client.get(f"/api/v1/admin/users/{user.id}").get_json()
    assert detail["locked"] is True and detail["failed_logins"] == 6
    assert client.post("/api/v1/auth/password-reset/request", json={"email": user.email}).status_code == 202
    token = outbox_token(db)
    r = client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "password": "the new password"})
    assert r.status_code == 200
    assert _login(client, user.email, "the new password").status_code == 200
    detail = admin_client.get(f"/api/v1/admin/users/{user.id}").get_json()
    assert detail["locked"] is False and detail["failed_logins"] == 0
    for _ in range(6):
        _login(client, user.email, WRONG)
    assert admin_client.patch(f"/api/v1/admin/users/{user.id}", json={"status": "suspended"}).status_code == 200
    assert admin_client.patch(f"/api/v1/admin/users/{user.id}", json={"status": "active"}).status_code == 200
    assert _login(client, user.email, "the new password").status_code == 200


def test_throttle_keys_are_not_the_email_or_address(client, db, user):
    from sqlalchemy import select

    from socialsphere.models import LoginThrottle

    _login(client, user.email, WRONG, ip="192.0.2.77")
    keys = db.session.scalars(select(LoginThrottle.key)).all()
    assert len(keys) == 2
    assert all(len(k) == 64 and "example" not in k and "192.0.2" not in k for k in keys)


def test_limits_can_be_disabled(make_app, db, user):
    client = make_app(LOGIN_LIMIT_IP="0", LOGIN_LIMIT_ACCOUNT="0").test_client()
    assert all(_login(client, user.email, WRONG).status_code == 401 for _ in range(25))
    assert _login(client, user.email, user.password).status_code == 200


@pytest.mark.parametrize("email", ["x" * 254, "a\u00e9@example.com", "@", " spaced@example.com "])
def test_odd_emails_are_401_not_500(client, email):
    assert _login(client, email, WRONG).status_code == 401


@pytest.mark.postgres_only
def test_concurrent_attempts_cannot_slip_past_the_account_limit(make_app, db, user):
    """8 simultaneous wrong passwords from 8 workers (threads, own apps and sessions): the
    attempts are counted before the password check, atomically, so exactly 5 are checked."""
    import threading

    apps = [make_app() for _ in range(8)]
    barrier = threading.Barrier(len(apps))
    statuses, errors = [], []

    def worker(i, app):
        try:
            client = app.test_client()
            barrier.wait()
            statuses.append(_login(client, user.email, WRONG, ip=f"198.51.100.{i + 1}").status_code)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i, app)) for i, app in enumerate(apps)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(statuses) == [401] * 5 + [429] * 3
