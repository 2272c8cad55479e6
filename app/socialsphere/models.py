"""Database models (SQLAlchemy 2 typed declarative)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    exists,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.sql.elements import ColumnElement

from .extensions import db
from .timeutil import iso, utcnow

# BigInteger primary keys on PostgreSQL, INTEGER (rowid alias) on SQLite.
PK = BigInteger().with_variant(Integer(), "sqlite")
MAX_ID = 2**63 - 1  # largest id both can hold; bigger ids (URL, token subject) are "not found"

ROLES = ("user", "admin")
USER_STATUSES = ("active", "suspended")
POST_STATUSES = ("draft", "scheduled", "published", "failed")
PLATFORMS = ("twitter", "linkedin", "facebook", "instagram", "mastodon", "webhook")
TONES = ("professional", "casual", "enthusiastic", "informative", "witty")
ADAPTERS = ("webhook", "log")
PUBLICATION_STATUSES = ("pending", "publishing", "published", "failed", "cancelled")
EMAIL_STATUSES = ("queued", "sending", "sent", "failed")


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)


class User(TimestampMixin, db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(PK, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    role: Mapped[str] = mapped_column(String(16), default="user", nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False)
    email_verified_at: Mapped[datetime | None] = mapped_column(DateTime)
    # unused since login throttling moved to login_throttles (migration 0003); kept so the
    # previous release keeps working during a deploy (expand/contract), to be dropped later
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)
    # access tokens issued before this instant are refused (logout-all, admin revoke, suspension)
    sessions_revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime, default=utcnow, onupdate=utcnow, nullable=False
    )

    subscription: Mapped[Subscription | None] = relationship(
        back_populates="user", uselist=False, cascade="all, delete-orphan"
    )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "role": self.role,
            "status": self.status,
            "email_verified": self.email_verified_at is not None,
            "created_at": iso(self.created_at),
            "last_login_at": iso(self.last_login_at),
        }


class RefreshToken(db.Model):
    """A refresh token, stored as SHA-256 of the random value.  Tokens of one login
    form a family (the login session, ``sid`` of its access tokens); presenting a token
    already rotated revokes the whole family."""

    __tablename__ = "refresh_tokens"
    # serves family lookups and the per-request "is this session revoked" probes (family_live)
    __table_args__ = (Index("ix_refresh_tokens_family_revoked", "family_id", "revoked_at"),)
    id: Mapped[int] = mapped_column(PK, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    family_id: Mapped[str] = mapped_column(String(32), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    user_agent: Mapped[str | None] = mapped_column(String(255))

    @classmethod
    def family_live(cls, family_id: str) -> ColumnElement[bool]:
        """SQL truth value: the session ``family_id`` is alive, i.e. it has a token not revoked
        and none revoked.  Revocation marks every token of the family, but a refresh racing it
        may insert one more unrevoked token: any revoked token keeps the family dead.  Two
        index probes on ix_refresh_tokens_family_revoked, whatever the family's length."""
        live = exists().where(cls.family_id == family_id, cls.revoked_at.is_(None))
        revoked = exists().where(cls.family_id == family_id, cls.revoked_at.is_not(None))
        return and_(live, ~revoked)


class LoginThrottle(db.Model):
    """Login attempts in the current window of one client address or one account (email),
    whether the account exists or not (``login_throttle.py``).  ``key`` is an HMAC of the
    address or email: the table never holds either."""

    __tablename__ = "login_throttles"
    __table_args__ = (Index("ix_login_throttles_window_start", "window_start"),)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False)


class OneTimeToken(db.Model):
    """Email verification and password reset tokens (hashed)."""

    __tablename__ = "one_time_tokens"
    id: Mapped[int] = mapped_column(PK, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    purpose: Mapped[str] = mapped_column(String(32), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime)


class Plan(TimestampMixin, db.Model):
    """Quotas: NULL = unlimited, 0 = feature not in the plan (403)."""

    __tablename__ = "plans"
    id: Mapped[int] = mapped_column(PK, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    price_cents: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    posts_per_month: Mapped[int | None] = mapped_column(Integer)
    ai_generations_per_month: Mapped[int | None] = mapped_column(Integer)
    connected_accounts: Mapped[int | None] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)

    def limits(self) -> dict[str, int | None]:
        return {
            "posts": self.posts_per_month,
            "ai_generations": self.ai_generations_per_month,
            "accounts": self.connected_accounts,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "code": self.code,
            "name": self.name,
            "price_cents": self.price_cents,
            "posts_per_month": self.posts_per_month,
            "ai_generations_per_month": self.ai_generations_per_month,
            "connected_accounts": self.connected_accounts,
            "active": self.active,
        }


class Subscription(TimestampMixin, db.Model):
    __tablename__ = "subscriptions"
    id: Mapped[int] = mapped_column(PK, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), unique=True, nullable=False
    )
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id"), nullable=False, index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)

    user: Mapped[User] = relationship(back_populates="subscription")
    plan: Mapped[Plan] = relationship()


class UsageEvent(db.Model):
    """Metered usage (AI generations) for monthly quotas."""

    __tablename__ = "usage_events"
    __table_args__ = (Index("ix_usage_events_user_kind_time", "user_id", "kind", "created_at"),)
    id: Mapped[int] = mapped_column(PK, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)


class Post(TimestampMixin, db.Model):
    __tablename__ = "posts"
    __table_args__ = (Index("ix_posts_user_created", "user_id", "created_at"),)
    id: Mapped[int] = mapped_column(PK, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    title: Mapped[str | None] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="draft", nullable=False)
    platforms: Mapped[list[str]] = mapped_column(JSON, default=list, nullable=False)
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime)
    published_at: Mapped[datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime, default=utcnow, onupdate=utcnow, nullable=False
    )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "body": self.body,
            "status": self.status,
            "platforms": list(self.platforms or []),
            "scheduled_at": iso(self.scheduled_at),
            "published_at": iso(self.published_at),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


class SocialAccount(TimestampMixin, db.Model):
    __tablename__ = "social_accounts"
    id: Mapped[int] = mapped_column(PK, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    platform: Mapped[str] = mapped_column(String(16), nullable=False)
    handle: Mapped[str] = mapped_column(String(100), nullable=False)
    adapter: Mapped[str] = mapped_column(String(16), nullable=False)
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    token_encrypted: Mapped[str] = mapped_column(Text, nullable=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "platform": self.platform,
            "handle": self.handle,
            "adapter": self.adapter,
            "webhook_url": self.webhook_url,
            "created_at": iso(self.created_at),
        }


class Publication(TimestampMixin, db.Model):
    """One post going to one account, published by the worker when due."""

    __tablename__ = "publications"
    __table_args__ = (
        Index("ix_publications_due", "status", "next_attempt_at"),
        UniqueConstraint("post_id", "account_id", name="uq_publications_post_account"),
    )
    id: Mapped[int] = mapped_column(PK, primary_key=True)
    post_id: Mapped[int] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), nullable=False, index=True
    )
    account_id: Mapped[int] = mapped_column(
        ForeignKey("social_accounts.id", ondelete="CASCADE"), nullable=False, index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="pending", nullable=False)
    scheduled_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    attempts_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    published_at: Mapped[datetime | None] = mapped_column(DateTime)
    external_id: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(String(1000))

    post: Mapped[Post] = relationship()
    account: Mapped[SocialAccount] = relationship()
    attempts: Mapped[list[PublicationAttempt]] = relationship(
        back_populates="publication",
        order_by="PublicationAttempt.number",
        cascade="all, delete-orphan",
    )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "post_id": self.post_id,
            "account_id": self.account_id,
            "status": self.status,
            "scheduled_at": iso(self.scheduled_at),
            "next_attempt_at": iso(self.next_attempt_at) if self.status == "pending" else None,
            "published_at": iso(self.published_at),
            "external_id": self.external_id,
            "last_error": self.last_error,
            "attempts": [a.to_dict() for a in self.attempts],
        }


class PublicationAttempt(db.Model):
    __tablename__ = "publication_attempts"
    __table_args__ = (
        UniqueConstraint("publication_id", "number", name="uq_publication_attempts_number"),
    )
    id: Mapped[int] = mapped_column(PK, primary_key=True)
    publication_id: Mapped[int] = mapped_column(
        ForeignKey("publications.id", ondelete="CASCADE"), nullable=False
    )
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    started_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)  # success|retry|failed
    detail: Mapped[str | None] = mapped_column(String(1000))
    http_status: Mapped[int | None] = mapped_column(Integer)
    worker: Mapped[str | None] = mapped_column(String(100))

    publication: Mapped[Publication] = relationship(back_populates="attempts")

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "outcome": self.outcome,
            "detail": self.detail,
            "http_status": self.http_status,
        }


class Setting(db.Model):
    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class AuditLog(db.Model):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_created", "created_at"),)
    id: Mapped[int] = mapped_column(PK, primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    action: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)
    ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "actor_id": self.actor_id,
            "action": self.action,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "details": self.details,
            "ip": self.ip,
            "request_id": self.request_id,
            "created_at": iso(self.created_at),
        }


class EmailMessage(db.Model):
    """Email outbox: rendered at enqueue time, sent by the send-email worker.  Holds no
    one-time token in clear (``secret_encrypted``)."""

    __tablename__ = "email_outbox"
    __table_args__ = (Index("ix_email_outbox_due", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(PK, primary_key=True)
    to_addr: Mapped[str] = mapped_column(String(254), nullable=False)
    template: Mapped[str] = mapped_column(String(64), nullable=False)
    subject: Mapped[str] = mapped_column(String(255), nullable=False)
    body_text: Mapped[str] = mapped_column(Text, nullable=False)
    body_html: Mapped[str | None] = mapped_column(Text)
    # the one-time token of the bodies' links, Fernet-encrypted with its placeholder (the bodies
    # never hold it); deleted once the mail is sent (emails.py)
    secret_encrypted: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="queued", nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
