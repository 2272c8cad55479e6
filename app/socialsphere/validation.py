"""Small declarative input validation that also produces OpenAPI schemas.

A schema is a ``dict[str, Field]``.  ``validate_body`` rejects malformed JSON,
non-object bodies, unknown fields, wrong types, too long strings, bad dates, and
reports every problem at once as ``422 {"fields": {name: reason}}``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import request

from .errors import ApiError, ValidationError

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_RE = re.compile(rf"^[^@\s]{{1,64}}@{_LABEL}(?:\.{_LABEL})+$")
MISSING: Any = object()
MAX_INT = 2**31 - 1


@dataclass
class Field:
    type: str  # string|integer|boolean|datetime|email|url|array|any|password
    required: bool = False
    nullable: bool = False
    min_length: int | None = None
    max_length: int | None = None
    choices: tuple[str, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None
    items: Field | None = None
    max_items: int | None = None
    unique: bool = False
    description: str | None = None
    default: Any = field(default=MISSING)

    def openapi(self) -> dict[str, Any]:
        schema: dict[str, Any]
        if self.type in ("string", "password"):
            schema = {"type": "string"}
        elif self.type == "email":
            schema = {"type": "string", "format": "email"}
        elif self.type == "url":
            schema = {"type": "string", "format": "uri"}
        elif self.type == "datetime":
            schema = {"type": "string", "format": "date-time"}
        elif self.type == "integer":
            # the bounds check_field applies, also where the field names none
            schema = {"type": "integer",
                      "minimum": self.minimum if self.minimum is not None else -MAX_INT,
                      "maximum": self.maximum if self.maximum is not None else MAX_INT}
        elif self.type == "boolean":
            schema = {"type": "boolean"}
        elif self.type == "array":
            schema = {"type": "array", "items": self.items.openapi() if self.items else {}}
            if self.max_items is not None:
                schema["maxItems"] = self.max_items
            if self.unique:
                schema["uniqueItems"] = True
        else:
            schema = {}
        if self.min_length is not None:
            schema["minLength"] = self.min_length
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        if self.choices:
            schema["enum"] = list(self.choices)
        if self.nullable and "type" in schema:
            schema["type"] = [schema["type"], "null"]
        if self.description:
            schema["description"] = self.description
        return schema


def schema_openapi(schema: dict[str, Field]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {name: f.openapi() for name, f in schema.items()},
        "required": [name for name, f in schema.items() if f.required],
    }


def parse_datetime(value: str) -> datetime:
    """ISO 8601 with an explicit offset (``Z`` or ``+hh:mm``); returns naive UTC."""
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("must be an ISO 8601 date-time string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("must be an ISO 8601 date-time, e.g. 2030-01-31T09:00:00Z") from None
    if parsed.tzinfo is None:
        raise ValueError("must include a timezone (use Z for UTC)")
    if "T" not in text and " " not in text:
        raise ValueError("must include a time")
    try:
        return parsed.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is in year 0 in UTC
        raise ValueError("must be between years 1 and 9999 in UTC") from None


def check_field(f: Field, value: Any, *, coerce: bool = False) -> Any:
    """Validate one value against ``f`` (the single path for every field, settings too);
    return it normalised (strings stripped, emails lower-cased, dates naive UTC) or raise
    ValueError with the reason."""
    if value is None:
        if f.nullable:
            return None
        raise ValueError("must not be null")
    t = f.type
    if t in ("string", "password", "email", "url"):
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if t != "password":
            value = value.strip()
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode text (no lone surrogates)") from None
        if f.min_length is not None and len(value) < f.min_length:
            raise ValueError(f"must be at least {f.min_length} characters")
        if f.max_length is not None and len(value) > f.max_length:
            raise ValueError(f"must be at most {f.max_length} characters")
        if t == "email":
            if not EMAIL_RE.match(value) or len(value) > 254:
                raise ValueError("must be a valid email address")
            value = value.lower()
        if t == "url":
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http(s) URL")
        if f.choices and value not in f.choices:
            raise ValueError("must be one of: " + ", ".join(f.choices))
        return value
    if t == "integer":
        if coerce and isinstance(value, str):
            if not re.fullmatch(r"-?\d{1,12}", value.strip()):
                raise ValueError("must be an integer")
            value = int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 3614.0 is an integer in JSON (and JSON Schema's "integer")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        lo = f.minimum if f.minimum is not None else -MAX_INT
        hi = f.maximum if f.maximum is not None else MAX_INT
        if value < lo:
            raise ValueError(f"must be >= {lo}")
        if value > hi:
            raise ValueError(f"must be <= {hi}")
        return value
    if t == "boolean":
        if coerce and isinstance(value, str):
            if value.lower() in ("true", "1"):
                return True
            if value.lower() in ("false", "0"):
                return False
        if not isinstance(value, bool):
            raise ValueError("must be a boolean")
        return value
    if t == "datetime":
        return parse_datetime(value)
    if t == "array":
        if not isinstance(value, list):
            raise ValueError("must be an array")
        if f.max_items is not None and len(value) > f.max_items:
            raise ValueError(f"must have at most {f.max_items} items")
        out = []
        for index, item in enumerate(value):
            try:
                out.append(check_field(f.items, item) if f.items else item)
            except ValueError as exc:
                raise ValueError(f"item {index}: {exc}") from None
        if f.unique and len(set(map(repr, out))) != len(out):
            raise ValueError("must not contain duplicates")
        return out
    return value  # "any": checked by the caller


def validate(schema: dict[str, Field], data: Any, *, partial: bool = False,
             coerce: bool = False) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ApiError("request body must be a JSON object", status=400, code="bad_request")
    errors: dict[str, str] = {}
    result: dict[str, Any] = {}
    for key in data:
        if key not in schema:
            errors[str(key)[:64]] = "unknown field"
    for name, f in schema.items():
        if name not in data:
            if f.required and not partial:
                errors[name] = "is required"
            elif f.default is not MISSING and not partial:
                result[name] = f.default
            continue
        try:
            result[name] = check_field(f, data[name], coerce=coerce)
        except ValueError as exc:
            errors[name] = str(exc)
    if errors:
        raise ValidationError(errors)
    return result


def json_body(*, required: bool = True) -> Any:
    """The parsed JSON body; an absent (empty) body is ``{}`` where the body is optional and
    a 400 where it is required (``requestBody.required`` in the OpenAPI document)."""
    raw = request.get_data(cache=True)
    if not raw:
        if required:
            raise ApiError("request body required: a JSON object", status=400, code="bad_request")
        return {}
    if not request.is_json:
        raise ApiError("Content-Type must be application/json", status=415,
                       code="unsupported_media_type")
    try:
        # parse ourselves: RecursionError (deeply nested input) must be a 400 too
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError("malformed JSON body", status=400, code="bad_request") from None


def validate_body(schema: dict[str, Field], *, partial: bool = False,
                  required: bool = True) -> dict[str, Any]:
    """``required``: as the view's ``@doc(body_required=...)``; False only for bodies whose
    every field is optional and whose absence means "nothing given"."""
    return validate(schema, json_body(required=required), partial=partial)


def validate_query(schema: dict[str, Field]) -> dict[str, Any]:
    """The query parameters of ``schema`` (the last value of a repeated one). Parameters the
    schema does not name are ignored, on every operation (docs/api-contract.md)."""
    data: dict[str, Any] = {}
    for key in request.args:
        if key in schema:
            data[key] = request.args.getlist(key)[-1]
    return validate(schema, data, coerce=True)


PAGINATION = {
    "page": Field("integer", minimum=1, maximum=100000, default=1),
    "per_page": Field("integer", minimum=1, maximum=100, default=20),
}
