import pytest
from conftest import create_user, error_of
from sqlalchemy import select


def actions(db):
    from socialsphere.models import AuditLog

    return [a.action for a in db.session.scalars(select(AuditLog).order_by(AuditLog.id))]


def test_admin_endpoints_forbidden_for_users(auth_client, client):
    for method, path in [("get", "/api/v1/admin/users"), ("get", "/api/v1/admin/users/1"),
                         ("patch", "/api/v1/admin/users/1"), ("post", "/api/v1/admin/users/1/revoke-sessions"),
                         ("put", "/api/v1/admin/users/1/subscription"), ("get", "/api/v1/admin/plans"),
                         ("post", "/api/v1/admin/plans"), ("patch", "/api/v1/admin/plans/1"),
                         ("delete", "/api/v1/admin/plans/1"), ("get", "/api/v1/admin/settings"),
                         ("put", "/api/v1/admin/settings/announcement"), ("get", "/api/v1/admin/audit-log")]:
        r = getattr(auth_client, method)(path, json={})
        assert r.status_code == 403, (method, path)
        assert getattr(client, method)(path, json={}).status_code == 401


def test_list_and_search_users(admin_client, db, user):
    create_user(db, email="zed@example.com", name="Zed Zulu")
    r = admin_client.get("/api/v1/admin/users")
    assert r.status_code == 200
    assert r.get_json()["total"] == 3
    assert admin_client.get("/api/v1/admin/users?q=zulu").get_json()["total"] == 1
    assert admin_client.get("/api/v1/admin/users?q=EXAMPLE.com&per_page=1").get_json()["pages"] == 3
    assert admin_client.get("/api/v1/admin/users?role=admin").get_json()["total"] == 1
    assert admin_client.get("/api/v1/admin/users?status=suspended").get_json()["total"] == 0
    assert admin_client.get("/api/v1/admin/users?role=root").status_code == 422


def test_get_user(admin_client, user):
    r = admin_client.get(f"/api/v1/admin/users/{user.id}")
    assert r.status_code == 200
    assert r.get_json()["subscription"]["plan"]["code"] == "free"
    assert admin_client.get("/api/v1/admin/users/99999").status_code == 404


def test_suspend_and_reactivate(admin_client, client, db, user):
    refresh = client.post("/api/v1/auth/login", json={"email": user.email, "password": user.password}).get_json()["refresh_token"]
    r = admin_client.patch(f"/api/v1/admin/users/{user.id}", json={"status": "suspended"})
    assert r.status_code == 200 and r.get_json()["status"] == "suspended"
    assert client.as_user(user.token).get("/api/v1/auth/me").status_code == 403
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}).status_code == 401
    assert admin_client.patch(f"/api/v1/admin/users/{user.id}", json={"status": "active"}).status_code == 200
    r = client.post("/api/v1/auth/login", json={"email": user.email, "password": user.password})
    assert r.status_code == 200
    assert client.as_user(r.get_json()["access_token"]).get("/api/v1/auth/me").status_code == 200
    assert actions(db) == ["admin.user_update", "admin.user_update"]


def test_change_role(admin_client, client, user):
    assert admin_client.patch(f"/api/v1/admin/users/{user.id}", json={"role": "admin"}).status_code == 200
    assert client.as_user(user.token).get("/api/v1/admin/users").status_code == 200


def test_patch_user_validation(admin_client, user):
    assert admin_client.patch(f"/api/v1/admin/users/{user.id}", json={"role": "god"}).status_code == 422
    assert admin_client.patch(f"/api/v1/admin/users/{user.id}", json={"email": "x@y.z"}).status_code == 422
    assert admin_client.patch("/api/v1/admin/users/424242", json={"role": "user"}).status_code == 404


def test_cannot_remove_last_admin(admin_client, admin):
    r = admin_client.patch(f"/api/v1/admin/users/{admin.id}", json={"role": "user"})
    assert r.status_code == 409
    assert admin_client.patch(f"/api/v1/admin/users/{admin.id}", json={"status": "suspended"}).status_code == 409


def test_revoke_sessions(admin_client, client, db, user):
    refresh = client.post("/api/v1/auth/login", json={"email": user.email, "password": user.password}).get_json()["refresh_token"]
    assert admin_client.post(f"/api/v1/admin/users/{user.id}/revoke-sessions").status_code == 204
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}).status_code == 401
    assert admin_client.post("/api/v1/admin/users/9999/revoke-sessions").status_code == 404
    assert actions(db) == ["admin.revoke_sessions"]


def test_plans_crud_and_assign(admin_client, client, db, user):
    r = admin_client.post("/api/v1/admin/plans", json={"code": "team", "name": "Team", "price_cents": 4900,
                                                        "posts_per_month": 1, "ai_generations_per_month": None,
                                                        "connected_accounts": 3})
    assert r.status_code == 201, r.get_json()
    plan = r.get_json()
    assert admin_client.post("/api/v1/admin/plans", json={"code": "team", "name": "Dup"}).status_code == 409
    r = admin_client.patch(f"/api/v1/admin/plans/{plan['id']}", json={"price_cents": 5900, "active": False})
    assert r.status_code == 200 and r.get_json()["price_cents"] == 5900
    assert "team" not in [p["code"] for p in client.get("/api/v1/plans").get_json()["items"]]
    assert "team" in [p["code"] for p in admin_client.get("/api/v1/admin/plans").get_json()["items"]]
    r = admin_client.put(f"/api/v1/admin/users/{user.id}/subscription", json={"plan_id": plan["id"]})
    assert r.status_code == 200
    assert r.get_json()["subscription"]["plan"]["code"] == "team"
    uc = client.as_user(user.token)
    assert uc.post("/api/v1/posts", json={"body": "1"}).status_code == 201
    assert uc.post("/api/v1/posts", json={"body": "2"}).status_code == 402
    r = admin_client.delete(f"/api/v1/admin/plans/{plan['id']}")
    assert r.status_code == 409 and error_of(r)["error"] == "plan_in_use"
    free = [p for p in admin_client.get("/api/v1/admin/plans").get_json()["items"] if p["code"] == "free"][0]
    admin_client.put(f"/api/v1/admin/users/{user.id}/subscription", json={"plan_id": free["id"]})
    assert admin_client.delete(f"/api/v1/admin/plans/{plan['id']}").status_code == 204
    assert admin_client.delete(f"/api/v1/admin/plans/{plan['id']}").status_code == 404
    assert actions(db) == ["admin.plan_create", "admin.plan_update", "admin.subscription_set",
                           "admin.subscription_set", "admin.plan_delete"]


@pytest.mark.parametrize("body,field", [
    ({"name": "x"}, "code"), ({"code": "c"}, "code"), ({"code": "cc", "name": "n", "price_cents": -1}, "price_cents"),
    ({"code": "cc", "name": "n", "posts_per_month": "10"}, "posts_per_month"),
    ({"code": "cc", "name": "n", "active": "yes"}, "active"),
    ({"code": "cc", "name": "n", "posts_per_month": 10**12}, "posts_per_month"),
])
def test_plan_validation(admin_client, body, field):
    r = admin_client.post("/api/v1/admin/plans", json=body)
    assert r.status_code == 422
    assert field in error_of(r)["fields"]


def test_plan_patch_errors(admin_client, db):
    from socialsphere.subscriptions import ensure_default_plans

    ensure_default_plans()
    db.session.commit()
    plans = admin_client.get("/api/v1/admin/plans").get_json()["items"]
    assert admin_client.patch(f"/api/v1/admin/plans/{plans[0]['id']}", json={"code": plans[1]["code"]}).status_code == 409
    assert admin_client.patch("/api/v1/admin/plans/9999", json={"name": "x"}).status_code == 404


def test_assign_subscription_errors(admin_client, user):
    assert admin_client.put(f"/api/v1/admin/users/{user.id}/subscription", json={"plan_id": 9999}).status_code == 404
    assert admin_client.put(f"/api/v1/admin/users/{user.id}/subscription", json={"plan_id": "x"}).status_code == 422
    assert admin_client.put("/api/v1/admin/users/9999/subscription", json={"plan_id": 1}).status_code == 404


def test_settings_typed(admin_client, db):
    items = {s["key"]: s for s in admin_client.get("/api/v1/admin/settings").get_json()["items"]}
    assert items["registration_open"] == {"key": "registration_open", "value": True, "type": "boolean",
                                          "description": "allow new sign-ups", "default": True}
    r = admin_client.put("/api/v1/admin/settings/ai_max_hashtags", json={"value": 3})
    assert r.status_code == 200 and r.get_json()["value"] == 3
    for bad in ("3", 3.5, True, 99, -1, None):
        r = admin_client.put("/api/v1/admin/settings/ai_max_hashtags", json={"value": bad})
        assert r.status_code == 422, bad
        assert "value" in error_of(r)["fields"]
    assert admin_client.put("/api/v1/admin/settings/registration_open", json={"value": "false"}).status_code == 422
    assert admin_client.put("/api/v1/admin/settings/announcement", json={"value": "x" * 501}).status_code == 422
    assert admin_client.put("/api/v1/admin/settings/announcement", json={"value": "Hello"}).status_code == 200
    assert admin_client.put("/api/v1/admin/settings/nope", json={"value": 1}).status_code == 404
    assert admin_client.put("/api/v1/admin/settings/announcement", json={}).status_code == 422
    assert actions(db) == ["admin.setting_update", "admin.setting_update"]


def test_setting_affects_ai(admin_client, auth_client):
    admin_client.put("/api/v1/admin/settings/ai_max_hashtags", json={"value": 1})
    r = auth_client.post("/api/v1/ai/generate", json={"topic": "green tea benefits"})
    assert len(r.get_json()["hashtags"]) == 1


def test_audit_log_listing(admin_client, admin, user):
    admin_client.patch(f"/api/v1/admin/users/{user.id}", json={"role": "admin"})
    admin_client.put("/api/v1/admin/settings/announcement", json={"value": "hi"})
    r = admin_client.get("/api/v1/admin/audit-log")
    assert r.status_code == 200
    items = r.get_json()["items"]
    assert [i["action"] for i in items] == ["admin.setting_update", "admin.user_update"]
    assert items[0]["actor_id"] == admin.id and items[0]["request_id"]
    assert items[1]["details"] == {"before": {"role": "user", "status": "active"}, "after": {"role": "admin"}}
    assert admin_client.get("/api/v1/admin/audit-log?action=admin.user_update").get_json()["total"] == 1
    assert admin_client.get(f"/api/v1/admin/audit-log?actor_id={user.id}").get_json()["total"] == 0
    assert admin_client.get("/api/v1/admin/audit-log?actor_id=x").status_code == 422


def test_user_list_includes_current_plan(admin_client, db, user):
    from socialsphere.models import Plan, User

    create_user(db, email="pro@example.com", name="Pro", plan_code="pro")
    bare = User(email="bare@example.com", name="Bare", password_hash="x")  # no subscription row
    db.session.add(bare)
    db.session.commit()
    items = {u["email"]: u for u in admin_client.get("/api/v1/admin/users").get_json()["items"]}
    pro = db.session.scalar(select(Plan).where(Plan.code == "pro"))
    assert items["pro@example.com"]["subscription"]["plan"] == {"id": pro.id, "code": "pro", "name": "Pro"}
    assert items["pro@example.com"]["subscription"]["started_at"].endswith("Z")
    assert items[user.email]["subscription"]["plan"]["code"] == "free"
    assert items["bare@example.com"]["subscription"] is None
    # listing is read-only: it does not create the missing subscription
    db.session.expire_all()
    assert db.session.get(User, bare.id).subscription is None
    # the admin panel's plan dropdown follows a plan change
    assert admin_client.put(f"/api/v1/admin/users/{user.id}/subscription",
                            json={"plan_id": pro.id}).status_code == 200
    items = {u["email"]: u for u in admin_client.get(f"/api/v1/admin/users?q={user.email}").get_json()["items"]}
    assert items[user.email]["subscription"]["plan"]["code"] == "pro"


def test_user_list_plan_query_count_is_constant(admin_client, db, app):
    from sqlalchemy import event

    for n in range(6):
        create_user(db, email=f"u{n}@example.com", plan_code="pro" if n % 2 else None)
    statements = []

    def count(*_args):
        statements.append(1)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        r = admin_client.get("/api/v1/admin/users?per_page=100")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert r.status_code == 200 and len(r.get_json()["items"]) == 7
    assert len(statements) <= 6  # auth + count + page + subscriptions + plans, not one per user
