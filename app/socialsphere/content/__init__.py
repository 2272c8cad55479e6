"""Content API: posts CRUD with pagination/filter/search, AI generation, public plans."""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from flask import Blueprint, jsonify
from sqlalchemy import func, or_, select, update

from ..ai import ProviderError, get_provider
from ..apidoc import doc
from ..errors import ApiError, not_found
from ..extensions import db
from ..metrics import AI_REQUESTS
from ..models import PLATFORMS, POST_STATUSES, TONES, Plan, Post, Publication, UsageEvent
from ..security import current_user, login_required
from ..settings import get_setting
from ..subscriptions import enforce
from ..timeutil import utcnow
from ..validation import MISSING, PAGINATION, Field, validate_body, validate_query

bp = Blueprint("content", __name__)

EDITABLE_STATUSES = ("draft", "scheduled")
POST_FIELDS = {
    "title": Field("string", nullable=True, max_length=200),
    "body": Field("string", required=True, min_length=1, max_length=5000),
    "status": Field("string", choices=EDITABLE_STATUSES, default="draft"),
    "platforms": Field("array", items=Field("string", choices=PLATFORMS), max_items=len(PLATFORMS),
                       unique=True, default=[]),
    "scheduled_at": Field("datetime", nullable=True, default=None,
                          description="ISO 8601 with timezone, e.g. 2030-01-31T09:00:00Z"),
}
POST_QUERY = {
    **PAGINATION,
    "status": Field("string", choices=POST_STATUSES),
    "platform": Field("string", choices=PLATFORMS),
    "q": Field("string", max_length=200, description="search in title and body"),
}
GENERATE = {
    "topic": Field("string", required=True, min_length=2, max_length=200),
    "tone": Field("string", choices=TONES, default="professional"),
    "platform": Field("string", choices=PLATFORMS, default="twitter"),
}


def paginate(stmt, page: int, per_page: int, serialize=lambda o: o.to_dict()) -> dict[str, Any]:
    total = db.session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    items = db.session.scalars(stmt.limit(per_page).offset((page - 1) * per_page)).all()
    return {"items": [serialize(i) for i in items], "page": page, "per_page": per_page,
            "total": total, "pages": math.ceil(total / per_page) if total else 0}


def _check_schedule(status: str, scheduled_at) -> dict[str, str]:
    if status == "scheduled":
        if scheduled_at is None:
            return {"scheduled_at": "is required when status is scheduled"}
        if scheduled_at <= utcnow():
            return {"scheduled_at": "must be in the future"}
    return {}


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@bp.get("/posts")
@doc("List my posts (filters: status, platform, q; paginated)", tag="content", query=POST_QUERY,
     response_schema="PostPage", responses={401: "unauthenticated"})
@login_required
def list_posts():
    args = validate_query(POST_QUERY)
    user = current_user()
    stmt = select(Post).where(Post.user_id == user.id)
    if args.get("status"):
        stmt = stmt.where(Post.status == args["status"])
    if args.get("platform"):
        # JSON array stored as text on both backends: match the quoted value
        stmt = stmt.where(func.cast(Post.platforms, db.String).like(f'%"{args["platform"]}"%'))
    if args.get("q"):
        pattern = f"%{_escape_like(args['q'].lower())}%"
        stmt = stmt.where(or_(func.lower(func.coalesce(Post.title, "")).like(pattern, escape="\\"),
                              func.lower(Post.body).like(pattern, escape="\\")))
    stmt = stmt.order_by(Post.created_at.desc(), Post.id.desc())
    return jsonify(paginate(stmt, args["page"], args["per_page"]))


@bp.post("/posts")
@doc("Create a post", tag="content", body=POST_FIELDS, status=201, response_schema="Post",
     responses={401: "unauthenticated", 402: "monthly post quota reached",
                403: "plan does not include posts"})
@login_required
def create_post():
    data = validate_body(POST_FIELDS)
    errors = _check_schedule(data["status"], data["scheduled_at"])
    if errors:
        raise ApiError("invalid input", status=422, code="validation_error", fields=errors)
    user = current_user()
    enforce(user, "posts")
    post = Post(user_id=user.id, title=data.get("title") or None, body=data["body"],
                status=data["status"], platforms=data["platforms"],
                scheduled_at=data["scheduled_at"])
    db.session.add(post)
    db.session.commit()
    return jsonify(post.to_dict()), 201


def _own_post(post_id: int) -> Post:
    post = db.session.get(Post, post_id)
    if post is None or post.user_id != current_user().id:
        raise not_found("post")
    return post


@bp.get("/posts/<int:post_id>")
@doc("Get one of my posts", tag="content", response_schema="Post",
     responses={401: "unauthenticated", 404: "not found or not mine"})
@login_required
def get_post(post_id: int):
    return jsonify(_own_post(post_id).to_dict())


PATCH_FIELDS = {k: replace(f, required=False, default=MISSING) for k, f in POST_FIELDS.items()}


@bp.patch("/posts/<int:post_id>")
@doc("Update one of my posts (draft or scheduled only)", tag="content", body=PATCH_FIELDS,
     response_schema="Post",
     responses={401: "unauthenticated", 404: "not found", 409: "already published"})
@login_required
def update_post(post_id: int):
    data = validate_body(PATCH_FIELDS, partial=True)
    post = _own_post(post_id)
    if post.status not in EDITABLE_STATUSES:
        raise ApiError(f"a {post.status} post cannot be edited", status=409, code="conflict")
    status = data.get("status", post.status)
    scheduled_at = data["scheduled_at"] if "scheduled_at" in data else post.scheduled_at
    errors = _check_schedule(status, scheduled_at) if ("status" in data or "scheduled_at" in data) else {}
    if errors:
        raise ApiError("invalid input", status=422, code="validation_error", fields=errors)
    for key, value in data.items():
        setattr(post, key, value)
    if data.get("status") == "draft":
        # back to draft: pending publications are cancelled (schedule again to re-queue)
        db.session.execute(update(Publication).where(Publication.post_id == post.id,
                                                     Publication.status == "pending")
                           .values(status="cancelled"))
    elif "scheduled_at" in data and data["scheduled_at"] is not None:
        # move pending publications with the post
        for pub in db.session.scalars(select(Publication).where(Publication.post_id == post.id,
                                                                Publication.status == "pending")):
            pub.scheduled_at = pub.next_attempt_at = data["scheduled_at"]
    db.session.commit()
    return jsonify(post.to_dict())


@bp.delete("/posts/<int:post_id>")
@doc("Delete one of my posts (and its pending publications)", tag="content", status=204,
     response_schema="empty", responses={401: "unauthenticated", 404: "not found",
                                         409: "being published right now"})
@login_required
def delete_post(post_id: int):
    post = _own_post(post_id)
    busy = db.session.scalar(select(func.count(Publication.id)).where(
        Publication.post_id == post.id, Publication.status == "publishing"))
    if busy:
        raise ApiError("the post is being published right now; retry shortly", status=409,
                       code="conflict")
    db.session.delete(post)
    db.session.commit()
    return "", 204


@bp.post("/ai/generate")
@doc("Generate a caption and hashtags with the configured AI provider", tag="content",
     body=GENERATE, response_schema="Generation",
     responses={401: "unauthenticated", 402: "monthly AI quota reached",
                403: "plan does not include AI", 502: "AI provider error",
                503: "AI provider unavailable"})
@login_required
def ai_generate():
    data = validate_body(GENERATE)
    user = current_user()
    enforce(user, "ai_generations")
    provider = get_provider()
    try:
        result = provider.generate(data["topic"], data["tone"], data["platform"],
                                   int(get_setting("ai_max_hashtags")))
    except ProviderError as exc:
        AI_REQUESTS.labels(provider.name, "error").inc()
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        raise ApiError(str(exc), status=exc.status,
                       code="ai_unavailable" if exc.status == 503 else "ai_bad_gateway",
                       headers=headers) from None
    AI_REQUESTS.labels(provider.name, "ok").inc()
    db.session.add(UsageEvent(user_id=user.id, kind="ai_generation"))
    db.session.commit()
    return jsonify(caption=result.caption, hashtags=result.hashtags, provider=result.provider)


@bp.get("/plans")
@doc("Active subscription plans (public)", tag="content", response_schema="PlanList")
def list_plans():
    plans = db.session.scalars(select(Plan).where(Plan.active.is_(True))
                               .order_by(Plan.price_cents, Plan.id)).all()
    return jsonify(items=[p.to_dict() for p in plans])
