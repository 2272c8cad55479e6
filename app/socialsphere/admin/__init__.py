"""Admin API (role admin).  Every mutating call writes an audit log entry."""
from __future__ import annotations

from dataclasses import replace

from flask import Blueprint, jsonify
from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload

from .. import login_throttle
from ..apidoc import doc
from ..audit import audit
from ..auth import revoke_all_sessions
from ..content import paginate
from ..errors import ApiError, not_found
from ..extensions import db
from ..models import ROLES, USER_STATUSES, AuditLog, Plan, Setting, Subscription, User
from ..security import admin_required, current_user
from ..settings import REGISTRY, all_settings, coerce
from ..subscriptions import subscribe, summary
from ..timeutil import iso, utcnow
from ..validation import MISSING, PAGINATION, Field, validate_body, validate_query

bp = Blueprint("admin", __name__)

USER_QUERY = {
    **PAGINATION,
    "q": Field("string", max_length=200, description="search email and name"),
    "role": Field("string", choices=ROLES),
    "status": Field("string", choices=USER_STATUSES),
}
USER_PATCH = {
    "role": Field("string", choices=ROLES),
    "status": Field("string", choices=USER_STATUSES),
}
SUBSCRIPTION = {"plan_id": Field("integer", required=True, minimum=1)}
LIMIT = {"minimum": 0, "maximum": 10_000_000, "nullable": True,
         "description": "null = unlimited, 0 = not included"}
PLAN = {
    "code": Field("string", required=True, min_length=2, max_length=32),
    "name": Field("string", required=True, min_length=1, max_length=100),
    "price_cents": Field("integer", minimum=0, maximum=100_000_000, default=0),
    "posts_per_month": Field("integer", default=None, **LIMIT),
    "ai_generations_per_month": Field("integer", default=None, **LIMIT),
    "connected_accounts": Field("integer", default=None, **LIMIT),
    "active": Field("boolean", default=True),
}
PLAN_PATCH = {k: replace(f, required=False, default=MISSING) for k, f in PLAN.items()}
SETTING_VALUE = {"value": Field("any", required=True, description="typed per setting")}
AUDIT_QUERY = {**PAGINATION, "actor_id": Field("integer", minimum=1),
               "action": Field("string", max_length=64)}


def _user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise not_found("user")
    return user


def _user_detail(user: User) -> dict:
    data = user.to_dict()
    data["subscription"] = summary(user)
    # login attempts counted for the account's email in the current window (login_throttle)
    data["failed_logins"], data["locked"] = login_throttle.account_state(user.email)
    return data


def _user_list_item(user: User) -> dict:
    """A list item: the user and their current plan (no usage counts: one query per page)."""
    data = user.to_dict()
    sub = user.subscription
    data["subscription"] = None if sub is None else {
        "plan": {"id": sub.plan.id, "code": sub.plan.code, "name": sub.plan.name},
        "started_at": iso(sub.started_at),
    }
    return data


@bp.get("/users")
@doc("List and search users (each with the current plan)", tag="admin", query=USER_QUERY,
     response_schema="UserPage",
     responses={401: "unauthenticated", 403: "not an admin"})
@admin_required
def list_users():
    args = validate_query(USER_QUERY)
    stmt = select(User).options(selectinload(User.subscription).selectinload(Subscription.plan))
    if args.get("q"):
        term = "%" + args["q"].lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(or_(func.lower(User.email).like(term, escape="\\"),
                              func.lower(User.name).like(term, escape="\\")))
    if args.get("role"):
        stmt = stmt.where(User.role == args["role"])
    if args.get("status"):
        stmt = stmt.where(User.status == args["status"])
    return jsonify(paginate(stmt.order_by(User.id), args["page"], args["per_page"],
                            serialize=_user_list_item))


@bp.get("/users/<int:user_id>")
@doc("One user with subscription and usage", tag="admin", response_schema="User",
     responses={401: "unauthenticated", 403: "not an admin", 404: "not found"})
@admin_required
def get_user(user_id: int):
    data = _user_detail(_user(user_id))
    db.session.commit()
    return jsonify(data)


@bp.patch("/users/<int:user_id>")
@doc("Change a user's role or status (suspend / reactivate)", tag="admin", body=USER_PATCH,
     response_schema="User",
     responses={401: "unauthenticated", 403: "not an admin", 404: "not found",
                409: "would remove the last active admin"})
@admin_required
def update_user(user_id: int):
    data = validate_body(USER_PATCH)
    user = _user(user_id)
    before = {"role": user.role, "status": user.status}
    demoting = data.get("role") == "user" or data.get("status") == "suspended"
    if demoting and user.role == "admin" and user.status == "active":
        admins = db.session.scalar(select(func.count(User.id)).where(
            User.role == "admin", User.status == "active"))
        if admins <= 1:
            raise ApiError("cannot demote or suspend the last active admin", status=409,
                           code="conflict")
    for key, value in data.items():
        setattr(user, key, value)
    if data.get("status") == "suspended":
        revoke_all_sessions(user.id)
    if data.get("status") == "active":
        login_throttle.clear_account(user.email)
    audit("admin.user_update", "user", user.id, {"before": before, "after": data})
    db.session.commit()
    return jsonify(_user_detail(user))


@bp.post("/users/<int:user_id>/revoke-sessions")
@doc("Revoke every refresh token of a user", tag="admin", status=204, response_schema="empty",
     responses={401: "unauthenticated", 403: "not an admin", 404: "not found"})
@admin_required
def revoke_sessions(user_id: int):
    user = _user(user_id)
    count = revoke_all_sessions(user.id)
    audit("admin.revoke_sessions", "user", user.id, {"revoked": count})
    db.session.commit()
    return "", 204


@bp.put("/users/<int:user_id>/subscription")
@doc("Assign a plan to a user", tag="admin", body=SUBSCRIPTION, response_schema="User",
     responses={401: "unauthenticated", 403: "not an admin", 404: "user or plan not found"})
@admin_required
def set_subscription(user_id: int):
    data = validate_body(SUBSCRIPTION)
    user = _user(user_id)
    plan = db.session.get(Plan, data["plan_id"])
    if plan is None:
        raise not_found("plan")
    old = user.subscription.plan.code if user.subscription else None
    subscribe(user, plan)
    audit("admin.subscription_set", "user", user.id, {"from": old, "to": plan.code})
    db.session.commit()
    return jsonify(_user_detail(user))


@bp.get("/plans")
@doc("All plans, including inactive ones", tag="admin", response_schema="PlanList",
     responses={401: "unauthenticated", 403: "not an admin"})
@admin_required
def list_plans():
    plans = db.session.scalars(select(Plan).order_by(Plan.price_cents, Plan.id)).all()
    return jsonify(items=[p.to_dict() for p in plans])


def _code_taken(code: str, exclude: int | None = None) -> bool:
    stmt = select(Plan.id).where(Plan.code == code)
    if exclude is not None:
        stmt = stmt.where(Plan.id != exclude)
    return db.session.scalar(stmt) is not None


@bp.post("/plans")
@doc("Create a plan", tag="admin", body=PLAN, status=201, response_schema="Plan",
     responses={401: "unauthenticated", 403: "not an admin", 409: "code taken"})
@admin_required
def create_plan():
    data = validate_body(PLAN)
    if _code_taken(data["code"]):
        raise ApiError("a plan with this code exists", status=409, code="conflict")
    plan = Plan(**data)
    db.session.add(plan)
    db.session.flush()
    audit("admin.plan_create", "plan", plan.id, data)
    db.session.commit()
    return jsonify(plan.to_dict()), 201


@bp.patch("/plans/<int:plan_id>")
@doc("Update a plan", tag="admin", body=PLAN_PATCH, response_schema="Plan",
     responses={401: "unauthenticated", 403: "not an admin", 404: "not found",
                409: "code taken"})
@admin_required
def update_plan(plan_id: int):
    data = validate_body(PLAN_PATCH, partial=True)
    plan = db.session.get(Plan, plan_id)
    if plan is None:
        raise not_found("plan")
    if "code" in data and _code_taken(data["code"], plan.id):
        raise ApiError("a plan with this code exists", status=409, code="conflict")
    for key, value in data.items():
        setattr(plan, key, value)
    audit("admin.plan_update", "plan", plan.id, data)
    db.session.commit()
    return jsonify(plan.to_dict())


@bp.delete("/plans/<int:plan_id>")
@doc("Delete an unused plan", tag="admin", status=204, response_schema="empty",
     responses={401: "unauthenticated", 403: "not an admin", 404: "not found",
                409: "plan in use (deactivate it instead)"})
@admin_required
def delete_plan(plan_id: int):
    plan = db.session.get(Plan, plan_id)
    if plan is None:
        raise not_found("plan")
    in_use = db.session.scalar(select(func.count(Subscription.id)).where(Subscription.plan_id == plan.id))
    if in_use:
        raise ApiError(f"plan is used by {in_use} subscription(s); deactivate it instead",
                       status=409, code="plan_in_use")
    audit("admin.plan_delete", "plan", plan.id, {"code": plan.code})
    db.session.delete(plan)
    db.session.commit()
    return "", 204


@bp.get("/settings")
@doc("Typed application settings", tag="admin", response_schema="SettingList",
     responses={401: "unauthenticated", 403: "not an admin"})
@admin_required
def list_settings():
    return jsonify(items=all_settings())


@bp.put("/settings/<key>")
@doc("Set a setting (validated against its type)", tag="admin", body=SETTING_VALUE,
     response_schema="Setting",
     responses={401: "unauthenticated", 403: "not an admin", 404: "unknown setting"})
@admin_required
def put_setting(key: str):
    if key not in REGISTRY:
        raise not_found("setting")
    data = validate_body(SETTING_VALUE)
    try:
        value = coerce(key, data["value"])
    except ValueError as exc:
        raise ApiError("invalid input", status=422, code="validation_error",
                       fields={"value": str(exc)}) from None
    row = db.session.get(Setting, key)
    old = row.value if row is not None else REGISTRY[key].default
    if row is None:
        row = Setting(key=key)
        db.session.add(row)
    row.value = value
    row.updated_at = utcnow()
    row.updated_by = current_user().id
    audit("admin.setting_update", "setting", key, {"from": old, "to": value})
    db.session.commit()
    d = REGISTRY[key]
    return jsonify(key=key, value=value, type=d.type, description=d.description, default=d.default)


@bp.get("/audit-log")
@doc("Audit log, newest first", tag="admin", query=AUDIT_QUERY, response_schema="AuditPage",
     responses={401: "unauthenticated", 403: "not an admin"})
@admin_required
def audit_log():
    args = validate_query(AUDIT_QUERY)
    stmt = select(AuditLog)
    if args.get("actor_id"):
        stmt = stmt.where(AuditLog.actor_id == args["actor_id"])
    if args.get("action"):
        stmt = stmt.where(AuditLog.action == args["action"])
    return jsonify(paginate(stmt.order_by(AuditLog.id.desc()), args["page"], args["per_page"]))
