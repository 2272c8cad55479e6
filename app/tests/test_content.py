import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import create_user, error_of


def future(hours=24):
    return (datetime.now(UTC) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_create_get_update_delete_post(auth_client):
    r = auth_client.post("/api/v1/posts", json={"title": "Hello", "body": "World", "platforms": ["twitter"]})
    assert r.status_code == 201, r.get_json()
    post = r.get_json()
    assert post["status"] == "draft" and post["platforms"] == ["twitter"]
    pid = post["id"]
    assert auth_client.get(f"/api/v1/posts/{pid}").get_json()["title"] == "Hello"
    r = auth_client.patch(f"/api/v1/posts/{pid}", json={"body": "Updated", "status": "scheduled",
                                                         "scheduled_at": future()})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["body"] == "Updated"
    assert r.get_json()["status"] == "scheduled"
    assert r.get_json()["scheduled_at"].endswith("Z")
    assert auth_client.delete(f"/api/v1/posts/{pid}").status_code == 204
    assert auth_client.get(f"/api/v1/posts/{pid}").status_code == 404


def test_scheduled_at_with_offset_normalized_to_utc(auth_client):
    when = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    local = when.astimezone(__import__("datetime").timezone(timedelta(hours=2))).isoformat()
    r = auth_client.post("/api/v1/posts", json={"body": "x", "status": "scheduled", "scheduled_at": local})
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["scheduled_at"] == when.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_posts_are_private(auth_client, client, db):
    pid = auth_client.post("/api/v1/posts", json={"body": "mine"}).get_json()["id"]
    other = client.as_user(create_user(db, email="eve@example.com").token)
    assert other.get(f"/api/v1/posts/{pid}").status_code == 404
    assert other.patch(f"/api/v1/posts/{pid}", json={"body": "x"}).status_code == 404
    assert other.delete(f"/api/v1/posts/{pid}").status_code == 404
    assert other.get("/api/v1/posts").get_json()["total"] == 0


def test_posts_require_auth(client):
    assert client.get("/api/v1/posts").status_code == 401
    assert client.post("/api/v1/posts", json={"body": "x"}).status_code == 401


@pytest.mark.parametrize("body,field", [
    ({}, "body"),
    ({"body": ""}, "body"),
    ({"body": "x" * 5001}, "body"),
    ({"body": 12}, "body"),
    ({"body": "x", "title": "t" * 201}, "title"),
    ({"body": "x", "status": "published"}, "status"),
    ({"body": "x", "platforms": ["myspace"]}, "platforms"),
    ({"body": "x", "platforms": "twitter"}, "platforms"),
    ({"body": "x", "platforms": ["twitter", "twitter"]}, "platforms"),
    ({"body": "x", "scheduled_at": "tomorrow"}, "scheduled_at"),
    ({"body": "x", "scheduled_at": "2030-01-01T10:00:00"}, "scheduled_at"),
    ({"body": "x", "scheduled_at": "2030-02-30T10:00:00Z"}, "scheduled_at"),
    ({"body": "x", "scheduled_at": 1700000000}, "scheduled_at"),
    ({"body": "x", "status": "scheduled"}, "scheduled_at"),
    ({"body": "x", "status": "scheduled", "scheduled_at": "2001-01-01T00:00:00Z"}, "scheduled_at"),
    ({"body": "x", "owner": 5}, "owner"),
    ({"body": "x\u0000y"}, "body"),
])
def test_create_post_validation(auth_client, body, field):
    r = auth_client.post("/api/v1/posts", json=body)
    assert r.status_code == 422, r.get_json()
    assert field in error_of(r)["fields"]


def test_patch_validation_and_conflicts(auth_client, db):
    pid = auth_client.post("/api/v1/posts", json={"body": "x"}).get_json()["id"]
    assert auth_client.patch(f"/api/v1/posts/{pid}", json={"body": None}).status_code == 422
    assert auth_client.patch(f"/api/v1/posts/{pid}", json={"status": "scheduled"}).status_code == 422
    assert auth_client.patch(f"/api/v1/posts/{pid}", json={"nope": 1}).status_code == 422
    assert auth_client.patch(f"/api/v1/posts/{pid}", json={}).status_code == 200
    from socialsphere.models import Post

    db.session.get(Post, pid).status = "published"
    db.session.commit()
    r = auth_client.patch(f"/api/v1/posts/{pid}", json={"body": "y"})
    assert r.status_code == 409


@pytest.mark.parametrize("path", ["/api/v1/posts/abc", "/api/v1/posts/-1", "/api/v1/posts/99999999999999999999"])
def test_bad_ids(auth_client, path):
    assert auth_client.get(path).status_code == 404


def test_list_pagination_filter_search(auth_client):
    for i in range(25):
        auth_client.post("/api/v1/posts", json={
            "title": f"Post {i}", "body": "special offer" if i % 5 == 0 else "regular content",
            "platforms": ["linkedin"] if i % 2 else ["twitter"],
            "status": "scheduled" if i % 3 == 0 else "draft",
            **({"scheduled_at": future()} if i % 3 == 0 else {}),
        })
    page = auth_client.get("/api/v1/posts?per_page=10&page=3").get_json()
    assert page["total"] == 25 and page["pages"] == 3 and len(page["items"]) == 5
    assert page["page"] == 3 and page["per_page"] == 10
    first = auth_client.get("/api/v1/posts").get_json()
    assert len(first["items"]) == 20
    assert first["items"][0]["title"] == "Post 24"  # newest first
    assert auth_client.get("/api/v1/posts?status=scheduled").get_json()["total"] == 9
    assert auth_client.get("/api/v1/posts?platform=linkedin").get_json()["total"] == 12
    assert auth_client.get("/api/v1/posts?q=SPECIAL").get_json()["total"] == 5
    assert auth_client.get("/api/v1/posts?q=post 1").get_json()["total"] == 11
    assert auth_client.get("/api/v1/posts?q=100%25").get_json()["total"] == 0
    assert auth_client.get("/api/v1/posts?q=_").get_json()["total"] == 0
    assert auth_client.get("/api/v1/posts?page=99").get_json()["items"] == []


@pytest.mark.parametrize("query", ["page=0", "page=abc", "per_page=101", "per_page=-5", "status=bogus",
                                   "platform=myspace", "q=" + "x" * 201, "unknown=1&page=0"])
def test_list_bad_query(auth_client, query):
    """Bad values of listed parameters; unknown parameters are ignored (test_openapi_conformance)."""
    r = auth_client.get("/api/v1/posts?" + query)
    assert r.status_code == 422, r.get_json()
    assert "unknown" not in r.get_json()["fields"]


def test_post_quota_402(client, db):
    from socialsphere.models import Plan

    db.session.add(Plan(code="tiny", name="Tiny", posts_per_month=2, ai_generations_per_month=0,
                        connected_accounts=1))
    db.session.commit()
    u = create_user(db, email="tiny@example.com", plan_code="tiny")
    c = client.as_user(u.token)
    assert c.post("/api/v1/posts", json={"body": "1"}).status_code == 201
    assert c.post("/api/v1/posts", json={"body": "2"}).status_code == 201
    r = c.post("/api/v1/posts", json={"body": "3"})
    assert r.status_code == 402
    assert error_of(r)["error"] == "quota_exceeded"
    # AI generation not in the plan: 403
    r = c.post("/api/v1/ai/generate", json={"topic": "coffee"})
    assert r.status_code == 403
    assert error_of(r)["error"] == "plan_feature_unavailable"


def test_ai_generate_offline(auth_client):
    r = auth_client.post("/api/v1/ai/generate", json={"topic": "remote work tips", "tone": "witty",
                                                       "platform": "twitter"})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["provider"] == "offline"
    assert "remote work tips" in body["caption"]
    assert 1 <= len(body["hashtags"]) <= 5
    assert all(t.startswith("#") for t in body["hashtags"])
    assert len(body["caption"]) + sum(len(t) + 1 for t in body["hashtags"]) <= 280
    me = auth_client.get("/api/v1/auth/me").get_json()
    assert me["subscription"]["usage"]["ai_generations"] == 1


@pytest.mark.parametrize("body,field", [
    ({}, "topic"), ({"topic": "x"}, "topic"), ({"topic": "ok", "tone": "angry"}, "tone"),
    ({"topic": "ok", "platform": "fax"}, "platform"), ({"topic": "t" * 201}, "topic"),
])
def test_ai_generate_validation(auth_client, body, field):
    r = auth_client.post("/api/v1/ai/generate", json=body)
    assert r.status_code == 422
    assert field in error_of(r)["fields"]


def test_ai_quota_402(client, db):
    from socialsphere.models import Plan

    db.session.add(Plan(code="ai1", name="AI one", ai_generations_per_month=1))
    db.session.commit()
    c = client.as_user(create_user(db, email="ai@example.com", plan_code="ai1").token)
    assert c.post("/api/v1/ai/generate", json={"topic": "tea"}).status_code == 200
    assert c.post("/api/v1/ai/generate", json={"topic": "tea"}).status_code == 402


class FakeAI:
    """A local OpenAI-compatible server on 127.0.0.1 with scripted answers."""

    def __init__(self):
        self.mode = "ok"
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                length = int(self.headers["Content-Length"])
                outer.requests.append((self.path, dict(self.headers), json.loads(self.rfile.read(length))))
                mode = outer.mode
                if mode == "slow":
                    time.sleep(1.5)
                if mode == "500":
                    self.send_response(500)
                    self.end_headers()
                    return
                if mode == "429":
                    self.send_response(429)
                    self.send_header("Retry-After", "7")
                    self.end_headers()
                    return
                if mode == "401":
                    self.send_response(401)
                    self.end_headers()
                    return
                if mode == "garbage":
                    body = b"<html>oops</html>"
                elif mode == "badshape":
                    body = json.dumps({"choices": []}).encode()
                else:
                    content = json.dumps({"caption": "Fresh coffee, fresh ideas.",
                                          "hashtags": ["coffee", "#morning"]})
                    body = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except BrokenPipeError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_ai():
    server = FakeAI()
    yield server
    server.close()


@pytest.fixture
def ai_client(make_app, fake_ai, db, user):
    app = make_app(AI_PROVIDER="openai", AI_BASE_URL=fake_ai.url, AI_API_KEY="sk-test",
                   AI_MODEL="test-model", AI_TIMEOUT=0.5)
    from conftest import ApiClient

    app.test_client_class = ApiClient
    c = app.test_client()
    c.token = user.token
    return c


def test_openai_provider_success(ai_client, fake_ai):
    r = ai_client.post("/api/v1/ai/generate", json={"topic": "coffee", "tone": "casual"})
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"caption": "Fresh coffee, fresh ideas.", "hashtags": ["#coffee", "#morning"],
                            "provider": "openai"}
    path, headers, body = fake_ai.requests[0]
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer sk-test"
    assert body["model"] == "test-model"


@pytest.mark.parametrize("mode,status,code", [
    ("500", 503, "ai_unavailable"), ("429", 503, "ai_unavailable"), ("slow", 503, "ai_unavailable"),
    ("401", 502, "ai_bad_gateway"), ("garbage", 502, "ai_bad_gateway"), ("badshape", 502, "ai_bad_gateway"),
])
def test_openai_provider_errors(ai_client, fake_ai, mode, status, code):
    fake_ai.mode = mode
    r = ai_client.post("/api/v1/ai/generate", json={"topic": "coffee"})
    assert r.status_code == status, r.get_json()
    assert error_of(r)["error"] == code
    if mode == "429":
        assert r.headers["Retry-After"] == "7"
    # failures are not billed
    assert ai_client.get("/api/v1/auth/me").get_json()["subscription"]["usage"]["ai_generations"] == 0


def test_openai_provider_unreachable(make_app, user):
    from conftest import _free_port

    app = make_app(AI_PROVIDER="openai", AI_BASE_URL=f"http://127.0.0.1:{_free_port()}/v1", AI_TIMEOUT=0.5)
    r = app.test_client().post("/api/v1/ai/generate", json={"topic": "coffee"},
                               headers={"Authorization": f"Bearer {user.token}"})
    assert r.status_code == 503


def test_plans_public(client, db):
    from socialsphere.models import Plan
    from socialsphere.subscriptions import ensure_default_plans

    ensure_default_plans()
    db.session.add(Plan(code="hidden", name="Hidden", active=False))
    db.session.commit()
    r = client.get("/api/v1/plans")
    assert r.status_code == 200
    codes = [p["code"] for p in r.get_json()["items"]]
    assert codes == ["free", "pro", "business"]
