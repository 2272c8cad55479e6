import hashlib
import hmac
import json
import socket
import ssl
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import create_user, error_of
from sqlalchemy import select, update


def future(hours=24):
    return (datetime.now(UTC) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


class Webhook:
    """A real HTTP server on 127.0.0.1 recording the POSTs the publisher makes (HTTPS with
    ``tls``, an SSL server context; ``server_names`` records the TLS SNI names received)."""

    def __init__(self, tls=None):
        self.status = 200
        self.received = []
        self.server_names = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    outer.received.append((self.headers, body))  # names case-insensitive
                    n = len(outer.received)
                status = outer.status(n) if callable(outer.status) else outer.status
                payload = json.dumps({"id": f"ext-{n}"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    w = Webhook()
    yield w
    w.close()


def connect(c, **over):
    body = {"platform": "twitter", "handle": "@alice", "access_token": "tok-secret-123", "adapter": "log"}
    body.update(over)
    return c.post("/api/v1/social/accounts", json=body)


def make_due(db):
    """Move every pending publication into the past."""
    from socialsphere.models import Publication
    from socialsphere.timeutil import utcnow

    past = utcnow() - timedelta(seconds=1)
    db.session.execute(update(Publication).where(Publication.status == "pending")
                       .values(next_attempt_at=past, scheduled_at=past))
    db.session.commit()


def test_connect_list_delete_account(auth_client, db):
    r = connect(auth_client)
    assert r.status_code == 201, r.get_json()
    acc = r.get_json()
    assert "access_token" not in acc and "token_encrypted" not in acc
    items = auth_client.get("/api/v1/social/accounts").get_json()["items"]
    assert [a["id"] for a in items] == [acc["id"]]
    assert "tok-secret-123" not in json.dumps(items)
    from socialsphere.models import SocialAccount
    from socialsphere.security import decrypt_secret

    row = db.session.get(SocialAccount, acc["id"])
    assert "tok-secret-123" not in row.token_encrypted
    assert decrypt_secret(row.token_encrypted) == "tok-secret-123"
    assert auth_client.delete(f"/api/v1/social/accounts/{acc['id']}").status_code == 204
    assert auth_client.delete(f"/api/v1/social/accounts/{acc['id']}").status_code == 404


@pytest.mark.parametrize("over,field", [
    ({"platform": "myspace"}, "platform"),
    ({"handle": ""}, "handle"),
    ({"access_token": ""}, "access_token"),
    ({"adapter": "carrier-pigeon"}, "adapter"),
    ({"adapter": "webhook"}, "webhook_url"),
    ({"adapter": "webhook", "webhook_url": "ftp://x.example/"}, "webhook_url"),
    ({"adapter": "log", "webhook_url": "https://x.example/"}, "webhook_url"),
    ({"extra": True}, "extra"),
])
def test_connect_validation(auth_client, over, field):
    r = connect(auth_client, **over)
    assert r.status_code == 422, r.get_json()
    assert field in error_of(r)["fields"]


def test_webhook_private_address_refused_in_production_mode(make_app, user):
    app = make_app(WEBHOOK_ALLOW_PRIVATE=False)
    r = app.test_client().post("/api/v1/social/accounts", headers={"Authorization": f"Bearer {user.token}"},
                               json={"platform": "webhook", "handle": "h", "access_token": "t",
                                     "adapter": "webhook", "webhook_url": "http://127.0.0.1:9/x"})
    assert r.status_code == 422
    assert "non-public" in error_of(r)["fields"]["webhook_url"]


def test_account_quota(client, db):
    from socialsphere.models import Plan

    db.session.add(Plan(code="one", name="One", connected_accounts=1))
    db.session.add(Plan(code="none", name="None", connected_accounts=0))
    db.session.commit()
    c = client.as_user(create_user(db, email="one@example.com", plan_code="one").token)
    assert connect(c).status_code == 201
    r = connect(c)
    assert r.status_code == 402
    c2 = client.as_user(create_user(db, email="none@example.com", plan_code="none").token)
    assert connect(c2).status_code == 403


def test_schedule_and_publish_log_adapter(auth_client, db):
    from socialsphere.publisher import publish_due

    acc = connect(auth_client).get_json()["id"]
    pid = auth_client.post("/api/v1/posts", json={"body": "Launch day!"}).get_json()["id"]
    r = auth_client.post(f"/api/v1/social/posts/{pid}/schedule", json={"account_ids": [acc], "scheduled_at": future()})
    assert r.status_code == 201, r.get_json()
    pubs = r.get_json()["publications"]
    assert pubs[0]["status"] == "pending"
    post = auth_client.get(f"/api/v1/posts/{pid}").get_json()
    assert post["status"] == "scheduled" and "twitter" in post["platforms"]
    assert publish_due()["success"] == 0  # not due yet
    make_due(db)
    assert publish_due()["success"] == 1
    assert publish_due()["success"] == 0
    pubs = auth_client.get(f"/api/v1/social/posts/{pid}/publications").get_json()["publications"]
    assert pubs[0]["status"] == "published"
    assert pubs[0]["external_id"] == f"log-{pubs[0]['id']}"
    assert [a["outcome"] for a in pubs[0]["attempts"]] == ["success"]
    post = auth_client.get(f"/api/v1/posts/{pid}").get_json()
    assert post["status"] == "published" and post["published_at"]


def test_webhook_adapter_really_posts(auth_client, db, webhook):
    from socialsphere.publisher import publish_due

    acc = connect(auth_client, platform="webhook", adapter="webhook", webhook_url=webhook.url,
                  access_token="hook-secret").get_json()["id"]
    pid = auth_client.post("/api/v1/posts", json={"title": "T", "body": "Body"}).get_json()["id"]
    auth_client.post(f"/api/v1/social/posts/{pid}/schedule", json={"account_ids": [acc], "scheduled_at": future()})
    make_due(db)
    assert publish_due() == {"success": 1, "retry": 0, "failed": 0, "skipped": 0}
    assert len(webhook.received) == 1
    headers, body = webhook.received[0]
    payload = json.loads(body)
    assert payload["post"]["body"] == "Body"
    assert headers["Authorization"] == "Bearer hook-secret"
    expected = hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
    assert headers["X-Socialsphere-Signature"] == f"sha256={expected}"
    pub = auth_client.get(f"/api/v1/social/posts/{pid}/publications").get_json()["publications"][0]
    assert pub["external_id"] == "ext-1"
    assert pub["attempts"][0]["http_status"] == 200


def test_webhook_retries_then_succeeds(auth_client, db, webhook):
    from socialsphere.publisher import publish_due

    webhook.status = lambda n: 503 if n == 1 else 200
    acc = connect(auth_client, adapter="webhook", webhook_url=webhook.url).get_json()["id"]
    pid = auth_client.post("/api/v1/posts", json={"body": "B"}).get_json()["id"]
    auth_client.post(f"/api/v1/social/posts/{pid}/schedule", json={"account_ids": [acc], "scheduled_at": future()})
    make_due(db)
    assert publish_due()["retry"] == 1
    pub = auth_client.get(f"/api/v1/social/posts/{pid}/publications").get_json()["publications"][0]
    assert pub["status"] == "pending" and pub["last_error"] == "HTTP 503"
    assert publish_due()["success"] == 0  # backoff: not due yet
    make_due(db)
    assert publish_due()["success"] == 1
    pub = auth_client.get(f"/api/v1/social/posts/{pid}/publications").get_json()["publications"][0]
    assert [a["outcome"] for a in pub["attempts"]] == ["retry", "success"]
    assert [a["http_status"] for a in pub["attempts"]] == [503, 200]


def test_webhook_permanent_failure_emails_owner(auth_client, db, webhook):
    from socialsphere.models import EmailMessage
    from socialsphere.publisher import publish_due

    webhook.status = 400
    acc = connect(auth_client, adapter="webhook", webhook_url=webhook.url).get_json()["id"]
    pid = auth_client.post("/api/v1/posts", json={"title": "Doomed", "body": "B"}).get_json()["id"]
    auth_client.post(f"/api/v1/social/posts/{pid}/schedule", json={"account_ids": [acc], "scheduled_at": future()})
    make_due(db)
    assert publish_due()["failed"] == 1
    assert auth_client.get(f"/api/v1/posts/{pid}").get_json()["status"] == "failed"
    mails = db.session.scalars(select(EmailMessage).where(EmailMessage.template == "publish_failed")).all()
    assert len(mails) == 1 and "Doomed" in mails[0].body_text


def test_retries_exhausted(make_app, db, user, webhook):
    from socialsphere.publisher import publish_due

    app = make_app(PUBLISH_MAX_ATTEMPTS=2)
    webhook.status = 500
    c = app.test_client()
    h = {"Authorization": f"Bearer {user.token}"}
    acc = c.post("/api/v1/social/accounts", headers=h, json={"platform": "twitter", "handle": "a",
                 "access_token": "t", "adapter": "webhook", "webhook_url": webhook.url}).get_json()["id"]
    pid = c.post("/api/v1/posts", headers=h, json={"body": "B"}).get_json()["id"]
    c.post(f"/api/v1/social/posts/{pid}/schedule", headers=h, json={"account_ids": [acc], "scheduled_at": future()})
    with app.app_context():
        make_due(db)
        assert publish_due()["retry"] == 1
        make_due(db)
        assert publish_due()["failed"] == 1
    pub = c.get(f"/api/v1/social/posts/{pid}/publications", headers=h).get_json()["publications"][0]
    assert pub["status"] == "failed"
    assert [a["outcome"] for a in pub["attempts"]] == ["retry", "failed"]


def test_webhook_unreachable_is_retryable(auth_client, db):
    from conftest import _free_port

    from socialsphere.publisher import publish_due

    acc = connect(auth_client, adapter="webhook", webhook_url=f"http://127.0.0.1:{_free_port()}/x").get_json()["id"]
    pid = auth_client.post("/api/v1/posts", json={"body": "B"}).get_json()["id"]
    auth_client.post(f"/api/v1/social/posts/{pid}/schedule", json={"account_ids": [acc], "scheduled_at": future()})
    make_due(db)
    assert publish_due()["retry"] == 1


def test_expired_lease_is_reclaimed(auth_client, db):
    from socialsphere.models import Publication
    from socialsphere.publisher import claim_due, publish_due
    from socialsphere.timeutil import utcnow

    acc = connect(auth_client).get_json()["id"]
    pid = auth_client.post("/api/v1/posts", json={"body": "B"}).get_json()["id"]
    auth_client.post(f"/api/v1/social/posts/{pid}/schedule", json={"account_ids": [acc], "scheduled_at": future()})
    make_due(db)
    assert len(claim_due(10)) == 1  # a worker claims, then "crashes"
    assert claim_due(10) == []  # leased: nobody else takes it
    db.session.execute(update(Publication).values(lease_until=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    assert publish_due()["success"] == 1


def test_schedule_validation_and_conflicts(auth_client, client, db):
    acc = connect(auth_client).get_json()["id"]
    pid = auth_client.post("/api/v1/posts", json={"body": "B"}).get_json()["id"]
    url = f"/api/v1/social/posts/{pid}/schedule"
    assert auth_client.post(url, json={"account_ids": [], "scheduled_at": future()}).status_code == 422
    assert auth_client.post(url, json={"account_ids": [acc]}).status_code == 422
    assert auth_client.post(url, json={"account_ids": [acc], "scheduled_at": "2000-01-01T00:00:00Z"}).status_code == 422
    assert auth_client.post(url, json={"account_ids": ["x"], "scheduled_at": future()}).status_code == 422
    assert auth_client.post(url, json={"account_ids": [999], "scheduled_at": future()}).status_code == 422
    other = create_user(db, email="o@example.com")
    oc = client.as_user(other.token)
    other_acc = connect(oc).get_json()["id"]
    r = auth_client.post(url, json={"account_ids": [other_acc], "scheduled_at": future()})
    assert r.status_code == 422  # someone else's account
    assert oc.post(url, json={"account_ids": [other_acc], "scheduled_at": future()}).status_code == 404
    assert auth_client.post(url, json={"account_ids": [acc], "scheduled_at": future()}).status_code == 201
    assert auth_client.post(url, json={"account_ids": [acc], "scheduled_at": future()}).status_code == 409
    assert auth_client.post("/api/v1/social/posts/9999/schedule", json={"account_ids": [acc], "scheduled_at": future()}).status_code == 404
    assert auth_client.get("/api/v1/social/posts/9999/publications").status_code == 404


def test_schedule_requires_verified_email(client, db):
    u = create_user(db, email="nv@example.com", verified=False)
    c = client.as_user(u.token)
    acc = connect(c).get_json()["id"]
    pid = c.post("/api/v1/posts", json={"body": "B"}).get_json()["id"]
    r = c.post(f"/api/v1/social/posts/{pid}/schedule", json={"account_ids": [acc], "scheduled_at": future()})
    assert r.status_code == 403
    assert error_of(r)["error"] == "email_not_verified"


def test_reschedule_moves_pending_publications(auth_client, db):
    acc = connect(auth_client).get_json()["id"]
    pid = auth_client.post("/api/v1/posts", json={"body": "B"}).get_json()["id"]
    auth_client.post(f"/api/v1/social/posts/{pid}/schedule", json={"account_ids": [acc], "scheduled_at": future(5)})
    later = future(48)
    assert auth_client.patch(f"/api/v1/posts/{pid}", json={"scheduled_at": later}).status_code == 200
    pub = auth_client.get(f"/api/v1/social/posts/{pid}/publications").get_json()["publications"][0]
    assert pub["scheduled_at"] == later


@pytest.mark.postgres_only
def test_two_workers_never_double_publish(make_app, db, user, webhook):
    """Two concurrent workers (threads, separate sessions) on PostgreSQL: each
    publication is POSTed exactly once."""
    from socialsphere.models import Post, Publication, PublicationAttempt, SocialAccount
    from socialsphere.publisher import publish_due
    from socialsphere.security import encrypt_secret
    from socialsphere.timeutil import utcnow

    acc = SocialAccount(user_id=user.id, platform="webhook", handle="h", adapter="webhook",
                        webhook_url=webhook.url, token_encrypted=encrypt_secret("t"))
    db.session.add(acc)
    db.session.flush()
    past = utcnow() - timedelta(minutes=1)
    n = 120
    for i in range(n):
        post = Post(user_id=user.id, body=f"post {i}", status="scheduled", platforms=["webhook"], scheduled_at=past)
        db.session.add(post)
        db.session.flush()
        db.session.add(Publication(post_id=post.id, account_id=acc.id, scheduled_at=past, next_attempt_at=past))
    db.session.commit()

    results, errors = [], []
    barrier = threading.Barrier(2)

    def worker(name):
        app = make_app()
        try:
            with app.app_context():
                barrier.wait()
                while True:
                    counts = publish_due(limit=7, worker=name)
                    results.append((name, counts))
                    if sum(counts.values()) == 0:
                        break
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    per_pub = Counter(json.loads(body)["publication_id"] for _h, body in webhook.received)
    assert len(per_pub) == n
    assert set(per_pub.values()) == {1}
    db.session.expire_all()
    assert db.session.scalar(select(db.func.count()).select_from(PublicationAttempt)) == n
    statuses = set(db.session.scalars(select(Publication.status)))
    assert statuses == {"published"}
    by_worker = Counter()
    for name, counts in results:
        by_worker[name] += counts["success"]
    assert sum(by_worker.values()) == n
    assert all(by_worker[w] > 0 for w in ("w0", "w1")), by_worker  # both really worked


def test_delete_account_while_publishing_conflicts(auth_client, db):
    from socialsphere.publisher import claim_due

    acc = connect(auth_client).get_json()["id"]
    pid = auth_client.post("/api/v1/posts", json={"body": "B"}).get_json()["id"]
    auth_client.post(f"/api/v1/social/posts/{pid}/schedule", json={"account_ids": [acc], "scheduled_at": future()})
    make_due(db)
    assert len(claim_due(10)) == 1
    assert auth_client.delete(f"/api/v1/social/accounts/{acc}").status_code == 409
    assert auth_client.delete(f"/api/v1/posts/{pid}").status_code == 409


def test_deleting_account_removes_pending_publications(auth_client, db):
    from socialsphere.models import Publication

    acc = connect(auth_client).get_json()["id"]
    pid = auth_client.post("/api/v1/posts", json={"body": "B"}).get_json()["id"]
    auth_client.post(f"/api/v1/social/posts/{pid}/schedule", json={"account_ids": [acc], "scheduled_at": future()})
    assert auth_client.delete(f"/api/v1/social/accounts/{acc}").status_code == 204
    assert db.session.scalars(select(Publication)).all() == []


def test_back_to_draft_cancels_pending_and_reschedule_works(auth_client, db):
    from socialsphere.publisher import publish_due

    acc = connect(auth_client).get_json()["id"]
    pid = auth_client.post("/api/v1/posts", json={"body": "B"}).get_json()["id"]
    url = f"/api/v1/social/posts/{pid}/schedule"
    auth_client.post(url, json={"account_ids": [acc], "scheduled_at": future()})
    assert auth_client.patch(f"/api/v1/posts/{pid}", json={"status": "draft"}).status_code == 200
    pubs = auth_client.get(f"/api/v1/social/posts/{pid}/publications").get_json()["publications"]
    assert [p["status"] for p in pubs] == ["cancelled"]
    make_due(db)
    assert publish_due()["success"] == 0
    r = auth_client.post(url, json={"account_ids": [acc], "scheduled_at": future()})
    assert r.status_code == 201
    make_due(db)
    assert publish_due()["success"] == 1


# ---- webhook target: resolved once, connected to as checked (issue 11 item 5) ------------------

PUBLIC_IP = "93.184.215.14"  # a global address; the tests' socket.connect never really dials it


def _due_webhook_publication(db, user, url):
    from socialsphere.models import Post, Publication, SocialAccount
    from socialsphere.security import encrypt_secret
    from socialsphere.timeutil import utcnow

    # inserted directly: the account's creation would consume the resolver's first answer
    acc = SocialAccount(user_id=user.id, platform="webhook", handle="h", adapter="webhook",
                        webhook_url=url, token_encrypted=encrypt_secret("hook-secret"))
    db.session.add(acc)
    db.session.flush()
    past = utcnow() - timedelta(seconds=1)
    post = Post(user_id=user.id, body="B", status="scheduled", platforms=["webhook"], scheduled_at=past)
    db.session.add(post)
    db.session.flush()
    pub = Publication(post_id=post.id, account_id=acc.id, scheduled_at=past, next_attempt_at=past)
    db.session.add(pub)
    db.session.commit()
    return pub.id


def _fake_dns(monkeypatch, name, answers):
    """socket.getaddrinfo answers for ``name``: ``answers[n]`` (a list of IPv4 addresses) on
    the n-th call, the last one ever after; other names resolve normally.  Returns the calls."""
    calls = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host != name:
            return real(host, port, *args, **kwargs)
        calls.append(host)
        ips = answers[min(len(calls), len(answers)) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, int(port))) for ip in ips]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return calls


def _record_connects(monkeypatch, public_server_port):
    """Record every socket.connect(); a connection to PUBLIC_IP reaches the local receiver
    instead (it plays the public server), any other one goes where it was asked to."""
    connects = []
    real = socket.socket.connect

    def connect(sock, address):
        connects.append(address)
        if address[0] == PUBLIC_IP:
            return real(sock, ("127.0.0.1", public_server_port))
        return real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return connects


def test_webhook_dns_rebinding_connects_to_the_checked_address(make_app, db, user, webhook, monkeypatch):
    """The name resolves to a public address when checked and to 127.0.0.1 afterwards (DNS
    rebinding): the request goes to the public address that was checked, never to 127.0.0.1."""
    from socialsphere.publisher import publish_due

    app = make_app(WEBHOOK_ALLOW_PRIVATE=False)
    pub_id = _due_webhook_publication(db, user, f"http://rebind.test:{webhook.port}/hook")
    calls = _fake_dns(monkeypatch, "rebind.test", [[PUBLIC_IP], ["127.0.0.1"]])
    connects = _record_connects(monkeypatch, webhook.port)
    with app.app_context():
        assert publish_due() == {"success": 1, "retry": 0, "failed": 0, "skipped": 0}
    assert connects == [(PUBLIC_IP, webhook.port)]
    assert calls == ["rebind.test"]  # resolved once
    (headers, _body), = webhook.received
    assert headers["Host"] == f"rebind.test:{webhook.port}"  # the URL's host, not the address
    from socialsphere.models import Publication

    db.session.expire_all()
    assert db.session.get(Publication, pub_id).status == "published"


def test_webhook_any_private_address_is_refused(make_app, db, user, webhook, monkeypatch):
    """Every address the name resolves to is checked: one private address among public ones
    refuses the target (not retried) and nothing is connected to."""
    from socialsphere.models import Publication
    from socialsphere.publisher import publish_due

    app = make_app(WEBHOOK_ALLOW_PRIVATE=False)
    pub_id = _due_webhook_publication(db, user, f"http://rebind.test:{webhook.port}/hook")
    _fake_dns(monkeypatch, "rebind.test", [[PUBLIC_IP, "127.0.0.1"]])
    connects = _record_connects(monkeypatch, webhook.port)
    with app.app_context():
        assert publish_due()["failed"] == 1
    assert connects == [] and webhook.received == []
    db.session.expire_all()
    assert "non-public" in db.session.get(Publication, pub_id).last_error


def _certificate(tmp_path, dns_name):
    """A self-signed certificate (its own CA) for ``dns_name`` only (no IP address)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"{dns_name}.pem", tmp_path / f"{dns_name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    return str(cert_path), server


@pytest.mark.parametrize("cert_name,ok", [("hook.test", True), ("other.test", False)])
def test_webhook_https_to_the_pinned_address_verifies_the_hostname(make_app, db, user, monkeypatch, tmp_path,
                                                                    cert_name, ok):
    """Connecting to the resolved address keeps TLS about the URL's host: SNI and certificate
    verification use hook.test (the certificate names no IP address), a certificate for another
    name is refused."""
    from socialsphere.models import Publication
    from socialsphere.publisher import publish_due

    cafile, server_context = _certificate(tmp_path, cert_name)
    monkeypatch.setenv("SSL_CERT_FILE", cafile)  # the test certificate is the only trusted CA
    hook = Webhook(tls=server_context)
    try:
        pub_id = _due_webhook_publication(db, user, f"https://hook.test:{hook.port}/hook")
        _fake_dns(monkeypatch, "hook.test", [["127.0.0.1"]])
        with make_app().app_context():  # private addresses allowed, as in development
            counts = publish_due()
    finally:
        hook.close()
    assert hook.server_names == ["hook.test"]
    db.session.expire_all()
    pub = db.session.get(Publication, pub_id)
    if ok:
        assert counts["success"] == 1
        (headers, _body), = hook.received
        assert headers["Host"] == f"hook.test:{hook.port}"
    else:
        assert counts["retry"] == 1 and hook.received == []
        assert pub.last_error == "connection error: SSLCertVerificationError"
