"""OpenAPI 3.1 document built from the URL map and the ``@doc`` metadata of each view.

``tests/test_openapi.py`` checks that every API route is documented and that the
document lists no route that does not exist; ``tests/test_openapi_conformance.py`` sends
every operation crafted requests and checks each answer is declared as it comes, and
``tests/test_openapi_fuzz.py`` has schemathesis generate requests from the document.
"""
from __future__ import annotations

import re
from typing import Any

from flask import Flask
from werkzeug.routing import Rule

from . import __version__
from .apidoc import get_doc
from .models import MAX_ID
from .validation import schema_openapi

API_PREFIXES = ("/api/",)
OPS_PATHS = ("/healthz", "/readyz", "/metrics")
_CONVERTER = re.compile(r"<(?:(?P<conv>[a-z]+):)?(?P<name>\w+)>")

ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
_USER = {"type": "object", "properties": {
    "id": {"type": "integer"}, "email": {"type": "string"}, "name": {"type": "string"},
    "role": {"type": "string", "enum": ["user", "admin"]},
    "status": {"type": "string", "enum": ["active", "suspended"]},
    "email_verified": {"type": "boolean"},
    "created_at": {"type": "string", "format": "date-time"},
    "last_login_at": {"type": ["string", "null"], "format": "date-time"}}}
_POST = {"type": "object", "properties": {
    "id": {"type": "integer"}, "title": {"type": ["string", "null"]}, "body": {"type": "string"},
    "status": {"type": "string"}, "platforms": {"type": "array", "items": {"type": "string"}},
    "scheduled_at": {"type": ["string", "null"], "format": "date-time"},
    "published_at": {"type": ["string", "null"], "format": "date-time"},
    "created_at": {"type": "string"}, "updated_at": {"type": "string"}}}
_PLAN = {"type": "object", "properties": {
    "id": {"type": "integer"}, "code": {"type": "string"}, "name": {"type": "string"},
    "price_cents": {"type": "integer"},
    "posts_per_month": {"type": ["integer", "null"]},
    "ai_generations_per_month": {"type": ["integer", "null"]},
    "connected_accounts": {"type": ["integer", "null"]}, "active": {"type": "boolean"}}}
_ACCOUNT = {"type": "object", "properties": {
    "id": {"type": "integer"}, "platform": {"type": "string"}, "handle": {"type": "string"},
    "adapter": {"type": "string"}, "webhook_url": {"type": ["string", "null"]},
    "created_at": {"type": "string"}}}
_PUBLICATION = {"type": "object", "properties": {
    "id": {"type": "integer"}, "post_id": {"type": "integer"}, "account_id": {"type": "integer"},
    "status": {"type": "string",
               "enum": ["pending", "publishing", "published", "failed", "cancelled"]},
    "scheduled_at": {"type": "string"}, "published_at": {"type": ["string", "null"]},
    "external_id": {"type": ["string", "null"]}, "last_error": {"type": ["string", "null"]},
    "attempts": {"type": "array", "items": {"type": "object", "properties": {
        "number": {"type": "integer"}, "outcome": {"type": "string",
                                                   "enum": ["success", "retry", "failed"]},
        "detail": {"type": ["string", "null"]}, "http_status": {"type": ["integer", "null"]},
        "started_at": {"type": "string"}, "finished_at": {"type": ["string", "null"]}}}}}}


def _page(item_ref: str) -> dict[str, Any]:
    return {"type": "object", "properties": {
        "items": {"type": "array", "items": {"$ref": item_ref}},
        "page": {"type": "integer"}, "per_page": {"type": "integer"},
        "total": {"type": "integer"}, "pages": {"type": "integer"}}}


def _list(item_ref: str, key: str = "items") -> dict[str, Any]:
    return {"type": "object", "properties": {key: {"type": "array", "items": {"$ref": item_ref}}}}


SCHEMAS: dict[str, Any] = {
    "Error": ERROR,
    "Status": {"type": "object", "properties": {"status": {"type": "string"}}},
    "Readiness": {
        "type": "object", "required": ["status", "schema"],
        "description": (
            "200 when the database is reachable and its Alembic revision equals the revision this "
            "code needs (relation equal) or is newer (ahead: a descendant of it, or a revision this "
            "code's migration scripts do not know, i.e. a newer release already ran its "
            "expand/contract migrations). 503 when the database is unreachable (relation null), not "
            "migrated (missing: no or empty alembic_version), behind (an ancestor of the code's "
            "revision), or the migration scripts cannot be read (relation null); 503 bodies also "
            "carry error and message."),
        "properties": {
            "status": {"type": "string", "enum": ["ready", "not_ready"]},
            "schema": {"type": "object", "required": ["database", "code", "relation"], "properties": {
                "database": {"type": ["string", "null"],
                             "description": "the database's revision (comma separated if several "
                                            "heads); null without one"},
                "code": {"type": "string", "description": "the revision this code needs (schema-head)"},
                "relation": {"type": ["string", "null"],
                             "enum": ["equal", "ahead", "behind", "missing", None]}}},
            "error": {"type": "string", "enum": ["database_unavailable", "schema_missing",
                                                 "schema_behind", "schema_unverifiable"]},
            "message": {"type": "string"}}},
    "Unauthorized": {
        "type": "object", "required": ["error", "message"],
        "description": (
            "401 of a bearer-token operation: unauthorized (no bearer token), invalid_token (any "
            "token that is not accepted: malformed, forged, wrong key, algorithm or claims, user "
            "deleted), token_expired (refresh it), token_revoked (its login session was logged "
            "out or revoked, or all sessions of the user were revoked after it was issued). The "
            "message never gives a more detailed reason."),
        "properties": {
            "error": {"type": "string",
                      "enum": ["unauthorized", "invalid_token", "token_expired", "token_revoked"]},
            "message": {"type": "string", "enum": ["authentication required", "invalid token",
                                                   "token expired", "session revoked"]}}},
    "User": _USER,
    "UserEnvelope": {"type": "object", "properties": {"user": {"$ref": "#/components/schemas/User"}}},
    "UserPage": _page("#/components/schemas/UserListItem"),
    "UserListItem": {"allOf": [{"$ref": "#/components/schemas/User"}, {"type": "object", "properties": {
        "subscription": {"oneOf": [{"type": "null"}, {"type": "object", "properties": {
            "plan": {"type": "object", "required": ["id", "code", "name"], "properties": {
                "id": {"type": "integer"}, "code": {"type": "string"}, "name": {"type": "string"}}},
            "started_at": {"type": "string", "format": "date-time"}}}],
            "description": "the current plan; null if the user has no subscription"}}}]},
    "TokenPair": {"type": "object", "properties": {
        "access_token": {"type": "string"}, "token_type": {"type": "string", "const": "Bearer"},
        "expires_in": {"type": "integer"}, "refresh_token": {"type": "string"},
        "user": {"$ref": "#/components/schemas/User"}}},
    "Me": {"type": "object", "properties": {
        "user": {"$ref": "#/components/schemas/User"},
        "subscription": {"type": "object", "properties": {
            "plan": {"$ref": "#/components/schemas/Plan"},
            "period_start": {"type": "string", "format": "date-time"},
            "started_at": {"type": "string", "format": "date-time"},
            "usage": {"type": "object", "additionalProperties": {"type": "integer"}},
            "limits": {"type": "object", "additionalProperties": {"type": ["integer", "null"]}}}},
        "announcement": {"type": ["string", "null"],
                         "description": "banner text shown in the dashboard (setting announcement); "
                                        "null when unset"}}},
    "Post": _POST,
    "PostPage": _page("#/components/schemas/Post"),
    "Generation": {"type": "object", "properties": {
        "caption": {"type": "string"}, "hashtags": {"type": "array", "items": {"type": "string"}},
        "provider": {"type": "string"}}},
    "Plan": _PLAN,
    "PlanList": _list("#/components/schemas/Plan"),
    "Account": _ACCOUNT,
    "AccountList": _list("#/components/schemas/Account"),
    "Publication": _PUBLICATION,
    "PublicationList": _list("#/components/schemas/Publication", "publications"),
    "Setting": {"type": "object", "properties": {
        "key": {"type": "string"}, "value": {}, "type": {"type": "string"},
        "description": {"type": "string"}, "default": {}}},
    "SettingList": _list("#/components/schemas/Setting"),
    "AuditEntry": {"type": "object", "properties": {
        "id": {"type": "integer"}, "actor_id": {"type": ["integer", "null"]},
        "action": {"type": "string"}, "target_type": {"type": ["string", "null"]},
        "target_id": {"type": ["string", "null"]}, "details": {"type": "object"},
        "created_at": {"type": "string"}}},
    "AuditPage": _page("#/components/schemas/AuditEntry"),
}

ERROR_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
STATUS_TEXT = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content"}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again",
                               "schema": {"type": "integer", "minimum": 1}}}
RESPONSES: dict[str, Any] = {
    "MethodNotAllowed": {
        "description": (
            "Any method that a path does not list (among GET, POST, PUT, PATCH, DELETE): "
            "405 method_not_allowed, with an Allow header naming the methods the path has "
            "(HEAD with GET, and OPTIONS). Not attached to operations: a listed method never "
            "answers 405."),
        "headers": {"Allow": {"description": "the methods of the path, comma separated",
                              "schema": {"type": "string"}}},
        "content": ERROR_JSON,
    },
}
DESCRIPTION = """See docs/api-contract.md for the human summary.

* Errors are `{"error", "message", "fields"?}` (schema Error); 401 of bearer-token operations: \
schema Unauthorized. A method a path does not list is a 405 (components/responses/MethodNotAllowed).
* Query parameters an operation does not list are ignored (on every operation); listed ones \
are validated (422 with `fields`). A repeated parameter counts with its last value.
* Request bodies are JSON objects (`application/json`, else 415; over the size limit 413; \
malformed or not an object 400). Where `requestBody.required` is true an absent body is a 400; \
where it is false an absent body means `{}`. Operations without a requestBody do not read a body.
* Integer fields accept any JSON number with no fractional part (`3614.0` is 3614), as JSON \
Schema's `integer` type does; `3614.5`, strings and booleans are refused (422).
* Integer path parameters (ids) outside their minimum..maximum are a 404, like ids that do not \
exist."""


def is_api_rule(rule: str) -> bool:
    return rule.startswith(API_PREFIXES) or rule in OPS_PATHS


def openapi_path(rule: str) -> str:
    return _CONVERTER.sub(lambda m: "{" + m.group("name") + "}", rule)


def _path_params(rule: str) -> list[dict[str, Any]]:
    params = []
    for m in _CONVERTER.finditer(rule):
        schema = ({"type": "integer", "minimum": 1, "maximum": MAX_ID} if m.group("conv") == "int"
                  else {"type": "string"})
        params.append({"name": m.group("name"), "in": "path", "required": True, "schema": schema})
    return params


def _response(schema_name: str | None, status: int) -> dict[str, Any]:
    desc = STATUS_TEXT.get(status, "OK")
    if schema_name in (None, "empty") or status == 204:
        return {"description": desc}
    if schema_name == "text":
        return {"description": desc, "content": {"text/plain": {"schema": {"type": "string"}}}}
    if schema_name == "object":
        return {"description": desc, "content": {"application/json": {"schema": {"type": "object"}}}}
    return {"description": desc, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{schema_name}"}}}}


def _declare(responses: dict[str, Any], status: int, description: str, schema_name: str = "Error") -> None:
    """Add an error response, or append ``description`` to the one declared for ``status``."""
    found = responses.get(str(status))
    if found is None:
        responses[str(status)] = {"description": description, "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}}}
    elif description not in found["description"]:
        found["description"] += "; " + description


def _operation(rule: Rule, view: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """One operation: the view's ``@doc`` plus every response the shared code can give it
    (body and query validation, bounded ids, authentication, rate limits)."""
    op: dict[str, Any] = {
        "operationId": rule.endpoint.replace(".", "_"),
        "summary": meta["summary"],
        "tags": [meta["tag"]],
    }
    responses = {str(meta["status"]): _response(meta["response_schema"], meta["status"])}
    for status, described in meta["responses"].items():
        # "description" (an Error body) or ("description", "SchemaName")
        description, schema_name = described if isinstance(described, tuple) else (described, "Error")
        _declare(responses, status, description, schema_name)
    params = _path_params(rule.rule)
    if any(p["schema"]["type"] == "integer" for p in params):  # the router's BoundedInt
        also = f"also any id outside 1..{MAX_ID}"
        if "404" in responses:
            responses["404"]["description"] += f" ({also})"
        else:
            _declare(responses, 404, f"not found ({also})")
    for name, f in (meta["query"] or {}).items():
        params.append({"name": name, "in": "query", "required": False, "schema": f.openapi()})
    if meta["query"]:
        _declare(responses, 422, "invalid query parameter value (`fields` names each)")
    for where, fields in (("header", meta["headers"]), ("cookie", meta["cookies"])):
        for name, f in (fields or {}).items():
            params.append({"name": name, "in": where, "required": False, "schema": f.openapi()})
    if params:
        op["parameters"] = params
    if meta["body"] is not None:
        required = bool(meta["body_required"])
        op["requestBody"] = {
            "required": required,
            "content": {"application/json": {"schema": schema_openapi(meta["body"])}},
        }
        _declare(responses, 400, "malformed JSON or a body that is not a JSON object"
                 + (", or no body" if required else ""))
        _declare(responses, 413, "request body over the size limit (with or without Content-Length)")
        _declare(responses, 415, "request body not application/json")
        _declare(responses, 422, "validation error (`fields` names each refused field)")
    auth = getattr(view, "_auth", None)
    if auth:
        op["security"] = [{"bearerAuth": []}]
        responses["401"] = {"description": "no bearer token, or one that is not accepted", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Unauthorized"}}}}
        if auth == "admin":
            _declare(responses, 403, "not an admin")
        _declare(responses, 403, "account suspended")
    if getattr(view, "_rate_limit", None) and "429" not in responses:
        _declare(responses, 429, "too many requests from this client address")
    if "429" in responses:
        responses["429"]["headers"] = RETRY_AFTER
    op["responses"] = dict(sorted(responses.items()))
    return op


def build_openapi(app: Flask) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for rule in app.url_map.iter_rules():
        if not is_api_rule(rule.rule):
            continue
        view = app.view_functions[rule.endpoint]
        meta = get_doc(view)
        if meta is None:
            continue  # the test fails on undocumented API routes
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(openapi_path(rule.rule), {})[method.lower()] = _operation(rule, view, meta)
    return {
        "openapi": "3.1.0",
        "info": {"title": "SocialSphere AI API", "version": __version__, "description": DESCRIPTION},
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "bearerFormat": "JWT"}},
        },
    }
