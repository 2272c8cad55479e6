from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade

from socialsphere import MIGRATIONS_DIR
from socialsphere.schema import SCHEMA_HEAD


def _script(app):
    config = app.extensions["migrate"].migrate.get_config(MIGRATIONS_DIR)
    return ScriptDirectory.from_config(config)


def test_schema_head_matches_migrations(app):
    with app.app_context():
        assert _script(app).get_heads() == [SCHEMA_HEAD]


def test_models_match_migrations(app, db):
    """No model change without a migration (autogenerate finds nothing to do)."""
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, db.metadata)
    assert diff == []


def test_downgrade_and_upgrade_roundtrip(make_app, tmp_path):
    from socialsphere.extensions import db

    app = make_app(SQLALCHEMY_DATABASE_URI="sqlite:///" + str(tmp_path / "roundtrip.db"))
    with app.app_context():
        upgrade()
        downgrade(revision="base")
        upgrade()
        with db.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == SCHEMA_HEAD


def test_0004_redacts_the_links_of_sent_mails(make_app, tmp_path):
    """Mails sent before 0004 kept their one-time tokens in clear: the upgrade redacts the links
    of sent verification/reset mails and leaves mails still to send (and other templates) alone."""
    from sqlalchemy import text

    from socialsphere.extensions import db

    link = "https://socialsphere.test/verify-email?token=Old_token-0123456789abcdefghijklmnopqrstuvwx"
    app = make_app(SQLALCHEMY_DATABASE_URI="sqlite:///" + str(tmp_path / "0004.db"))
    with app.app_context():
        upgrade(revision="0003_login_throttles")
        with db.engine.begin() as conn:
            for status, template in (("sent", "verify_email"), ("queued", "verify_email"),
                                     ("sent", "publish_failed")):
                conn.execute(text(
                    "INSERT INTO email_outbox (to_addr, template, subject, body_text, body_html, status, attempts,"
                    " next_attempt_at, created_at) VALUES ('a@example.com', :template, 's', :body, :html, :status,"
                    " 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                    {"template": template, "status": status, "body": f"Open {link}\n",
                     "html": f'<a href="{link}">confirm</a>'})
        upgrade()
        with db.engine.connect() as conn:
            rows = conn.execute(text("SELECT status, template, body_text, body_html, secret_encrypted"
                                     " FROM email_outbox ORDER BY id")).all()
    redacted = "https://socialsphere.test/verify-email?token=redacted"
    assert rows[0] == ("sent", "verify_email", f"Open {redacted}\n", f'<a href="{redacted}">confirm</a>', None)
    assert rows[1][2] == f"Open {link}\n"  # still to send: the worker redacts it once sent
    assert rows[2][2] == f"Open {link}\n"  # no one-time token in that template
