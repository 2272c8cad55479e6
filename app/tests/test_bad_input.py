"""Never a 500 for bad input: every documented operation gets hostile bodies and params."""
import pytest
from conftest import error_of

BAD_BODIES = [
    ("data", "{not json"), ("data", "[" * 50000), ("data", '{"a":' * 20000), ("data", "null"),
    ("data", '"string"'), ("data", "1e99999"), ("data", b"\xff\xfe\x00"),
    ("json", []), ("json", {"x": 1}), ("json", {"body": {"nested": True}}),
    ("json", {k: v for k, v in [("email", "\ud800"), ("password", "\ud800" * 3), ("name", "\ud800")]}),
    ("json", {"title": 1, "body": [], "status": {}, "platforms": [None], "scheduled_at": "9999-99-99",
              "topic": 12, "tone": None, "platform": True, "account_ids": [1.5, -1, "a"], "value": float("nan"),
              "plan_id": 10**40, "role": [], "code": "\x00", "name": "n" * 10000, "price_cents": 1e308,
              "token": "t" * 10000, "refresh_token": 5, "email": "a@" + "b" * 300 + ".com"}),
]
BAD_QUERIES = ["page=-1", "page=1e9", "per_page=0", "page=%ff", "q=%00", "q=" + "x" * 5000,
               "actor_id=99999999999999999999", "status[]=x", "role=%ff"]


def _operations(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield path.replace("{post_id}", "1").replace("{user_id}", "1").replace("{plan_id}", "1") \
                      .replace("{account_id}", "1").replace("{key}", "announcement"), method, op


@pytest.mark.parametrize("kind,payload", BAD_BODIES)
def test_hostile_bodies_never_500(admin_client, kind, payload):
    for path, method, op in _operations(admin_client):
        if "requestBody" not in op:
            continue
        if kind == "data":
            r = admin_client.open(path, method=method.upper(), data=payload, content_type="application/json")
        else:
            r = admin_client.open(path, method=method.upper(), json=payload)
        assert r.status_code < 500 or r.status_code in (502, 503), (method, path, r.status_code, r.get_json())
        assert r.is_json or r.status_code == 204


def test_hostile_queries_never_500(admin_client):
    for path, method, _op in _operations(admin_client):
        if method != "get":
            continue
        for q in BAD_QUERIES:
            r = admin_client.get(f"{path}?{q}")
            assert r.status_code < 500, (path, q, r.status_code)


def test_wrong_methods_and_content_types(admin_client):
    r = admin_client.post("/api/v1/posts", data="body=x", content_type="text/plain")
    assert r.status_code == 415
    r = admin_client.post("/api/v1/posts", data="body=x", content_type="multipart/form-data; boundary=x")
    assert r.status_code == 415
    assert admin_client.delete("/api/v1/posts").status_code == 405


# --- issue 11: findings of the outside attack/fuzz review ----------------------------------

EXTREME_DATES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-23:59"]


@pytest.mark.parametrize("when", EXTREME_DATES)
def test_scheduled_at_beyond_datetime_range_is_422(auth_client, when):
    """Offsets that push a date outside datetime's years 1..9999 once in UTC (was OverflowError, 500)."""
    pid = auth_client.post("/api/v1/posts", json={"body": "x"}).get_json()["id"]
    for method, path, body in [
        ("POST", "/api/v1/posts", {"body": "x", "status": "scheduled", "scheduled_at": when}),
        ("PATCH", f"/api/v1/posts/{pid}", {"scheduled_at": when}),
        ("POST", f"/api/v1/social/posts/{pid}/schedule", {"account_ids": [1], "scheduled_at": when}),
    ]:
        r = auth_client.open(path, method=method, json=body)
        assert r.status_code == 422, (method, path, r.status_code, r.get_json())
        err = error_of(r)
        assert err["error"] == "validation_error" and "scheduled_at" in err["fields"], err


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/v1/posts/0"), ("PATCH", "/api/v1/posts/0"), ("DELETE", "/api/v1/posts/0"),
    ("DELETE", "/api/v1/posts/9223372036854775808"), ("DELETE", "/api/v1/admin/plans/0"),
    ("PATCH", "/api/v1/admin/plans/0"), ("PATCH", "/api/v1/admin/users/0"),
    ("POST", "/api/v1/social/posts/0/schedule"), ("DELETE", "/api/v1/social/accounts/0"),
])
def test_out_of_range_ids_are_404_for_every_method(admin_client, method, path):
    r = admin_client.open(path, method=method, json={})
    assert r.status_code == 404, (r.status_code, r.headers.get("Allow"))
    assert error_of(r)["error"] == "not_found"
    assert "Allow" not in r.headers


@pytest.mark.parametrize("key", ["announcement", "default_plan"])
@pytest.mark.parametrize("value", ["a\x00b", "a\ud800b"])
def test_string_settings_reject_nul_and_lone_surrogates(admin_client, key, value):
    r = admin_client.put(f"/api/v1/admin/settings/{key}", json={"value": value})
    assert r.status_code == 422, r.get_json()
    assert "value" in error_of(r)["fields"]


def _chunked_post(client, path, payload: bytes):
    # Transfer-Encoding: chunked -> no Content-Length for the app; the WSGI server (Gunicorn,
    # werkzeug's) de-chunks and sets wsgi.input_terminated, as here
    return client.post(path, data=payload, content_type="application/json",
                       headers={"Transfer-Encoding": "chunked"},
                       environ_overrides={"wsgi.input_terminated": True})


def test_chunked_body_over_the_limit_is_413(app, client):
    """A body over MAX_CONTENT_LENGTH is refused with or without Content-Length (was truncated to
    the limit when chunked, so whitespace-padded valid JSON went through)."""
    limit = app.config["MAX_CONTENT_LENGTH"]
    payload = b'{"email": "a@example.com", "password": "wrong password!"}'
    padded = payload + b" " * (2 * 1024 * 1024 - len(payload))
    r = client.post("/api/v1/auth/login", data=padded, content_type="application/json")
    assert r.status_code == 413
    r = _chunked_post(client, "/api/v1/auth/login", padded)
    assert r.status_code == 413, r.get_json()
    err = error_of(r)
    assert err["error"] == "payload_too_large" and str(limit) in err["message"]
    r = _chunked_post(client, "/api/v1/auth/login", payload + b" " * (limit + 1 - len(payload)))
    assert r.status_code == 413
    # up to the limit, chunked bodies are read whole
    r = _chunked_post(client, "/api/v1/auth/login", payload + b" " * (limit - len(payload)))
    assert r.status_code == 401 and error_of(r)["error"] == "invalid_credentials"
