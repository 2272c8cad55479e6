import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

from conftest import _free_port
from sqlalchemy import select

APP_DIR = Path(__file__).resolve().parent.parent


def test_create_admin(app, db):
    from socialsphere.models import AuditLog, User

    runner = app.test_cli_runner()
    r = runner.invoke(args=["create-admin", "--email", "Boss@Example.com", "--password", "admin password 1"])
    assert r.exit_code == 0, r.output
    assert "created admin boss@example.com" in r.output
    user = db.session.scalars(select(User).where(User.email == "boss@example.com")).one()
    assert user.role == "admin" and user.email_verified_at is not None
    r = runner.invoke(args=["create-admin", "--email", "boss@example.com", "--password", "another password"])
    assert "updated admin" in r.output
    assert db.session.scalars(select(AuditLog.action)).all() == ["cli.create_admin", "cli.create_admin"]
    r = runner.invoke(args=["create-admin", "--email", "x@example.com", "--password", "short"])
    assert r.exit_code != 0


def test_create_admin_password_from_env(app, db, monkeypatch):
    monkeypatch.setenv("SOCIALSPHERE_ADMIN_PASSWORD", "from the environment")
    r = app.test_cli_runner().invoke(args=["create-admin", "--email", "env@example.com"])
    assert r.exit_code == 0, r.output


def _ensure(runner, *args, password="deploy password 1"):
    r = runner.invoke(args=["ensure-admin", "--email", "Ops@Example.com", *args], input=password + "\n")
    assert r.exit_code == 0, r.output
    return json.loads(r.output.strip().splitlines()[-1])


def test_ensure_admin_is_idempotent_and_changes_only_what_differs(app, db):
    from socialsphere.models import AuditLog, User
    from socialsphere.security import verify_password

    runner = app.test_cli_runner()
    first = _ensure(runner)
    assert first["created"] is True and first["changed"] == ["created"]
    assert _ensure(runner) == {**first, "created": False, "changed": []}
    user = db.session.get(User, first["id"])
    assert (user.email, user.role, user.status) == ("ops@example.com", "admin", "active")
    assert user.email_verified_at is not None and user.subscription is not None
    # Drift is put back: a demoted, suspended admin is an active admin again.
    user.role, user.status = "user", "suspended"
    db.session.commit()
    assert _ensure(runner)["changed"] == ["role", "status"]
    # The vault's password changed: enforce sets it and ends the sessions.
    result = _ensure(runner, password="rotated password 2")
    assert result["changed"] == ["password"]
    db.session.expire_all()
    user = db.session.get(User, first["id"])
    assert verify_password(user.password_hash, "rotated password 2")
    assert user.sessions_revoked_at is not None
    assert db.session.scalars(select(AuditLog.action)).all() == ["cli.ensure_admin"] * 3


def test_ensure_admin_create_policy_keeps_a_password_changed_by_its_owner(app, db):
    from socialsphere.models import User
    from socialsphere.security import verify_password

    runner = app.test_cli_runner()
    account = _ensure(runner, "--password-policy", "create")
    assert _ensure(runner, "--password-policy", "create", password="changed in the vault")["changed"] == []
    user = db.session.get(User, account["id"])
    assert verify_password(user.password_hash, "deploy password 1")
    # On request: set now.
    assert _ensure(runner, "--password-policy", "create", "--reset-password",
                   password="changed in the vault")["changed"] == ["password"]


def test_ensure_admin_refuses_a_short_password_and_changes_nothing(app, db):
    from socialsphere.models import User

    r = app.test_cli_runner().invoke(args=["ensure-admin", "--email", "x@example.com"], input="short\n")
    assert r.exit_code != 0
    assert "at least 10 characters" in r.output
    assert db.session.scalar(select(db.func.count()).select_from(User)) == 0


def test_seed_demo_idempotent(app, db):
    from socialsphere.models import Plan, Post

    runner = app.test_cli_runner()
    r = runner.invoke(args=["seed-demo", "--password", "demo password 1", "--posts", "5"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(args=["seed-demo", "--posts", "5"])
    assert r.exit_code == 0, r.output
    assert db.session.scalar(select(db.func.count()).select_from(Post)) == 5
    assert {p.code for p in db.session.scalars(select(Plan))} == {"free", "pro", "business"}


def test_publish_due_and_send_email_commands(app, db, user):
    from socialsphere.models import Post, Publication, SocialAccount
    from socialsphere.security import encrypt_secret
    from socialsphere.timeutil import utcnow

    acc = SocialAccount(user_id=user.id, platform="twitter", handle="h", adapter="log",
                        token_encrypted=encrypt_secret("t"))
    post = Post(user_id=user.id, body="b", status="scheduled", platforms=["twitter"])
    db.session.add_all([acc, post])
    db.session.flush()
    past = utcnow() - timedelta(seconds=5)
    db.session.add(Publication(post_id=post.id, account_id=acc.id, scheduled_at=past, next_attempt_at=past))
    db.session.commit()
    runner = app.test_cli_runner()
    r = runner.invoke(args=["publish-due"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["success"] == 1
    r = runner.invoke(args=["send-email", "--limit", "10"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1]) == {"sent": 0, "retry": 0, "failed": 0}


def test_schema_head_command(app):
    from socialsphere.schema import SCHEMA_HEAD

    r = app.test_cli_runner().invoke(args=["schema-head"])
    assert r.output.strip() == SCHEMA_HEAD


def _env(tmp_path, url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOCIALSPHERE_")}
    env.update({"SOCIALSPHERE_ENV": "development", "SOCIALSPHERE_INSTANCE_PATH": str(tmp_path),
                "SOCIALSPHERE_DATABASE_URL": url, "SOCIALSPHERE_LOG_LEVEL": "WARNING",
                "PYTHONPATH": str(APP_DIR)})
    return env


def test_flask_db_upgrade_then_gunicorn_serves_ready(tmp_path):
    """`flask --app socialsphere.wsgi db upgrade` then Gunicorn with our config answers /readyz."""
    from socialsphere.schema import SCHEMA_HEAD

    env = _env(tmp_path, "sqlite:///" + str(tmp_path / "cli.db"))
    flask = [sys.executable, "-m", "flask", "--app", "socialsphere.wsgi"]
    r = subprocess.run([*flask, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    port = _free_port()
    env.update({"GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "2", "GUNICORN_GRACEFUL_TIMEOUT": "5",
                "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")})
    (tmp_path / "prom").mkdir()
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:socialsphere.gunicorn_conf",
                             "socialsphere.wsgi:app"], env=env, cwd=str(tmp_path),
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        body = None
        deadline = time.monotonic() + 90  # generous: CI machines can be very busy
        while body is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
                    body = json.loads(resp.read())
            except OSError:
                time.sleep(0.2)
        assert body == {"status": "ready", "schema": {"database": SCHEMA_HEAD, "code": SCHEMA_HEAD,
                                                 "relation": "equal"}}, (tmp_path / "gunicorn.log").read_text()[-3000:]
        for _ in range(4):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
        # multiprocess mode aggregates every worker's counters
        assert 'socialsphere_http_requests_total{endpoint="/healthz",method="GET",status="200"} 4.0' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def test_worker_loop_stops_cleanly_on_sigterm(capsys):
    from socialsphere.cli import _loop

    calls = []

    def work():
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # what systemd sends on stop
        return {"n": len(calls)}

    before = signal.getsignal(signal.SIGTERM)
    _loop(work, interval=0.01, once=False)
    assert len(calls) == 3
    assert signal.getsignal(signal.SIGTERM) == before
    assert capsys.readouterr().out.strip().splitlines()[-1] == '{"n": 3}'
