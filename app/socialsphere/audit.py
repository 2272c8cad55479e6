"""Audit log of admin (and security relevant) actions."""
from __future__ import annotations

from typing import Any

from flask import g, has_request_context, request

from .extensions import db
from .models import AuditLog


def audit(action: str, target_type: str | None = None, target_id: Any = None,
          details: dict[str, Any] | None = None, actor_id: int | None = None) -> AuditLog:
    if actor_id is None and has_request_context() and g.get("current_user") is not None:
        actor_id = g.current_user.id
    entry = AuditLog(
        actor_id=actor_id,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        details=details or {},
        ip=request.remote_addr if has_request_context() else None,
        request_id=g.get("request_id") if has_request_context() else None,
    )
    db.session.add(entry)
    return entry
