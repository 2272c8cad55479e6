"""Operations endpoints: /healthz, /readyz, /metrics, /api/v1/openapi.json."""
from __future__ import annotations

import ipaddress
import logging

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..apidoc import doc
from ..errors import not_found
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


def metrics_allowed(addr: str | None) -> bool:
    """Is the client (``request.remote_addr``, ProxyFix-aware) allowed to read /metrics?"""
    networks = current_app.config.get("METRICS_ALLOW_NETWORKS")
    if networks is None:
        return True
    try:
        ip = ipaddress.ip_address(addr or "")
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


@bp.get("/metrics")
@doc("Prometheus metrics (text exposition format); 404 outside SOCIALSPHERE_METRICS_ALLOW",
     tag="ops", response_schema="text", responses={404: "client address not allowed"})
def metrics():
    if not metrics_allowed(request.remote_addr):
        raise not_found()
    return metrics_response()


@bp.get("/api/v1/openapi.json")
@doc("This OpenAPI document", tag="ops", response_schema="object")
def openapi():
    from ..openapi import build_openapi

    return jsonify(build_openapi(current_app))
