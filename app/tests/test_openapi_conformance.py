"""The served OpenAPI document against what the server does (issue 11 item 11).

Generic over the document, not per endpoint: every operation gets the same crafted requests
(no body, a body that is not JSON, an oversize body, malformed JSON, an unknown query
parameter, integral floats such as ``3614.0`` for integers, ids just outside the documented
range, no token, a suspended account's token, undocumented methods), and every answer must be
a status the document declares for that operation, with a body that matches the declared
schema. Where the document makes a promise (a required body, an integer's range, the policy
on unknown query parameters), the request that tests it must get the promised answer.
"""
from __future__ import annotations

import pytest
from conftest import create_owned_resources, create_user, error_of
from werkzeug.exceptions import NotFound

from socialsphere.models import User
from socialsphere.security import issue_access_token

METHODS = ("get", "post", "put", "patch", "delete")
UNKNOWN = "zz_unknown"
NO_LIMITS = {"RATE_LIMIT_REGISTER": "0", "RATE_LIMIT_PASSWORD_RESET": "0"}


# --- a JSON Schema (2020-12) check of the keywords the document uses ---------------------------

def _resolve(doc: dict, schema: dict) -> dict:
    while "$ref" in schema:
        assert schema["$ref"].startswith("#/components/schemas/"), schema["$ref"]
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _is(value, kind: str) -> bool:
    if kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return kind == "number" or float(value).is_integer()
    return isinstance(value, {"object": dict, "array": list, "string": str, "boolean": bool,
                              "null": type(None)}[kind])


def schema_errors(doc: dict, schema: dict, value, where: str = "$") -> list[str]:
    schema = _resolve(doc, schema)
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is(value, k) for k in kinds):
            return [f"{where}: {value!r} is not {kinds}"]
    errors = []
    if "enum" in schema and not any(value == e and type(value) is type(e) for e in schema["enum"]):
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: {value!r} != {schema['const']!r}")
    for sub in schema.get("allOf", []):
        errors += schema_errors(doc, sub, value, where)
    if "oneOf" in schema:
        matching = sum(not schema_errors(doc, sub, value, where) for sub in schema["oneOf"])
        if matching != 1:
            errors.append(f"{where}: {value!r} matches {matching} schemas of oneOf")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        errors += [f"{where}: {name} is required" for name in schema.get("required", []) if name not in value]
        for name, item in value.items():
            if name in properties:
                errors += schema_errors(doc, properties[name], item, f"{where}.{name}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{where}: {name} is not allowed")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += schema_errors(doc, schema["additionalProperties"], item, f"{where}.{name}")
    if isinstance(value, list):
        for index, item in enumerate(value):
            errors += schema_errors(doc, schema.get("items", {}), item, f"{where}[{index}]")
        if len(value) > schema.get("maxItems", len(value)):
            errors.append(f"{where}: more than {schema['maxItems']} items")
    if isinstance(value, str) and not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
        errors.append(f"{where}: length {len(value)} outside the documented range")
    if _is(value, "number") and not schema.get("minimum", value) <= value <= schema.get("maximum", value):
        errors.append(f"{where}: {value} outside {schema.get('minimum')}..{schema.get('maximum')}")
    return errors


def assert_documented(doc: dict, path: str, method: str, response) -> None:
    """``response`` is declared for the operation, with the declared media type, body schema and headers."""
    op = doc["paths"][path][method]
    what = f"{method.upper()} {path} -> {response.status_code} {response.get_data(as_text=True)[:300]!r}"
    declared = op["responses"].get(str(response.status_code))
    assert declared is not None, f"{what}: not declared (declared: {sorted(op['responses'])})"
    content = declared.get("content")
    if not content:
        assert response.data == b"", f"{what}: a body where the document declares none"
    else:
        assert response.mimetype in content, f"{what}: {response.mimetype} not in {sorted(content)}"
        if response.mimetype == "application/json":
            errors = schema_errors(doc, content["application/json"]["schema"], response.get_json())
            assert not errors, f"{what}: {errors}"
    for header in declared.get("headers", {}):
        assert header in response.headers, f"{what}: no {header} header"


# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture
def app(make_app):
    """Rate limits off: every operation gets many requests here (test_429... turns them on)."""
    return make_app(**NO_LIMITS)


@pytest.fixture
def doc(client) -> dict:
    return client.get("/api/v1/openapi.json").get_json()


@pytest.fixture
def ids(db, admin, user) -> dict[str, int]:
    """An existing resource for each integer path parameter (the admin's own where owned;
    the user is another account, so that acting on it leaves the admin's token valid)."""
    post, account, plan = create_owned_resources(db, admin.id)
    return {"post_id": post.id, "account_id": account.id, "plan_id": plan.id, "user_id": user.id}


class Caller:
    """Requests as the admin, with a new token each time (POST /auth/logout-all revokes the
    admin's earlier tokens), or as whoever ``token`` names."""

    def __init__(self, app, client, admin) -> None:
        self.app, self.client, self.admin = app, client, admin

    def token(self) -> str:
        with self.app.app_context():
            return issue_access_token(self.admin.id, "admin")[0]

    def __call__(self, method: str, path: str, token: str | None | bool = True, **kwargs):
        if token is True:
            token = self.token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.open(path, method=method.upper(), headers=headers, **kwargs)


@pytest.fixture
def call(app, client, admin) -> Caller:
    return Caller(app, client, admin)


def operations(doc: dict):
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield path, method, op


def concrete(path: str, op: dict, ids: dict[str, int], **values) -> str:
    for param in op.get("parameters", []):
        if param["in"] == "path":
            value = values.get(param["name"], ids.get(param["name"], "announcement"))
            path = path.replace("{" + param["name"] + "}", str(value))
    return path


def body_schema(op: dict) -> dict:
    return op["requestBody"]["content"]["application/json"]["schema"]


def integer_properties(doc: dict, op: dict):
    """(name, schema, wrap) of each integer body field; wrap builds the field's value from an int."""
    for name, schema in body_schema(op)["properties"].items():
        schema = _resolve(doc, schema)
        if "integer" in (schema.get("type") or ()):
            yield name, schema, lambda v: v
        elif schema.get("type") == "array" and "integer" in (schema["items"].get("type") or ()):
            yield name, schema["items"], lambda v: [v]


# --- the tests -------------------------------------------------------------------------------------

def test_crafted_bad_requests_get_documented_answers(app, doc, call, ids):
    """Each crafted request to each operation (as an admin, so authentication passes) gets a
    declared status with a body of the declared schema; body operations refuse each defect
    with its own documented status."""
    limit = app.config["MAX_CONTENT_LENGTH"]
    oversize = b"{" + b" " * limit + b"}"  # valid JSON, one byte over the limit
    checked = 0
    for path, method, op in operations(doc):
        url = concrete(path, op, ids)
        crafted = {
            "no body": call(method, url),
            "not JSON": call(method, url, data="body=x", content_type="text/plain"),
            "oversize": call(method, url, data=oversize, content_type="application/json"),
            "malformed JSON": call(method, url, data="{", content_type="application/json"),
            "an array": call(method, url, json=[]),
            "unknown query parameter": call(method, f"{url}?{UNKNOWN}=1", json={}),
        }
        for kind, r in crafted.items():
            assert r.status_code < 500, (kind, method, path, r.status_code)
            assert_documented(doc, path, method, r)
            checked += 1
        if "requestBody" not in op:
            continue
        assert {"400", "413", "415", "422"} <= set(op["responses"]), (method, path, sorted(op["responses"]))
        assert crafted["oversize"].status_code == 413, (method, path)
        assert error_of(crafted["oversize"])["error"] == "payload_too_large"
        assert crafted["not JSON"].status_code == 415, (method, path)
        assert error_of(crafted["not JSON"])["error"] == "unsupported_media_type"
        assert crafted["malformed JSON"].status_code == 400, (method, path)
        assert crafted["an array"].status_code == 400, (method, path)
        # a PATCH (or any operation) with no body: refused where the body is required, read as {} where not
        if op["requestBody"]["required"]:
            assert crafted["no body"].status_code == 400, (method, path, crafted["no body"].get_json())
            assert error_of(crafted["no body"])["error"] == "bad_request"
        else:
            assert crafted["no body"].status_code not in (400, 413, 415), (method, path)
    assert checked >= 6 * 30


def test_patch_without_body_is_refused(doc, call, ids):
    """Decision: a PATCH needs a body. The document says so (requestBody.required) and a PATCH
    without one is a 400 bad_request (was a 200 that changed nothing); ``{}`` still is a valid,
    empty change."""
    patches = [(path, op) for path, method, op in operations(doc) if method == "patch"]
    assert len(patches) >= 3
    for path, op in patches:
        assert op["requestBody"]["required"] is True, path
        r = call("patch", concrete(path, op, ids))
        assert r.status_code == 400 and error_of(r)["error"] == "bad_request", (path, r.status_code)
        assert_documented(doc, path, "patch", r)
        r = call("patch", concrete(path, op, ids), json={})
        assert r.status_code == 200, (path, r.get_json())
        assert_documented(doc, path, "patch", r)


def test_unknown_query_parameters_are_ignored(doc, call, ids):
    """Decision (docs/api-contract.md): a query parameter an operation does not list is ignored,
    on every operation; GETs answer the same with and without one (was a 422 on the three
    operations that validate their query, and ignored on all others)."""
    assert "not list are ignored" in doc["info"]["description"]
    for path, method, op in operations(doc):
        url = concrete(path, op, ids)
        if method == "get":
            plain, extra = call("get", url), call("get", f"{url}?{UNKNOWN}=1&{UNKNOWN}=2")
            assert extra.status_code == plain.status_code, (path, extra.get_json())
            if path not in ("/metrics",):  # counters move between the two requests
                assert extra.get_json() == plain.get_json(), path
        elif "requestBody" in op:  # refused before any change: the same answer twice
            plain, extra = call(method, url, json={"?": 1}), call(method, f"{url}?{UNKNOWN}=1", json={"?": 1})
            assert (extra.status_code, extra.get_json()) == (plain.status_code, plain.get_json()), (method, path)


def test_query_validation_documented(doc, call):
    """Operations that validate their query declare 422, and a bad value of each listed
    parameter is that 422, naming the parameter."""
    checked = 0
    for path, method, op in operations(doc):
        query = [p for p in op.get("parameters", []) if p["in"] == "query"]
        if not query:
            continue
        assert "422" in op["responses"], (method, path)
        for param in query:
            schema = param["schema"]
            bad = ("x" if "integer" in schema["type"] else
                   "not-one-of-them" if "enum" in schema else "x" * (schema["maxLength"] + 1))
            r = call(method, f"{path}?{param['name']}={bad}")
            assert r.status_code == 422, (path, param["name"], r.status_code)
            assert param["name"] in error_of(r)["fields"]
            assert_documented(doc, path, method, r)
            if "integer" in schema["type"]:
                r = call(method, f"{path}?{param['name']}={schema['maximum'] + 1}")
                assert r.status_code == 422 and param["name"] in error_of(r)["fields"], (path, param)
            checked += 1
    assert checked >= 10


def test_integer_path_parameters_bounded_as_the_server(app, doc, call, ids):
    """Every integer path parameter documents minimum 1 and the maximum of the router's int
    converter; max + 1 and 0 are the documented 404, the maximum itself reaches the view."""
    converter = app.url_map.converters["int"](app.url_map)
    router_404 = NotFound.description
    checked = 0
    for path, method, op in operations(doc):
        for param in op.get("parameters", []):
            if param["in"] != "path" or param["schema"]["type"] != "integer":
                continue
            assert (param["schema"]["minimum"], param["schema"]["maximum"]) == (1, converter.max), (path, param)
            assert "404" in op["responses"], (method, path)
            top = param["schema"]["maximum"]
            for outside in (top + 1, 0, 10**40):
                r = call(method, concrete(path, op, ids, **{param["name"]: outside}))
                assert r.status_code == 404, (method, path, outside, r.status_code)
                assert_documented(doc, path, method, r)
            r = call(method, concrete(path, op, ids, **{param["name"]: top}))
            assert r.status_code < 500 and (r.get_json() or {}).get("message") != router_404, (method, path)
            assert_documented(doc, path, method, r)
            checked += 1
    assert checked >= 12


def test_integral_numbers_accepted_for_integer_fields(doc, call, ids):
    """JSON Schema's integer includes 3614.0: every integer body field (and integer array item)
    accepts a float with no fractional part in its documented range, and refuses 3614.5."""
    checked = 0
    for path, method, op in operations(doc):
        if "requestBody" not in op:
            continue
        url = concrete(path, op, ids)
        for name, schema, wrap in integer_properties(doc, op):
            value = min(max(3614, schema["minimum"]), schema["maximum"])
            r = call(method, url, json={name: wrap(float(value))})
            assert_documented(doc, path, method, r)
            fields = (r.get_json() or {}).get("fields", {}) if r.status_code == 422 else {}
            assert name not in fields, (method, path, name, fields)
            r = call(method, url, json={name: wrap(value + 0.5)})
            assert r.status_code == 422 and "integer" in error_of(r)["fields"][name], (method, path, name)
            checked += 1
    assert checked >= 6


def test_integral_numbers_stored_as_integers(call, ids):
    r = call("post", "/api/v1/admin/plans", json={"code": "pro-3614", "name": "Pro", "price_cents": 3614.0,
                                                  "posts_per_month": 1e3})
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["price_cents"] == 3614 and type(r.get_json()["price_cents"]) is int
    assert r.get_data(as_text=True).count("3614.0") == 0 and r.get_json()["posts_per_month"] == 1000
    r = call("put", f"/api/v1/admin/users/{ids['user_id']}/subscription", json={"plan_id": float(ids["plan_id"])})
    assert r.status_code == 200, r.get_json()
    r = call("put", "/api/v1/admin/settings/ai_max_hashtags", json={"value": 7.0})
    assert r.status_code == 200 and type(r.get_json()["value"]) is int and r.get_json()["value"] == 7
    r = call("put", "/api/v1/admin/settings/ai_max_hashtags", json={"value": 7.5})
    assert r.status_code == 422


def test_secured_operations_declare_401_and_403(db, doc, call, ids, user):
    """No token: 401 (Unauthorized schema); a suspended account's token: 403; a user's token on
    an admin operation: 403. Each is declared for every secured operation."""
    suspended = create_user(db, email="suspended@example.com")
    db.session.get(User, suspended.id).status = "suspended"
    db.session.commit()
    checked = 0
    for path, method, op in operations(doc):
        if "security" not in op:
            continue
        url = concrete(path, op, ids)
        r = call(method, url, token=None, json={})
        assert r.status_code == 401, (method, path)
        assert_documented(doc, path, method, r)
        r = call(method, url, token=suspended.token, json={})
        assert r.status_code == 403 and error_of(r)["error"] == "account_suspended", (method, path)
        assert_documented(doc, path, method, r)
        if path.startswith("/api/v1/admin/"):
            r = call(method, url, token=user.token, json={})
            assert r.status_code == 403 and error_of(r)["error"] == "forbidden", (method, path)
            assert_documented(doc, path, method, r)
        checked += 1
    assert checked >= 25


def test_undocumented_methods_are_405_as_documented(doc, call, ids):
    """A method a path does not list is a 405 (components/responses/MethodNotAllowed) whose
    Allow header names exactly the path's documented methods (+ HEAD with GET, OPTIONS)."""
    declared = doc["components"]["responses"]["MethodNotAllowed"]
    assert "Allow" in declared["headers"]
    checked = 0
    for path, ops in doc["paths"].items():
        url = concrete(path, next(iter(ops.values())), ids)
        allowed = {m.upper() for m in ops} | {"OPTIONS"} | ({"HEAD"} if "get" in ops else set())
        for method in set(METHODS) - set(ops):
            r = call(method, url, json={})
            assert r.status_code == 405, (method, path, r.status_code)
            assert {m.strip() for m in r.headers["Allow"].split(",")} == allowed, (method, path)
            assert error_of(r)["error"] == "method_not_allowed"
            assert not schema_errors(doc, declared["content"]["application/json"]["schema"], r.get_json())
            checked += 1
    assert checked >= 80


def test_429_declared_where_rate_limited(make_app, doc):
    """With every limit at 1 request per hour, each operation is called twice without a token:
    every 429 is declared with its Retry-After header; the login throttle too."""
    app = make_app(RATE_LIMIT_REGISTER="1/3600", RATE_LIMIT_PASSWORD_RESET="1/3600",
                   LOGIN_LIMIT_ACCOUNT="1/3600", LOGIN_LIMIT_IP="1/3600")
    client = app.test_client()
    limited = set()
    for path, method, op in operations(doc):
        url = concrete(path, op, {})
        for body in [{"email": "nobody@example.com", "password": "wrong password"}] * 2 + [{}]:
            r = client.open(url, method=method.upper(), json=body if "requestBody" in op else None)
            assert_documented(doc, path, method, r)
            if r.status_code == 429:
                limited.add((method, path))
                assert "Retry-After" in op["responses"]["429"]["headers"], (method, path)
                assert int(r.headers["Retry-After"]) >= 1
    assert {("post", "/api/v1/auth/register"), ("post", "/api/v1/auth/password-reset/request"),
            ("post", "/api/v1/auth/login")} <= limited


def test_refresh_cookie_without_fetch_header_documented(doc, client):
    """Found by test_openapi_fuzz.py once the document named the refresh cookie: the cookie
    without ``X-Requested-With: fetch`` is the CSRF check's 403 csrf_check_failed, which the
    document did not declare (nor the cookie and the header the operation reads)."""
    op = doc["paths"]["/api/v1/auth/refresh"]["post"]
    assert {("cookie", "ss_refresh"), ("header", "X-Requested-With")} <= {
        (p["in"], p["name"]) for p in op.get("parameters", [])}
    client.set_cookie("ss_refresh", "not-a-refresh-token", path="/api/v1/auth")
    r = client.post("/api/v1/auth/refresh")
    assert r.status_code == 403 and error_of(r)["error"] == "csrf_check_failed"
    assert_documented(doc, "/api/v1/auth/refresh", "post", r)
    r = client.post("/api/v1/auth/refresh", headers={"X-Requested-With": "fetch"})
    assert r.status_code == 401 and error_of(r)["error"] == "invalid_token"
    assert_documented(doc, "/api/v1/auth/refresh", "post", r)
