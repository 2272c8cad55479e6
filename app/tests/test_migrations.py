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
