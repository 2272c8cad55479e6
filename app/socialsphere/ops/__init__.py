"""Operations endpoints: /healthz, /readyz, /metrics, /api/v1/openapi.json."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..apidoc import doc
from ..extensions import db
from ..metrics import metrics_response
from ..schema import SCHEMA_HEAD

bp = Blueprint("ops", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
@doc("Liveness: the process answers", tag="ops", response_schema="Status")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
@doc("Readiness: database reachable and schema at the migration head this code needs",
     tag="ops", response_schema="Status", responses={503: "not ready"})
def readyz():
    try:
        with db.engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except SQLAlchemyError as exc:
        log.warning("readyz: database check failed: %s", type(exc).__name__)
        return jsonify(status="unavailable", error="database_unavailable",
                       message="database unreachable or not migrated"), 503
    if rows != [SCHEMA_HEAD]:
        return jsonify(status="unavailable", error="schema_mismatch",
                       message="database schema is not at the expected revision",
                       expected=SCHEMA_HEAD, found=rows), 503
    return jsonify(status="ok", schema=SCHEMA_HEAD)


@bp.get("/metrics")
@doc("Prometheus metrics (text exposition format)", tag="ops", response_schema="text")
def metrics():
    return metrics_response()


@bp.get("/api/v1/openapi.json")
@doc("This OpenAPI document", tag="ops", response_schema="object")
def openapi():
    from ..openapi import build_openapi

    return jsonify(build_openapi(current_app))
