"""Social API: connected accounts (tokens encrypted at rest) and scheduling."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import func, select

from ..apidoc import doc
from ..errors import ApiError, not_found
from ..extensions import db
from ..models import ADAPTERS, PLATFORMS, Post, Publication, SocialAccount
from ..publisher import check_webhook_target
from ..security import current_user, encrypt_secret, login_required
from ..settings import get_setting
from ..subscriptions import enforce
from ..timeutil import utcnow
from ..validation import Field, validate_body

bp = Blueprint("social", __name__)

ACCOUNT = {
    "platform": Field("string", required=True, choices=PLATFORMS),
    "handle": Field("string", required=True, min_length=1, max_length=100),
    "access_token": Field("password", required=True, min_length=1, max_length=4096,
                          description="stored encrypted, never returned"),
    "adapter": Field("string", choices=ADAPTERS, default="log"),
    "webhook_url": Field("url", nullable=True, max_length=2000, default=None),
}
SCHEDULE = {
    "account_ids": Field("array", required=True, items=Field("integer", minimum=1), max_items=50,
                         unique=True),
    "scheduled_at": Field("datetime", required=True),
}


@bp.get("/accounts")
@doc("My connected social accounts (tokens are never returned)", tag="social",
     response_schema="AccountList", responses={401: "unauthenticated"})
@login_required
def list_accounts():
    rows = db.session.scalars(select(SocialAccount).where(SocialAccount.user_id == current_user().id)
                              .order_by(SocialAccount.id)).all()
    return jsonify(items=[a.to_dict() for a in rows])


@bp.post("/accounts")
@doc("Connect a social account", tag="social", body=ACCOUNT, status=201,
     response_schema="Account",
     responses={401: "unauthenticated", 402: "account quota reached",
                403: "plan does not include accounts"})
@login_required
def create_account():
    data = validate_body(ACCOUNT)
    if data["adapter"] == "webhook":
        if not data["webhook_url"]:
            raise ApiError("invalid input", status=422, code="validation_error",
                           fields={"webhook_url": "is required for the webhook adapter"})
        try:
            check_webhook_target(data["webhook_url"], current_app.config["WEBHOOK_ALLOW_PRIVATE"])
        except ValueError as exc:
            raise ApiError("invalid input", status=422, code="validation_error",
                           fields={"webhook_url": str(exc)}) from None
    elif data["webhook_url"]:
        raise ApiError("invalid input", status=422, code="validation_error",
                       fields={"webhook_url": "only allowed with the webhook adapter"})
    user = current_user()
    enforce(user, "accounts")
    account = SocialAccount(user_id=user.id, platform=data["platform"], handle=data["handle"],
                            adapter=data["adapter"], webhook_url=data["webhook_url"],
                            token_encrypted=encrypt_secret(data["access_token"]))
    db.session.add(account)
    db.session.commit()
    return jsonify(account.to_dict()), 201


@bp.delete("/accounts/<int:account_id>")
@doc("Disconnect a social account (its pending publications are removed)", tag="social",
     status=204, response_schema="empty",
     responses={401: "unauthenticated", 404: "not found", 409: "being published right now"})
@login_required
def delete_account(account_id: int):
    account = db.session.get(SocialAccount, account_id)
    if account is None or account.user_id != current_user().id:
        raise not_found("account")
    busy = db.session.scalar(select(func.count(Publication.id)).where(
        Publication.account_id == account.id, Publication.status == "publishing"))
    if busy:
        raise ApiError("a post is being published to this account right now; retry shortly",
                       status=409, code="conflict")
    db.session.delete(account)
    db.session.commit()
    return "", 204


def _own_post(post_id: int) -> Post:
    post = db.session.get(Post, post_id)
    if post is None or post.user_id != current_user().id:
        raise not_found("post")
    return post


@bp.post("/posts/<int:post_id>/schedule")
@doc("Schedule a post to connected accounts", tag="social", body=SCHEDULE, status=201,
     response_schema="PublicationList",
     responses={401: "unauthenticated", 403: "email not verified", 404: "post not found",
                409: "already published or scheduled to that account"})
@login_required
def schedule_post(post_id: int):
    data = validate_body(SCHEDULE)
    user = current_user()
    post = _own_post(post_id)
    if not data["account_ids"]:
        raise ApiError("invalid input", status=422, code="validation_error",
                       fields={"account_ids": "must not be empty"})
    if data["scheduled_at"] <= utcnow():
        raise ApiError("invalid input", status=422, code="validation_error",
                       fields={"scheduled_at": "must be in the future"})
    if get_setting("require_email_verification") and user.email_verified_at is None:
        raise ApiError("verify your email address before scheduling", status=403,
                       code="email_not_verified")
    if post.status not in ("draft", "scheduled"):
        raise ApiError(f"a {post.status} post cannot be scheduled", status=409, code="conflict")
    accounts = db.session.scalars(select(SocialAccount).where(
        SocialAccount.id.in_(data["account_ids"]), SocialAccount.user_id == user.id)).all()
    found = {a.id for a in accounts}
    missing = [i for i in data["account_ids"] if i not in found]
    if missing:
        raise ApiError("invalid input", status=422, code="validation_error",
                       fields={"account_ids": f"unknown account(s): {missing}"})
    existing = set(db.session.scalars(select(Publication.account_id).where(
        Publication.post_id == post.id, Publication.account_id.in_(found),
        Publication.status.in_(("pending", "publishing", "published")))))
    if existing:
        raise ApiError(f"already scheduled to account(s) {sorted(existing)}", status=409,
                       code="conflict")
    created = []
    for account in accounts:
        old = db.session.scalar(select(Publication).where(Publication.post_id == post.id,
                                                          Publication.account_id == account.id))
        if old is not None:  # failed/cancelled before: schedule again
            db.session.delete(old)
            db.session.flush()
        pub = Publication(post_id=post.id, account_id=account.id, status="pending",
                          scheduled_at=data["scheduled_at"], next_attempt_at=data["scheduled_at"])
        db.session.add(pub)
        created.append(pub)
        if account.platform not in post.platforms:
            post.platforms = [*post.platforms, account.platform]
    post.status = "scheduled"
    post.scheduled_at = data["scheduled_at"]
    db.session.commit()
    return jsonify(publications=[p.to_dict() for p in created]), 201


@bp.get("/posts/<int:post_id>/publications")
@doc("Publications of a post with every attempt and its outcome", tag="social",
     response_schema="PublicationList", responses={401: "unauthenticated", 404: "not found"})
@login_required
def list_publications(post_id: int):
    post = _own_post(post_id)
    rows = db.session.scalars(select(Publication).where(Publication.post_id == post.id)
                              .order_by(Publication.id)).all()
    return jsonify(publications=[p.to_dict() for p in rows])
