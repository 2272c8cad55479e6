"""Publisher worker: publishes due publications through adapters.

Safe with several app hosts running ``publish-due`` at once: due rows are claimed
with ``SELECT ... FOR UPDATE SKIP LOCKED`` and leased (status ``publishing`` +
``lease_until``) in a short transaction, then published outside any lock.  A
crashed worker's lease expires and the row is retried.  Every attempt is
recorded in ``publication_attempts``.
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import os
import socket
import ssl
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import func, or_, select

from .emails import enqueue
from .extensions import db
from .metrics import PUBLICATIONS
from .models import Post, Publication, PublicationAttempt, SocialAccount, User
from .security import decrypt_secret
from .timeutil import iso, utcnow

log = logging.getLogger(__name__)
LEASE = timedelta(minutes=5)
# one socket.getaddrinfo() entry: (family, type, proto, canonname, sockaddr)
AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]


@dataclass
class Result:
    ok: bool
    retryable: bool = True
    detail: str | None = None
    http_status: int | None = None
    external_id: str | None = None


def _target(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a webhook URL; ValueError unless http(s) with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("webhook URL must be http(s)")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError("webhook URL has an invalid port") from None
    return parts.scheme, parts.hostname, port


class UnresolvableTarget(ValueError):
    """The webhook host does not resolve (now): worth retrying, unlike a refused address."""


def resolve_webhook_target(url: str, allow_private: bool) -> list[AddrInfo]:
    """Resolve the webhook host once and check every address it resolves to.

    The publisher connects to exactly these addresses (``_PinnedHTTPConnection``), never
    resolving the name again: a name that resolves to a public address now and to a private
    one a moment later (DNS rebinding) cannot get past the check.  Any non-public address
    (private, loopback, link-local, reserved...) among them refuses the target, unless
    ``allow_private``."""
    _scheme, host, port = _target(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except OSError:
        raise UnresolvableTarget("webhook host does not resolve") from None
    if not infos:
        raise UnresolvableTarget("webhook host does not resolve")
    if not allow_private:
        for info in infos:
            if not ipaddress.ip_address(info[4][0]).is_global:
                raise ValueError("webhook URL points to a non-public address")
    return infos


def check_webhook_target(url: str, allow_private: bool) -> None:
    """Refuse webhooks to private, loopback, link-local... addresses unless allowed (when an
    account is connected; the publisher checks again, on the addresses it connects to)."""
    _target(url)
    if not allow_private:
        resolve_webhook_target(url, allow_private)


def _connect(addresses: list[AddrInfo], timeout: float) -> socket.socket:
    """A TCP connection to the first of ``addresses`` that answers (no name resolution)."""
    error: OSError = OSError("webhook host has no address")
    for family, kind, proto, _canonname, sockaddr in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to addresses resolved and checked beforehand; ``Host`` is still the URL's host."""

    def __init__(self, host: str, port: int, addresses: list[AddrInfo], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._addresses = addresses

    def connect(self) -> None:
        self.sock = _connect(self._addresses, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to addresses resolved and checked beforehand; SNI and certificate verification
    (system CAs, hostname checked) are for the URL's host, not for the address."""

    def __init__(self, host: str, port: int, addresses: list[AddrInfo], timeout: float) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self._tls)
        self._addresses = addresses

    def connect(self) -> None:
        sock = _connect(self._addresses, self.timeout)
        try:
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def webhook_adapter(pub: Publication, post: Post, account: SocialAccount) -> Result:
    cfg = current_app.config
    url = account.webhook_url or ""
    try:
        addresses = resolve_webhook_target(url, cfg["WEBHOOK_ALLOW_PRIVATE"])
    except UnresolvableTarget as exc:
        return Result(False, retryable=True, detail=str(exc))
    except ValueError as exc:
        return Result(False, retryable=False, detail=str(exc))
    scheme, host, port = _target(url)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    token = decrypt_secret(account.token_encrypted)
    payload = json.dumps({
        "publication_id": pub.id,
        "post": {"id": post.id, "title": post.title, "body": post.body,
                 "platforms": post.platforms},
        "account": {"platform": account.platform, "handle": account.handle},
        "scheduled_at": iso(pub.scheduled_at),
    }).encode()
    signature = hmac.new(token.encode(), payload, hashlib.sha256).hexdigest()
    connection_class = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    conn = connection_class(host, port, addresses, cfg["WEBHOOK_TIMEOUT"])
    try:
        # http.client follows no redirects (SSRF): a 3xx is a failed attempt like any non-2xx
        conn.request("POST", path, body=payload, headers={
            "Content-Type": "application/json",
            "User-Agent": "SocialSphere-Publisher/1.0",
            "Authorization": f"Bearer {token}",
            "X-SocialSphere-Signature": f"sha256={signature}",
            "Idempotency-Key": f"publication-{pub.id}",
        })
        resp = conn.getresponse()
        status = resp.status
        body = resp.read(65536)
    except TimeoutError:
        return Result(False, retryable=True, detail="timeout")
    except (OSError, http.client.HTTPException) as exc:
        return Result(False, retryable=True, detail=f"connection error: {type(exc).__name__}")
    finally:
        conn.close()
    if not 200 <= status < 300:
        retryable = status >= 500 or status in (408, 429)
        return Result(False, retryable=retryable, detail=f"HTTP {status}", http_status=status)
    external_id = None
    try:
        parsed = json.loads(body or b"null")
        if isinstance(parsed, dict) and parsed.get("id") is not None:
            external_id = str(parsed["id"])[:255]
    except ValueError:
        pass
    return Result(True, detail=f"HTTP {status}", http_status=status, external_id=external_id)


def log_adapter(pub: Publication, post: Post, account: SocialAccount) -> Result:
    """Dry run: log what would be published."""
    log.info("publish (dry run)", extra={"publication_id": pub.id, "post_id": post.id,
                                         "platform": account.platform, "handle": account.handle})
    return Result(True, detail="logged (dry run)", external_id=f"log-{pub.id}")


ADAPTERS = {"webhook": webhook_adapter, "log": log_adapter}


def claim_due(limit: int) -> list[int]:
    now = utcnow()
    stmt = (
        select(Publication)
        .where(or_(
            (Publication.status == "pending") & (Publication.next_attempt_at <= now),
            (Publication.status == "publishing") & (Publication.lease_until < now),
        ))
        .order_by(Publication.next_attempt_at, Publication.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = list(db.session.scalars(stmt))
    for row in rows:
        row.status = "publishing"
        row.lease_until = now + LEASE
    db.session.commit()
    return [r.id for r in rows]


def _refresh_post_status(post: Post) -> None:
    statuses = set(db.session.scalars(select(Publication.status).where(Publication.post_id == post.id)))
    if not statuses or statuses & {"pending", "publishing"}:
        return
    if "published" in statuses:
        post.status = "published"
        post.published_at = db.session.scalar(
            select(func.max(Publication.published_at)).where(Publication.post_id == post.id))
    elif "failed" in statuses:
        post.status = "failed"


def publish_one(pub_id: int, worker: str) -> str:
    cfg = current_app.config
    pub = db.session.get(Publication, pub_id)
    if pub is None or pub.status != "publishing":
        return "skipped"
    post = db.session.get(Post, pub.post_id)
    account = db.session.get(SocialAccount, pub.account_id)
    if post is None or account is None:  # deleted meanwhile (ON DELETE CASCADE)
        db.session.rollback()
        return "skipped"
    number = pub.attempts_count + 1
    started = utcnow()
    adapter = ADAPTERS.get(account.adapter)
    try:
        result = adapter(pub, post, account) if adapter else Result(False, False, "unknown adapter")
    except Exception as exc:  # an adapter bug must not kill the worker loop
        log.exception("adapter crashed")
        result = Result(False, retryable=True, detail=f"adapter error: {type(exc).__name__}")
    pub.attempts_count = number
    pub.lease_until = None
    if result.ok:
        outcome = "success"
        pub.status = "published"
        pub.published_at = utcnow()
        pub.external_id = result.external_id
        pub.last_error = None
    elif result.retryable and number < cfg["PUBLISH_MAX_ATTEMPTS"]:
        outcome = "retry"
        pub.status = "pending"
        pub.next_attempt_at = utcnow() + timedelta(seconds=min(3600, 30 * 2 ** (number - 1)))
        pub.last_error = result.detail
    else:
        outcome = "failed"
        pub.status = "failed"
        pub.last_error = result.detail
        owner = db.session.get(User, post.user_id)
        if owner is not None:
            enqueue(owner.email, "publish_failed", name=owner.name,
                    title=post.title or post.body[:40], platform=account.platform,
                    handle=account.handle, attempts=number, error=result.detail or "unknown")
    db.session.add(PublicationAttempt(
        publication_id=pub.id, number=number, started_at=started, finished_at=utcnow(),
        outcome=outcome, detail=(result.detail or "")[:1000] or None,
        http_status=result.http_status, worker=worker[:100],
    ))
    _refresh_post_status(post)
    db.session.commit()
    PUBLICATIONS.labels(outcome).inc()
    return outcome


def publish_due(limit: int = 50, worker: str | None = None) -> dict[str, int]:
    worker = worker or f"{socket.gethostname()}:{os.getpid()}"
    counts = {"success": 0, "retry": 0, "failed": 0, "skipped": 0}
    for pub_id in claim_due(limit):
        counts[publish_one(pub_id, worker)] += 1
    return counts
