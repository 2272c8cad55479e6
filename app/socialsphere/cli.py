"""Flask CLI commands (``flask --app socialsphere.wsgi <command>``).

* ``db upgrade``            apply migrations (Flask-Migrate; a deploy step)
* ``create-admin``          create or promote an admin account
* ``ensure-admin``          the deployment's admin account, idempotent (JSON report)
* ``seed-demo``             default plans + a demo user with posts (idempotent)
* ``publish-due``           publish due publications (``--loop`` to keep running)
* ``send-email``            send queued emails over SMTP (``--loop`` to keep running)
* ``schema-head``           print the migration revision this code needs
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from datetime import timedelta

import click
from flask import Flask
from flask.cli import FlaskGroup
from sqlalchemy import select

from .extensions import db


def _loop(fn, interval: float, once: bool) -> None:
    stop = {"flag": False}

    def _stop(*_args):
        stop["flag"] = True

    previous = {}
    if not once:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, _stop)
    try:
        while True:
            result = fn()
            click.echo(json.dumps(result))
            if once or stop["flag"]:
                return
            deadline = time.monotonic() + interval
            while time.monotonic() < deadline and not stop["flag"]:
                time.sleep(0.05)
            if stop["flag"]:
                return
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ensure_admin(email: str, name: str, password: str, *, rehash: str, action: str):
    """Create or bring up to date an admin account; return (user, list of changes).

    rehash: "always" (hash it anew), "differs" (only when the stored hash
    does not verify it), "never" (only for a new account). An account that gets
    a new password loses every session. Audited when anything changed."""
    from .audit import audit
    from .auth import revoke_all_sessions
    from .models import User
    from .security import hash_password, verify_password
    from .subscriptions import ensure_default_plans, subscribe
    from .timeutil import utcnow

    if len(password) < 10:
        raise click.BadParameter("password must be at least 10 characters")
    ensure_default_plans()
    email = email.strip().lower()
    user = db.session.scalar(select(User).where(User.email == email))
    changes: list[str] = []

    def changed(what: str) -> None:
        if "created" not in changes:  # a new account reports "created" only
            changes.append(what)

    if user is None:
        user = User(email=email, name=name, password_hash=hash_password(password))
        db.session.add(user)
        changes.append("created")
    elif rehash == "always" or (rehash == "differs"
                                      and not verify_password(user.password_hash, password)):
        user.password_hash = hash_password(password)
        changed("password")
    for field, value in (("role", "admin"), ("status", "active")):
        if getattr(user, field) != value:
            setattr(user, field, value)
            changed(field)
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
        changed("email_verified")
    if user.subscription is None:
        subscribe(user)
        changed("subscription")
    db.session.flush()
    if "password" in changes:
        revoke_all_sessions(user.id)
    if changes:
        audit(action, "user", user.id, {"created": "created" in changes, "changed": changes}, actor_id=None)
    db.session.commit()
    return user, changes


def register_cli(app: Flask) -> None:
    @app.cli.command("create-admin")
    @click.option("--email", required=True)
    @click.option("--name", default="Administrator", show_default=True)
    @click.option("--password", envvar="SOCIALSPHERE_ADMIN_PASSWORD", prompt=True,
                  hide_input=True, confirmation_prompt=True,
                  help="or env SOCIALSPHERE_ADMIN_PASSWORD")
    def create_admin(email: str, name: str, password: str) -> None:
        """Create an admin account, or promote and reset an existing one."""
        user, changes = _ensure_admin(email, name, password, rehash="always", action="cli.create_admin")
        click.echo(f"{'created' if 'created' in changes else 'updated'} admin {user.email} (id {user.id})")

    @app.cli.command("ensure-admin")
    @click.option("--email", required=True)
    @click.option("--name", default="Administrator", show_default=True)
    @click.option("--password-policy", "policy", type=click.Choice(["enforce", "create"]), default="enforce",
                  show_default=True,
                  help="enforce: set the password whenever the account's differs from it; "
                       "create: only when the account is created")
    @click.option("--reset-password", is_flag=True,
                  help="set the password now if it differs, whatever the policy")
    def ensure_admin(email: str, name: str, policy: str, reset_password: bool) -> None:
        """Make sure EMAIL is an active, verified admin (the deployment's account).

        The password is read from standard input (never from the command line,
        where every local user sees it).

        Idempotent: changes only what differs and prints one JSON line
        {"email", "id", "created", "changed": [...]} (changed empty: nothing done).
        A password that is set ends every session of the account."""
        if sys.stdin.isatty():
            raise click.UsageError("pipe the password into standard input")
        password = sys.stdin.read().rstrip("\r\n")
        mode = "differs" if (policy == "enforce" or reset_password) else "never"
        user, changes = _ensure_admin(email, name, password, rehash=mode, action="cli.ensure_admin")
        click.echo(json.dumps({"email": user.email, "id": user.id, "created": "created" in changes,
                               "changed": changes}))

    @app.cli.command("seed-demo")
    @click.option("--email", default="demo@example.com", show_default=True)
    @click.option("--password", envvar="SOCIALSPHERE_DEMO_PASSWORD", default=None,
                  help="default: random, printed once")
    @click.option("--posts", default=12, show_default=True, type=click.IntRange(0, 100000))
    def seed_demo(email: str, password: str | None, posts: int) -> None:
        """Create default plans and a verified demo user with posts (idempotent)."""
        import secrets

        from .models import Post, User
        from .security import hash_password
        from .subscriptions import ensure_default_plans, subscribe
        from .timeutil import utcnow

        ensure_default_plans()
        user = db.session.scalar(select(User).where(User.email == email))
        if user is None:
            shown = password or secrets.token_urlsafe(12)
            user = User(email=email, name="Demo User", password_hash=hash_password(shown),
                        email_verified_at=utcnow())
            db.session.add(user)
            subscribe(user)
            db.session.flush()
            click.echo(f"created {email}" + ("" if password else f" with password {shown}"))
        existing = db.session.query(Post).filter_by(user_id=user.id).count()
        statuses = ["draft", "draft", "scheduled"]
        for i in range(existing, posts):
            status = statuses[i % 3]
            db.session.add(Post(
                user_id=user.id, title=f"Demo post {i + 1}",
                body=f"Demo content number {i + 1} about social media planning.",
                status=status, platforms=["twitter", "linkedin"][: 1 + i % 2],
                scheduled_at=utcnow() + timedelta(days=1 + i) if status == "scheduled" else None,
            ))
        db.session.commit()
        click.echo(f"demo user {email}: {max(posts, existing)} posts")

    @app.cli.command("publish-due")
    @click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
    @click.option("--loop", "loop", is_flag=True, help="keep running (SIGTERM stops cleanly)")
    @click.option("--interval", default=10.0, show_default=True)
    def publish_due_cmd(limit: int, loop: bool, interval: float) -> None:
        """Publish due scheduled publications (safe to run on several hosts)."""
        from .publisher import publish_due

        _loop(lambda: publish_due(limit), interval, not loop)

    @app.cli.command("send-email")
    @click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
    @click.option("--loop", "loop", is_flag=True, help="keep running (SIGTERM stops cleanly)")
    @click.option("--interval", default=10.0, show_default=True)
    def send_email_cmd(limit: int, loop: bool, interval: float) -> None:
        """Send queued emails from the outbox over SMTP."""
        from .emails import send_pending

        _loop(lambda: send_pending(limit), interval, not loop)

    @app.cli.command("schema-head")
    def schema_head() -> None:
        """Print the Alembic revision this code needs (compare with /readyz)."""
        from .schema import SCHEMA_HEAD

        click.echo(SCHEMA_HEAD)


def main() -> None:
    """Console script ``socialsphere``: the Flask CLI bound to this app."""
    from . import create_app

    os.environ.setdefault("FLASK_APP", "socialsphere.wsgi")
    cli = FlaskGroup(create_app=lambda: create_app(), help="SocialSphere AI management")
    sys.exit(cli.main())
