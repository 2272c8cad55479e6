"""Email outbox + SMTP worker against a real SMTP server (aiosmtpd) on 127.0.0.1."""
import datetime as dt
import ssl

import pytest
from conftest import _free_port, create_user
from sqlalchemy import select, update


class Recorder:
    def __init__(self):
        self.messages = []
        self.reject = False

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.reject:
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content.decode()))
        return "250 Message accepted"


def _self_signed(tmp_path):
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture
def smtp_server(request, tmp_path):
    from aiosmtpd.controller import Controller

    handler = Recorder()
    tls = getattr(request, "param", False)
    kwargs = {}
    cafile = None
    if tls:
        cafile, keyfile = _self_signed(tmp_path)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cafile, keyfile)
        kwargs = {"tls_context": ctx, "require_starttls": True}
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    handler.port = port
    handler.cafile = cafile
    yield handler
    controller.stop()


def _app(make_app, smtp, starttls=False, **kw):
    return make_app(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port, SMTP_STARTTLS=starttls,
                    SMTP_CA_FILE=smtp.cafile, SMTP_FROM="SocialSphere <noreply@socialsphere.test>",
                    SMTP_TIMEOUT=5.0, **kw)


def _register(app, email="carol@example.com"):
    r = app.test_client().post("/api/v1/auth/register", json={"email": email, "password": "long enough pw", "name": "Carol"})
    assert r.status_code == 201


def test_send_verification_email(make_app, smtp_server):
    from socialsphere.emails import send_pending
    from socialsphere.extensions import db
    from socialsphere.models import EmailMessage

    app = _app(make_app, smtp_server)
    _register(app)
    with app.app_context():
        assert send_pending() == {"sent": 1, "retry": 0, "failed": 0}
        msg = db.session.scalars(select(EmailMessage)).one()
        assert msg.status == "sent" and msg.attempts == 1 and msg.sent_at
        assert msg.provider_message_id.startswith("<") and "socialsphere.test" in msg.provider_message_id
        assert send_pending() == {"sent": 0, "retry": 0, "failed": 0}
    mail_from, rcpts, content = smtp_server.messages[0]
    assert rcpts == ["carol@example.com"]
    assert "Subject: Confirm your SocialSphere AI email address" in content
    assert "https://socialsphere.test/verify-email?token=" in content
    assert "text/html" in content


@pytest.mark.parametrize("smtp_server", [True], indirect=True)
def test_send_with_starttls(make_app, smtp_server):
    from socialsphere.emails import send_pending

    app = _app(make_app, smtp_server, starttls=True)
    _register(app)
    with app.app_context():
        assert send_pending()["sent"] == 1
    assert len(smtp_server.messages) == 1


@pytest.mark.parametrize("smtp_server", [True], indirect=True)
def test_starttls_untrusted_certificate_fails(make_app, smtp_server):
    from socialsphere.emails import send_pending

    smtp_server.cafile = None  # do not trust the self-signed certificate
    app = _app(make_app, smtp_server, starttls=True)
    _register(app)
    with app.app_context():
        assert send_pending()["retry"] == 1
    assert smtp_server.messages == []


def test_smtp_down_retries_then_fails(make_app):
    from socialsphere.emails import send_pending
    from socialsphere.extensions import db
    from socialsphere.models import EmailMessage
    from socialsphere.timeutil import utcnow

    app = make_app(SMTP_HOST="127.0.0.1", SMTP_PORT=_free_port(), SMTP_STARTTLS=False, EMAIL_MAX_ATTEMPTS=2,
                   SMTP_TIMEOUT=2.0)
    _register(app)
    with app.app_context():
        assert send_pending() == {"sent": 0, "retry": 1, "failed": 0}
        msg = db.session.scalars(select(EmailMessage)).one()
        assert msg.status == "queued" and msg.last_error and msg.next_attempt_at > utcnow()
        assert send_pending()["retry"] == 0  # backoff
        db.session.execute(update(EmailMessage).values(next_attempt_at=utcnow()))
        db.session.commit()
        assert send_pending() == {"sent": 0, "retry": 0, "failed": 1}
        db.session.expire_all()
        msg = db.session.scalars(select(EmailMessage)).one()
        assert msg.status == "failed" and msg.attempts == 2


def test_recipient_refused_is_permanent(make_app, smtp_server):
    from socialsphere.emails import send_pending

    smtp_server.reject = True
    app = _app(make_app, smtp_server)
    _register(app)
    with app.app_context():
        assert send_pending()["failed"] == 1


def test_no_smtp_host_keeps_queue(make_app):
    from socialsphere.emails import send_pending

    app = make_app(SMTP_HOST=None)
    _register(app)
    with app.app_context():
        assert send_pending()["retry"] == 1


def test_templates_render(app):
    from socialsphere.emails import TEMPLATES, enqueue
    from socialsphere.extensions import db

    with app.test_request_context():
        for name in TEMPLATES:
            msg = enqueue("x@example.com", name, name="<b>X</b>", token="T", title="t", platform="p",
                          handle="h", attempts=3, error="e")
            assert msg.subject and "Subject:" not in msg.body_text
            assert "&lt;b&gt;X&lt;/b&gt;" in msg.body_html  # HTML part is escaped
        db.session.rollback()
    with app.test_request_context(), pytest.raises(ValueError):
        enqueue("x@example.com", "nope")


# ---- one-time tokens at rest (issue 11 item 3) ----------------------------------------------


@pytest.fixture
def issued_tokens(monkeypatch):
    """Every one-time token the auth blueprint creates, in clear (the test's knowledge, never stored)."""
    from socialsphere import auth, security

    issued = []

    def record():
        token = security.new_opaque_token()
        issued.append(token)
        return token

    monkeypatch.setattr(auth, "new_opaque_token", record)
    return issued


def _dump_database(db) -> str:
    """Every value of every table, as text: what a database dump would show."""
    values = []
    with db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            for row in conn.execute(table.select()):
                values.extend(str(v) for v in row)
    return "\n".join(values)


def _admin_views(app, admin) -> str:
    """What an admin (API) and a Prometheus scrape can read."""
    c = app.test_client()
    h = {"Authorization": f"Bearer {admin.token}"}
    pages = [c.get("/metrics").get_data(as_text=True)]
    for path in ("/api/v1/admin/users", "/api/v1/admin/audit-log", "/api/v1/admin/settings"):
        r = c.get(path, headers=h)
        assert r.status_code == 200, path
        pages.append(r.get_data(as_text=True))
    for item in c.get("/api/v1/admin/users", headers=h).get_json()["items"]:
        pages.append(c.get(f"/api/v1/admin/users/{item['id']}", headers=h).get_data(as_text=True))
    return "\n".join(pages)


def _delivered(content) -> str:
    """The decoded text and HTML parts of a delivered message (quoted-printable undone)."""
    from email import message_from_string, policy

    mime = message_from_string(content, policy=policy.default)
    return "\n".join(part.get_content() for part in mime.walk() if part.get_content_maintype() == "text")


def _link_token(content, path):
    import re

    match = re.search(rf"https://socialsphere\.test/{path}\?token=([A-Za-z0-9_\-]+)", _delivered(content))
    assert match, content
    return match.group(1)


def test_one_time_tokens_never_at_rest_in_clear(make_app, smtp_server, issued_tokens):
    """The outbox keeps the emailed links' tokens neither before sending (only encrypted, for
    the worker) nor after (deleted); the mails as delivered carry working links."""
    from socialsphere.emails import send_pending
    from socialsphere.extensions import db
    from socialsphere.models import EmailMessage

    app = _app(make_app, smtp_server)
    with app.app_context():
        admin = create_user(db, email="root@example.com", name="Root", role="admin")
    _register(app)  # verify_email
    c = app.test_client()
    assert c.post("/api/v1/auth/password-reset/request", json={"email": "carol@example.com"}).status_code == 202
    verify_token, reset_token = issued_tokens
    with app.app_context():
        before = _dump_database(db) + _admin_views(app, admin)
        for token in (verify_token, reset_token):
            assert token not in before
        assert "redacted" in db.session.scalars(select(EmailMessage.body_text)).first()
        assert send_pending() == {"sent": 2, "retry": 0, "failed": 0}
        after = _dump_database(db) + _admin_views(app, admin)
        for token in (verify_token, reset_token):
            assert token not in after
        assert [m.secret_encrypted for m in db.session.scalars(select(EmailMessage))] == [None, None]
    delivered = {rcpt: content for _from, (rcpt,), content in smtp_server.messages}
    assert len(smtp_server.messages) == 2 and list(delivered) == ["carol@example.com"]
    contents = [content for *_x, content in smtp_server.messages]
    assert _link_token(contents[0], "verify-email") == verify_token
    assert _link_token(contents[1], "reset-password") == reset_token
    assert f'href="https://socialsphere.test/verify-email?token={verify_token}"' in _delivered(contents[0])  # HTML
    r = c.post("/api/v1/auth/verify-email", json={"token": verify_token})
    assert r.status_code == 200 and r.get_json()["user"]["email_verified"] is True
    r = c.post("/api/v1/auth/password-reset/confirm", json={"token": reset_token, "password": "a brand new pass"})
    assert r.status_code == 200


def test_failed_token_mail_stays_sendable(make_app, smtp_server, issued_tokens):
    """A temporary failure retries and a permanently failed mail can be requeued: both still
    send the real link, and the token stays encrypted meanwhile."""
    from socialsphere.emails import send_pending
    from socialsphere.extensions import db
    from socialsphere.models import EmailMessage
    from socialsphere.timeutil import utcnow

    down = make_app(SMTP_HOST="127.0.0.1", SMTP_PORT=_free_port(), SMTP_STARTTLS=False, EMAIL_MAX_ATTEMPTS=2,
                    SMTP_TIMEOUT=2.0)
    _register(down)
    (token,) = issued_tokens
    with down.app_context():
        assert send_pending() == {"sent": 0, "retry": 1, "failed": 0}
        db.session.execute(update(EmailMessage).values(next_attempt_at=utcnow()))
        db.session.commit()
        assert send_pending() == {"sent": 0, "retry": 0, "failed": 1}
        assert token not in _dump_database(db)
        msg = db.session.scalars(select(EmailMessage)).one()
        assert msg.status == "failed" and msg.secret_encrypted
        # an operator requeues it once the SMTP server is back
        db.session.execute(update(EmailMessage).values(status="queued", next_attempt_at=utcnow()))
        db.session.commit()
    up = _app(make_app, smtp_server)
    with up.app_context():
        assert send_pending() == {"sent": 1, "retry": 0, "failed": 0}
        assert token not in _dump_database(db)
    assert _link_token(smtp_server.messages[0][2], "verify-email") == token
    assert up.test_client().post("/api/v1/auth/verify-email", json={"token": token}).status_code == 200


def test_legacy_mail_with_token_in_clear_is_scrubbed_once_sent(app, db, smtp_server, make_app):
    """A mail queued by the previous release (link in clear, no encrypted secret) is sent as it
    is, then its links are redacted."""
    from socialsphere.emails import send_pending
    from socialsphere.models import EmailMessage

    link = "https://socialsphere.test/reset-password?token=Legacy-token_0123456789abcdefghijklmnopqrstu"
    db.session.add(EmailMessage(to_addr="old@example.com", template="password_reset", subject="Reset",
                                body_text=f"Open {link}\n", body_html=f'<a href="{link}">reset</a>'))
    db.session.commit()
    with _app(make_app, smtp_server).app_context():
        assert send_pending()["sent"] == 1
    assert _delivered(smtp_server.messages[0][2]).count(link) == 2
    db.session.expire_all()
    assert "Legacy-token" not in _dump_database(db)
    msg = db.session.scalars(select(EmailMessage)).one()
    assert "reset-password?token=redacted" in msg.body_text and "token=redacted" in msg.body_html
