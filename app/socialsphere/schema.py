"""The Alembic revision this code needs (``/readyz`` compares the database to it).

``tests/test_migrations.py`` checks it equals the head of ``app/migrations``; the deploy
tooling can read it with ``flask --app socialsphere.wsgi schema-head``.
"""
SCHEMA_HEAD = "0001_initial"
