from socialsphere.openapi import is_api_rule, openapi_path


def test_openapi_served(client):
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    doc = r.get_json()
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_every_api_route_documented_and_vice_versa(app, client):
    doc = client.get("/api/v1/openapi.json").get_json()
    routes = set()
    for rule in app.url_map.iter_rules():
        if not is_api_rule(rule.rule):
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((openapi_path(rule.rule), method.lower()))
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert routes - documented == set(), "routes missing from the OpenAPI document"
    assert documented - routes == set(), "OpenAPI document lists routes that do not exist"
    assert len(routes) >= 30


def test_operations_complete(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    op_ids = []
    schemas = doc["components"]["schemas"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["summary"], (path, method)
            assert op["responses"], (path, method)
            op_ids.append(op["operationId"])
            for param in op.get("parameters", []):
                if param["in"] == "path":
                    assert "{" + param["name"] + "}" in path
            for resp in op["responses"].values():
                ref = resp.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
                if ref:
                    assert ref.split("/")[-1] in schemas, ref
    assert len(op_ids) == len(set(op_ids))


def test_contract_paths_present(client):
    """The human contract (docs/api-contract.md) and the document agree on key routes."""
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    for path, method in [("/api/v1/auth/login", "post"), ("/api/v1/posts", "get"), ("/api/v1/posts", "post"),
                         ("/api/v1/posts/{post_id}", "patch"), ("/api/v1/ai/generate", "post"),
                         ("/api/v1/social/posts/{post_id}/schedule", "post"),
                         ("/api/v1/admin/settings/{key}", "put"), ("/readyz", "get")]:
        assert method in paths[path]
    assert "security" in paths["/api/v1/posts"]["get"]
    assert "security" not in paths["/api/v1/plans"]["get"]
    body = paths["/api/v1/posts"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["additionalProperties"] is False and body["required"] == ["body"]


def test_secured_operations_require_a_token(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    checked = 0
    for path, ops in doc["paths"].items():
        concrete = path.replace("{key}", "announcement")
        concrete = concrete.replace("{post_id}", "1").replace("{user_id}", "1").replace("{plan_id}", "1")
        concrete = concrete.replace("{account_id}", "1")
        for method, op in ops.items():
            r = client.open(concrete, method=method.upper(), json={})
            if "security" in op:
                assert r.status_code == 401, (method, path, r.status_code)
                checked += 1
            else:
                assert r.status_code != 401, (method, path)
    assert checked >= 25


def test_documented_response_fields(client):
    schemas = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    assert schemas["Me"]["properties"]["announcement"]["type"] == ["string", "null"]
    assert schemas["UserPage"]["properties"]["items"]["items"]["$ref"] == "#/components/schemas/UserListItem"
    item = schemas["UserListItem"]["allOf"]
    assert item[0]["$ref"] == "#/components/schemas/User"
    sub = item[1]["properties"]["subscription"]["oneOf"]
    assert {"type": "null"} in sub
    plan = next(s for s in sub if s.get("type") == "object")["properties"]["plan"]
    assert set(plan["required"]) == {"id", "code", "name"}


def test_rate_limits_and_metrics_documented(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert "429" in paths["/api/v1/auth/register"]["post"]["responses"]
    assert "429" in paths["/api/v1/auth/password-reset/request"]["post"]["responses"]
    assert "404" in paths["/metrics"]["get"]["responses"]


def test_401_of_secured_operations_documented(client):
    """Issue 11 item 12: the 401 bodies of bearer-token operations are documented, codes and messages."""
    doc = client.get("/api/v1/openapi.json").get_json()
    schema = doc["components"]["schemas"]["Unauthorized"]
    assert set(schema["properties"]["error"]["enum"]) == {"unauthorized", "invalid_token", "token_expired",
                                                          "token_revoked"}
    assert "invalid token" in schema["properties"]["message"]["enum"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if "security" in op:
                ref = op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/Unauthorized", (method, path)
