"""Plans and quotas.  Plan limit NULL = unlimited, 0 = not in the plan (403),
limit reached = 402 Payment Required with the usage and the limit."""
from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from .errors import ApiError
from .extensions import db
from .models import Plan, Post, SocialAccount, Subscription, UsageEvent, User
from .settings import get_setting
from .timeutil import iso, month_start

DEFAULT_PLANS = [
    {"code": "free", "name": "Free", "price_cents": 0, "posts_per_month": 30,
     "ai_generations_per_month": 20, "connected_accounts": 2},
    {"code": "pro", "name": "Pro", "price_cents": 1900, "posts_per_month": 500,
     "ai_generations_per_month": 500, "connected_accounts": 10},
    {"code": "business", "name": "Business", "price_cents": 9900, "posts_per_month": None,
     "ai_generations_per_month": 5000, "connected_accounts": 50},
]

KIND_LABEL = {"posts": "posts this month", "ai_generations": "AI generations this month",
              "accounts": "connected accounts"}


def ensure_default_plans() -> None:
    for data in DEFAULT_PLANS:
        if db.session.scalar(select(Plan).where(Plan.code == data["code"])) is None:
            db.session.add(Plan(**data))
    db.session.flush()


def default_plan() -> Plan:
    code = get_setting("default_plan")
    plan = db.session.scalar(select(Plan).where(Plan.code == code))
    if plan is None:
        plan = db.session.scalar(select(Plan).where(Plan.active.is_(True)).order_by(Plan.price_cents, Plan.id))
    if plan is None:
        ensure_default_plans()
        plan = db.session.scalar(select(Plan).where(Plan.code == "free"))
    assert plan is not None
    return plan


def subscribe(user: User, plan: Plan | None = None) -> Subscription:
    plan = plan or default_plan()
    if user.subscription is None:
        user.subscription = Subscription(plan=plan)
    else:
        user.subscription.plan = plan
    return user.subscription


def plan_for(user: User) -> Plan:
    if user.subscription is None:
        subscribe(user)
        db.session.flush()
    assert user.subscription is not None
    return user.subscription.plan


def _count(user: User, kind: str) -> int:
    start = month_start()
    if kind == "posts":
        stmt = select(func.count(Post.id)).where(Post.user_id == user.id, Post.created_at >= start)
    elif kind == "ai_generations":
        stmt = select(func.count(UsageEvent.id)).where(
            UsageEvent.user_id == user.id, UsageEvent.kind == "ai_generation",
            UsageEvent.created_at >= start,
        )
    else:
        stmt = select(func.count(SocialAccount.id)).where(SocialAccount.user_id == user.id)
    return db.session.scalar(stmt) or 0


def usage(user: User) -> dict[str, int]:
    return {kind: _count(user, kind) for kind in ("posts", "ai_generations", "accounts")}


def enforce(user: User, kind: str) -> None:
    plan = plan_for(user)
    limit = plan.limits()[kind]
    if limit is None:
        return
    if limit == 0:
        raise ApiError(f"your plan ({plan.code}) does not include {KIND_LABEL[kind]}",
                       status=403, code="plan_feature_unavailable")
    used = _count(user, kind)
    if used >= limit:
        raise ApiError(
            f"quota exceeded: {used}/{limit} {KIND_LABEL[kind]} on plan {plan.code}; upgrade your plan",
            status=402, code="quota_exceeded",
        )


def summary(user: User) -> dict[str, Any]:
    plan = plan_for(user)
    assert user.subscription is not None
    return {
        "plan": plan.to_dict(),
        "period_start": iso(month_start()),
        "started_at": iso(user.subscription.started_at),
        "usage": usage(user),
        "limits": plan.limits(),
    }
