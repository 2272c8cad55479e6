"""Flask CLI commands (``flask --app socialsphere.wsgi <command>``).

* ``db upgrade``            apply migrations (Flask-Migrate; a deploy step)
* ``create-admin``          create or promote an admin account
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


def register_cli(app: Flask) -> None:
    @app.cli.command("create-admin")
    @click.option("--email", required=True)
    @click.option("--name", default="Administrator", show_default=True)
    @click.option("--password", envvar="SOCIALSPHERE_ADMIN_PASSWORD", prompt=True,
                  hide_input=True, confirmation_prompt=True,
                  help="or env SOCIALSPHERE_ADMIN_PASSWORD")
    def create_admin(email: str, name: str, password: str) -> None:
        """Create an admin account, or promote and reset an existing one."""
        from .audit import audit
        from .models import User
        from .security import hash_password
        from .subscriptions import ensure_default_plans, subscribe
        from .timeutil import utcnow

        if len(password) < 10:
            raise click.BadParameter("password must be at least 10 characters")
        ensure_default_plans()
        email = email.strip().lower()
        user = db.session.scalar(select(User).where(User.email == email))
        created = user is None
        if user is None:
            user = User(email=email, name=name, password_hash=hash_password(password))
            db.session.add(user)
        else:
            user.password_hash = hash_password(password)
        user.role = "admin"
        user.status = "active"
        user.email_verified_at = user.email_verified_at or utcnow()
        if user.subscription is None:
            subscribe(user)
        db.session.flush()
        audit("cli.create_admin", "user", user.id, {"created": created}, actor_id=None)
        db.session.commit()
        click.echo(f"{'created' if created else 'updated'} admin {email} (id {user.id})")

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
