"""Transactional email: templates -> outbox table -> SMTP worker (``send-email``)."""
from __future__ import annotations

import logging
import smtplib
import ssl
from datetime import timedelta
from email.message import EmailMessage as MimeMessage
from email.utils import make_msgid
from typing import Any

from flask import current_app, render_template
from sqlalchemy import or_, select

from .extensions import db
from .metrics import EMAILS
from .models import EmailMessage
from .timeutil import utcnow

log = logging.getLogger(__name__)
TEMPLATES = ("verify_email", "password_reset", "publish_failed")


def enqueue(to_addr: str, template: str, **context: Any) -> EmailMessage:
    """Render ``templates/email/<template>.{txt,html}`` and queue it (same transaction)."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown email template {template!r}")
    context.setdefault("base_url", current_app.config["BASE_URL"])
    text = render_template(f"email/{template}.txt", **context)
    subject_line, _, body = text.partition("\n")
    if not subject_line.startswith("Subject: "):
        raise ValueError(f"email template {template} must start with 'Subject: '")
    html = render_template(f"email/{template}.html", **context)
    msg = EmailMessage(
        to_addr=to_addr,
        template=template,
        subject=subject_line[len("Subject: "):].strip(),
        body_text=body.lstrip("\n"),
        body_html=html,
        status="queued",
        next_attempt_at=utcnow(),
    )
    db.session.add(msg)
    return msg


def _claim(limit: int, lease_seconds: int = 300) -> list[int]:
    """Claim due messages; ``FOR UPDATE SKIP LOCKED`` lets several hosts run the worker."""
    now = utcnow()
    stmt = (
        select(EmailMessage)
        .where(
            or_(
                (EmailMessage.status == "queued") & (EmailMessage.next_attempt_at <= now),
                (EmailMessage.status == "sending") & (EmailMessage.lease_until < now),
            )
        )
        .order_by(EmailMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = list(db.session.scalars(stmt))
    for row in rows:
        row.status = "sending"
        row.lease_until = now + timedelta(seconds=lease_seconds)
    db.session.commit()
    return [r.id for r in rows]


def _smtp_send(mime: MimeMessage) -> None:
    cfg = current_app.config
    host = cfg["SMTP_HOST"]
    if not host:
        raise RuntimeError("SOCIALSPHERE_SMTP_HOST is not set")
    context = ssl.create_default_context(cafile=cfg.get("SMTP_CA_FILE") or None)
    if cfg["SMTP_SSL"]:
        client: smtplib.SMTP = smtplib.SMTP_SSL(host, cfg["SMTP_PORT"], timeout=cfg["SMTP_TIMEOUT"],
                                                context=context)
    else:
        client = smtplib.SMTP(host, cfg["SMTP_PORT"], timeout=cfg["SMTP_TIMEOUT"])
    with client:
        client.ehlo()
        if cfg["SMTP_STARTTLS"] and not cfg["SMTP_SSL"]:
            client.starttls(context=context)
            client.ehlo()
        if cfg["SMTP_USER"]:
            client.login(cfg["SMTP_USER"], cfg["SMTP_PASSWORD"] or "")
        client.send_message(mime)


def send_pending(limit: int = 50) -> dict[str, int]:
    """Send due messages once; returns counts by outcome."""
    cfg = current_app.config
    counts = {"sent": 0, "retry": 0, "failed": 0}
    for msg_id in _claim(limit):
        msg = db.session.get(EmailMessage, msg_id)
        if msg is None:
            continue
        msg.attempts += 1
        message_id = make_msgid(domain=cfg["BASE_URL"].split("//")[-1].split("/")[0].split(":")[0] or None)
        mime = MimeMessage()
        mime["From"] = cfg["SMTP_FROM"]
        mime["To"] = msg.to_addr
        mime["Subject"] = msg.subject
        mime["Message-ID"] = message_id
        mime.set_content(msg.body_text)
        if msg.body_html:
            mime.add_alternative(msg.body_html, subtype="html")
        try:
            _smtp_send(mime)
        except (TimeoutError, smtplib.SMTPException, OSError, RuntimeError) as exc:
            permanent = isinstance(exc, smtplib.SMTPRecipientsRefused) or (
                isinstance(exc, smtplib.SMTPResponseException) and 500 <= exc.smtp_code < 600
            )
            msg.last_error = f"{type(exc).__name__}: {exc}"[:1000]
            msg.lease_until = None
            if permanent or msg.attempts >= cfg["EMAIL_MAX_ATTEMPTS"]:
                msg.status = "failed"
                counts["failed"] += 1
                EMAILS.labels("failed").inc()
            else:
                msg.status = "queued"
                msg.next_attempt_at = utcnow() + timedelta(seconds=min(3600, 30 * 2 ** (msg.attempts - 1)))
                counts["retry"] += 1
                EMAILS.labels("retry").inc()
            log.warning("email %s to template=%s failed: %s", msg.id, msg.template, type(exc).__name__)
        else:
            msg.status = "sent"
            msg.sent_at = utcnow()
            msg.lease_until = None
            msg.last_error = None
            msg.provider_message_id = message_id
            counts["sent"] += 1
            EMAILS.labels("sent").inc()
        db.session.commit()
    return counts
