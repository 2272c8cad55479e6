"""Operations endpoints: /healthz, /readyz, /metrics, /api/v1/openapi.json."""
from __future__ import annotations

import ipaddress
import logging

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import inspect, text
from sqlalchemy.exc import SQLAlchemyError

from .. import schema
from ..apidoc import doc
from ..errors import not_found
from ..extensions import db
from ..metrics import metrics_response

bp = Blueprint("ops", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
@doc("Liveness: the process answers", tag="ops", response_schema="Status")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
@doc("Readiness: database reachable and its schema at, or newer than, the revision this code "
     "needs (see the Readiness schema)", tag="ops", response_schema="Readiness",
     responses={503: ("not ready: database unreachable, not migrated, or behind this code",
                      "Readiness")})
def readyz():
    head = schema.SCHEMA_HEAD

    def not_ready(error: str, message: str, database: str | None, relation: str | None):
        return jsonify(status="not_ready", error=error, message=message,
                       schema={"database": database, "code": head, "relation": relation}), 503

    try:
        with db.engine.connect() as conn:
            # not alembic's MigrationContext: it logs two INFO lines per call (every health check)
            db_heads = []
            if inspect(conn).has_table("alembic_version"):
                db_heads = sorted(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except SQLAlchemyError as exc:
        log.warning("readyz: database check failed: %s", type(exc).__name__)
        return not_ready("database_unavailable", "database unreachable", None, None)
    database = ",".join(db_heads) or None
    try:
        script = None
        if db_heads and db_heads != [head]:
            directory = current_app.extensions["migrate"].directory
            script = schema.cached_scripts(current_app.extensions, str(directory))
        relation = schema.schema_relation(db_heads, script, head)
    except Exception as exc:  # unreadable or incomplete migration scripts: fail closed
        log.error("readyz: cannot read the migration scripts: %s: %s", type(exc).__name__, exc)
        return not_ready("schema_unverifiable",
                         "cannot compare the database revision with this code's migrations",
                         database, None)
    if relation not in schema.READY_RELATIONS:
        message = ("database is not migrated" if relation == schema.MISSING
                   else "database schema is older than this code needs")
        return not_ready(f"schema_{relation}", message, database, relation)
    return jsonify(status="ready", schema={"database": database, "code": head, "relation": relation})


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
