"""Per-IP rate limits of register / password-reset request, and the /metrics allow-list."""
import pytest
from conftest import error_of

from socialsphere import ConfigError
from socialsphere.ratelimit import MAX_KEYS, OVERFLOW_KEY, FixedWindowLimiter, Limit, client_key, parse_limit

REGISTER = "/api/v1/auth/register"
RESET = "/api/v1/auth/password-reset/request"


def _signup(client, n, **kwargs):
    return client.post(REGISTER, json={"email": f"user{n}@example.com", "password": "correct horse battery",
                                       "name": f"User {n}"}, **kwargs)


def test_parse_limit():
    assert parse_limit("10/3600", "X") == Limit(10, 3600)
    assert parse_limit(" 3/60 ", "X") == Limit(3, 60)
    assert parse_limit("0", "X").count == 0
    assert parse_limit("off", "X").count == 0
    for bad in ["10", "x/60", "10/0", "-1/60", "10/-5", "10/60/2", ""]:
        with pytest.raises(ValueError, match="X"):
            parse_limit(bad, "X")


def test_fixed_window_counts_and_resets():
    now = [1000.0]
    limiter = FixedWindowLimiter(Limit(2, 60), clock=lambda: now[0])  # window 960..1020
    assert limiter.hit("a") == 0
    assert limiter.hit("a") == 0
    assert limiter.hit("a") == 20  # seconds until the window ends
    assert limiter.hit("b") == 0  # other clients are not affected
    now[0] = 1019.5
    assert limiter.hit("a") == 1
    now[0] = 1020.0  # next window: counters start again
    assert limiter.hit("a") == 0
    assert limiter._counts == {"a": 1}  # the previous window's table was dropped


def test_disabled_limit_never_refuses():
    limiter = FixedWindowLimiter(Limit(0, 1))
    assert all(limiter.hit("a") == 0 for _ in range(50))


def test_tracked_addresses_are_bounded(monkeypatch):
    monkeypatch.setattr("socialsphere.ratelimit.MAX_KEYS", 3)
    limiter = FixedWindowLimiter(Limit(2, 3600), clock=lambda: 10.0)
    for key in ("a", "b", "c"):
        limiter.hit(key)
    assert limiter.hit("d") == 0 and limiter.hit("e") == 0  # share the overflow counter
    assert limiter.hit("f") > 0
    assert set(limiter._counts) == {"a", "b", "c", OVERFLOW_KEY}
    assert MAX_KEYS >= 10_000


def test_client_key():
    assert client_key("203.0.113.7") == "203.0.113.7"
    assert client_key("2001:db8:1:2:3:4:5:6") == client_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert client_key(None) == "unknown"


def test_register_rate_limited_per_ip(make_app, db):
    app = make_app(RATE_LIMIT_REGISTER="2/3600")
    client = app.test_client()
    assert _signup(client, 1).status_code == 201
    assert _signup(client, 2).status_code == 201
    r = _signup(client, 3)
    assert r.status_code == 429
    assert error_of(r)["error"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 3600
    assert r.headers["Content-Type"].startswith("application/json")
    # another address is counted separately
    assert _signup(client, 4, environ_base={"REMOTE_ADDR": "198.51.100.9"}).status_code == 201
    # the password reset limit is a different counter
    assert client.post(RESET, json={"email": "user1@example.com"}).status_code == 202


def test_invalid_requests_count_too(make_app, db):
    client = make_app(RATE_LIMIT_REGISTER="1/3600").test_client()
    assert client.post(REGISTER, json={}).status_code == 422
    assert client.post(REGISTER, json={}).status_code == 429


def test_register_limit_window_expires(make_app, db):
    app = make_app(RATE_LIMIT_REGISTER="1/60")
    client = app.test_client()
    assert _signup(client, 1).status_code == 201
    limiter = app.extensions["socialsphere_rate_limits"]["register"]
    limiter.clock = lambda: (limiter._window * 60) + 30.0  # same window, 30 s before its end
    r = _signup(client, 2)
    assert r.status_code == 429 and r.headers["Retry-After"] == "30"
    window = limiter._window
    limiter.clock = lambda: (window + 1) * 60 + 1.0  # next window
    assert _signup(client, 2).status_code == 201


def test_password_reset_rate_limited(make_app, db, user):
    from socialsphere.models import EmailMessage

    client = make_app(RATE_LIMIT_PASSWORD_RESET="2/3600").test_client()
    for _ in range(2):
        assert client.post(RESET, json={"email": user.email}).status_code == 202
    r = client.post(RESET, json={"email": user.email})
    assert r.status_code == 429 and error_of(r)["error"] == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1
    db.session.remove()
    assert db.session.query(EmailMessage).count() == 2  # the refused request queued nothing


def test_forwarded_for_ignored_without_trusted_proxies(make_app, db):
    client = make_app(RATE_LIMIT_PASSWORD_RESET="1/3600").test_client()
    assert client.post(RESET, json={"email": "a@example.com"},
                       headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 202
    # a client cannot pick another bucket by sending a header nobody trusts
    assert client.post(RESET, json={"email": "a@example.com"},
                       headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 429


def test_forwarded_for_used_with_trusted_proxies(make_app, db):
    client = make_app(RATE_LIMIT_PASSWORD_RESET="1/3600", TRUSTED_PROXIES=1).test_client()
    for ip in ("198.51.100.1", "198.51.100.2"):
        assert client.post(RESET, json={"email": "a@example.com"},
                           headers={"X-Forwarded-For": ip}).status_code == 202
    r = client.post(RESET, json={"email": "a@example.com"},
                    headers={"X-Forwarded-For": "203.0.113.50, 198.51.100.1"})  # last hop is the client
    assert r.status_code == 429


def test_limit_disabled(make_app, db):
    client = make_app(RATE_LIMIT_PASSWORD_RESET="0").test_client()
    assert all(client.post(RESET, json={"email": "a@example.com"}).status_code == 202 for _ in range(12))


def test_default_limits(app):
    assert app.config["RATE_LIMIT_REGISTER"] == Limit(20, 3600)
    assert app.config["RATE_LIMIT_PASSWORD_RESET"] == Limit(10, 3600)
    assert app.config["LOGIN_LIMIT_ACCOUNT"] == Limit(5, 180)
    assert app.config["LOGIN_LIMIT_IP"] == Limit(20, 600)


@pytest.mark.parametrize("name,value", [
    ("SOCIALSPHERE_RATE_LIMIT_REGISTER", "lots"),
    ("SOCIALSPHERE_RATE_LIMIT_PASSWORD_RESET", "5/0"),
    ("SOCIALSPHERE_LOGIN_LIMIT_ACCOUNT", "five"),
    ("SOCIALSPHERE_LOGIN_LIMIT_IP", "20/0"),
    ("SOCIALSPHERE_METRICS_ALLOW", "10.0.0.0/8,not-a-network"),
])
def test_invalid_settings_named(monkeypatch, tmp_path, name, value):
    from socialsphere import create_app

    monkeypatch.setenv("SOCIALSPHERE_ENV", "development")
    monkeypatch.setenv("SOCIALSPHERE_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        create_app()


def test_settings_from_environment(monkeypatch, tmp_path):
    from socialsphere import create_app

    monkeypatch.setenv("SOCIALSPHERE_ENV", "development")
    monkeypatch.setenv("SOCIALSPHERE_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("SOCIALSPHERE_RATE_LIMIT_REGISTER", "7/600")
    monkeypatch.setenv("SOCIALSPHERE_METRICS_ALLOW", "192.0.2.0/24, 2001:db8::/32")
    app = create_app()
    assert app.config["RATE_LIMIT_REGISTER"] == Limit(7, 600)
    assert [str(n) for n in app.config["METRICS_ALLOW_NETWORKS"]] == ["192.0.2.0/24", "2001:db8::/32"]


# ---- /metrics allow-list ------------------------------------------------------------------


def test_metrics_open_in_testing_by_default(client):
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 200


@pytest.mark.parametrize("addr,status", [
    ("127.0.0.1", 200), ("::1", 200), ("10.1.2.3", 200), ("172.20.0.5", 200), ("192.168.1.1", 200),
    ("fd00::5", 200), ("::ffff:10.0.0.1", 200),
    ("203.0.113.9", 404), ("8.8.8.8", 404), ("2001:db8::1", 404), ("172.32.0.1", 404),
])
def test_metrics_production_default_private_only(make_app, db, addr, status):
    app = make_app(ENV_NAME="production")
    r = app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": addr})
    assert r.status_code == status, addr
    if status == 404:
        assert error_of(r)["error"] == "not_found"
        assert b"socialsphere_" not in r.data


def test_metrics_allow_list(make_app, db):
    client = make_app(METRICS_ALLOW="192.0.2.0/24").test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.77"}).status_code == 200
    assert client.get("/metrics").status_code == 404  # 127.0.0.1 is not in the list
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.3.1"}).status_code == 404


def test_metrics_client_ip_behind_trusted_proxy(make_app, db):
    client = make_app(ENV_NAME="production", TRUSTED_PROXIES=1).test_client()
    # the proxy (127.0.0.1) forwards a public client: refused
    assert client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 404
    assert client.get("/metrics", headers={"X-Forwarded-For": "10.9.8.7"}).status_code == 200
