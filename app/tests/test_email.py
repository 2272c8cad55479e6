"""Email outbox + SMTP worker against a real SMTP server (aiosmtpd) on 127.0.0.1."""
import datetime as dt
import ssl

import pytest
from conftest import _free_port
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
