"""Login throttling per client address and per account (README "Login throttling").

* Every login attempt is counted *before* the password is checked, with one atomic upsert
  per counter in the database, so all workers and hosts share the counts and concurrent
  attempts cannot slip past a limit: first per client address (``LOGIN_LIMIT_IP``), then,
  if the address is within its limit, per account (``LOGIN_LIMIT_ACCOUNT``).
* The account is the normalized email as typed, whether an account has it or not, so known
  and unknown emails get exactly the same answers (401, then 429) and do the same work.
* Over a limit: 429 ``rate_limited`` + ``Retry-After``, the password is not checked.
* Windows are fixed and start at the first attempt counted after the previous window ended;
  refused attempts do not extend them, so nobody waits longer than one window after the
  last attempt, however many were made (no lockout that grows).
* A successful login deletes the account's counter and takes its attempt back from the
  address's counter: an address counts failed and refused attempts only (a shared NAT
  full of users who type their password right is never throttled).
* The client address is ``request.remote_addr``: the TCP peer, or with
  ``SOCIALSPHERE_TRUSTED_PROXIES`` > 0 the ``X-Forwarded-For`` entry ProxyFix picks; IPv6
  clients are counted per /64 (``ratelimit.client_key``).
* Keys are HMAC-SHA256(``SECRET_KEY``, "ip:<address>" | "account:<email>"): the table
  holds neither emails (nor passwords typed into the email field) nor addresses.
* Rows of ended windows are deleted a few at a time by later attempts (``FOR UPDATE SKIP
  LOCKED`` on PostgreSQL: the clean-up never waits for a lock, so it cannot deadlock).

Lock order, to keep PostgreSQL free of deadlocks: users row, then address row, then account
row; counting commits right away, so a counting transaction never holds two rows long.
"""
from __future__ import annotations

import hashlib
import hmac
import math
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from .extensions import db
from .models import LoginThrottle
from .ratelimit import Limit, client_key
from .timeutil import utcnow

PRUNE_BATCH = 100  # ended windows deleted per attempt


def _key(kind: str, value: str) -> str:
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, f"{kind}:{value}".encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def address_key(remote_addr: str | None) -> str:
    return _key("ip", client_key(remote_addr))


def account_key(email: str) -> str:
    return _key("account", email.strip().lower())


def _limits() -> tuple[Limit, Limit]:
    cfg = current_app.config
    return cfg["LOGIN_LIMIT_IP"], cfg["LOGIN_LIMIT_ACCOUNT"]


def _count(key: str, limit: Limit, now: datetime) -> int:
    """Count one attempt on ``key``; 0 if within ``limit``, else the seconds until its window ends."""
    window = timedelta(seconds=limit.seconds)
    insert = postgresql.insert if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert
    ended = LoginThrottle.window_start <= now - window
    stmt = (
        insert(LoginThrottle).values(key=key, window_start=now, attempts=1)
        .on_conflict_do_update(index_elements=[LoginThrottle.key], set_={
            "attempts": case((ended, 1), else_=LoginThrottle.attempts + 1),
            "window_start": case((ended, now), else_=LoginThrottle.window_start),
        })
        .returning(LoginThrottle.attempts, LoginThrottle.window_start)
    )
    attempts, window_start = db.session.execute(stmt).one()
    if attempts <= limit.count:
        return 0
    return max(1, math.ceil((window_start + window - now).total_seconds()))


def _prune(now: datetime) -> None:
    longest = max((limit.seconds for limit in _limits() if limit.count), default=0)
    ended = (select(LoginThrottle.key).where(LoginThrottle.window_start <= now - timedelta(seconds=longest))
             .limit(PRUNE_BATCH).with_for_update(skip_locked=True))
    db.session.execute(delete(LoginThrottle).where(LoginThrottle.key.in_(ended)))


def attempt(email: str, remote_addr: str | None) -> int:
    """Count a login attempt (committed at once); 0 if it may proceed, else Retry-After seconds."""
    by_ip, by_account = _limits()
    now = utcnow()
    retry_after = 0
    if by_ip.count:
        retry_after = _count(address_key(remote_addr), by_ip, now)
        db.session.commit()
    if not retry_after and by_account.count:
        retry_after = _count(account_key(email), by_account, now)
        db.session.commit()
    if by_ip.count or by_account.count:
        _prune(now)
        db.session.commit()
    return retry_after


def succeeded(email: str, remote_addr: str | None) -> None:
    """A correct password: the address gets its attempt back, the account's count is cleared
    (in the caller's transaction)."""
    if _limits()[0].count:
        db.session.execute(update(LoginThrottle)
                           .where(LoginThrottle.key == address_key(remote_addr), LoginThrottle.attempts > 0)
                           .values(attempts=LoginThrottle.attempts - 1))
    clear_account(email)


def clear_account(email: str) -> None:
    """Forget the account's attempts (successful login, password reset, admin reactivation)."""
    db.session.execute(delete(LoginThrottle).where(LoginThrottle.key == account_key(email)))


def account_state(email: str) -> tuple[int, bool]:
    """(attempts in the account's current window, whether the next attempt would be refused)."""
    limit = _limits()[1]
    row = db.session.get(LoginThrottle, account_key(email))
    if not limit.count or row is None or row.window_start <= utcnow() - timedelta(seconds=limit.seconds):
        return 0, False
    return row.attempts, row.attempts >= limit.count
