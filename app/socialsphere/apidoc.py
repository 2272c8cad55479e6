"""Per-view OpenAPI metadata, collected into /api/v1/openapi.json by ``openapi.py``."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .validation import Field


def doc(
    summary: str,
    *,
    tag: str,
    body: dict[str, Field] | None = None,
    body_required: bool = True,
    query: dict[str, Field] | None = None,
    headers: dict[str, Field] | None = None,
    cookies: dict[str, Field] | None = None,
    responses: dict[int, str | tuple[str, str]] | None = None,
    response_schema: str | None = None,
    status: int = 200,
) -> Callable:
    """Attach API documentation to a view function.

    ``openapi.py`` adds what shared code answers: 400/413/415/422 with a body, 422 with a
    query, 404 with an integer path parameter, 401/403 behind ``login_required`` /
    ``admin_required``, 429 behind ``rate_limited``. ``body_required=False`` must go with
    ``validate_body(..., required=False)`` (tests/test_openapi_conformance.py checks both).
    ``headers`` and ``cookies`` name what the view reads besides body and query, so that
    clients (and the fuzzer, tests/test_openapi_fuzz.py) know to send them.
    """

    def decorator(view: Callable) -> Callable:
        view._apidoc = {  # type: ignore[attr-defined]
            "summary": summary,
            "tag": tag,
            "body": body,
            "body_required": body_required,
            "query": query,
            "headers": headers,
            "cookies": cookies,
            "responses": responses or {},
            "response_schema": response_schema,
            "status": status,
        }
        return view

    return decorator


def get_doc(view: Callable) -> dict[str, Any] | None:
    return getattr(view, "_apidoc", None)
