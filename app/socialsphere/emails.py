"""Transactional email: templates -> outbox table -> SMTP worker (``send-email``)."""
from __future__ import annotations

import json
import logging
import re
import secrets
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
from .security import decrypt_secret, encrypt_secret
from .timeutil import utcnow

log = logging.getLogger(__name__)
TEMPLATES = ("verify_email", "password_reset", "publish_failed")
# templates whose links carry a one-time token (a mail of an earlier release has it in clear)
TOKEN_TEMPLATES = ("verify_email", "password_reset")
# the link's token in a mail queued before secrets were kept apart (scrubbed once it is sent)
_CLEAR_TOKEN = re.compile(r"(\?token=)[A-Za-z0-9_-]+")


def enqueue(to_addr: str, template: str, *, token: str | None = None, **context: Any) -> EmailMessage:
    """Render ``templates/email/<template>.{txt,html}`` and queue it (same transaction).

    A one-time ``token`` never reaches the outbox in clear: the templates are rendered with a
    random placeholder in its place, and the token is stored Fernet-encrypted (the social
    tokens' key, ``TOKEN_ENCRYPTION_KEY``) with that placeholder in ``secret_encrypted``.  The
    worker puts it back into the message it sends (:func:`render_for_sending`) and deletes it
    once the message is sent."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown email template {template!r}")
    context.setdefault("base_url", current_app.config["BASE_URL"])
    secret = None
    if token is not None:
        # random, so that nothing the user controls (the name in the mail) can match it
        context["token"] = placeholder = f"redacted-{secrets.token_hex(8)}"
        secret = encrypt_secret(json.dumps({"placeholder": placeholder, "token": token}))
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
        secret_encrypted=secret,
        status="queued",
        next_attempt_at=utcnow(),
    )
    db.session.add(msg)
    return msg


def render_for_sending(msg: EmailMessage) -> tuple[str, str | None]:
    """The text and HTML bodies as they are sent: the stored ones with the decrypted token in
    place of its placeholder.  RuntimeError if the secret cannot be decrypted."""
    text, html = msg.body_text, msg.body_html
    if msg.secret_encrypted:
        secret = json.loads(decrypt_secret(msg.secret_encrypted))
        text = text.replace(secret["placeholder"], secret["token"])
        html = html.replace(secret["placeholder"], secret["token"]) if html is not None else None
    return text, html


def _forget_secret(msg: EmailMessage) -> None:
    """After sending: no usable token stays at rest.  The encrypted token is deleted; a mail
    queued by an earlier release (token in clear in the bodies) has its links redacted."""
    if msg.secret_encrypted:
        msg.secret_encrypted = None
    elif msg.template in TOKEN_TEMPLATES:
        msg.body_text = _CLEAR_TOKEN.sub(r"\1redacted", msg.body_text)
        if msg.body_html is not None:
            msg.body_html = _CLEAR_TOKEN.sub(r"\1redacted", msg.body_html)


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
        try:
            text, html = render_for_sending(msg)
            mime = MimeMessage()
            mime["From"] = cfg["SMTP_FROM"]
            mime["To"] = msg.to_addr
            mime["Subject"] = msg.subject
            mime["Message-ID"] = message_id
            mime.set_content(text)
            if html:
                mime.add_alternative(html, subtype="html")
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
            _forget_secret(msg)
            counts["sent"] += 1
            EMAILS.labels("sent").inc()
        db.session.commit()
    return counts
