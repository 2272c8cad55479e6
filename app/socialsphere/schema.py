"""The Alembic revision this code needs, and how the database's revision relates to it.

``tests/test_migrations.py`` checks ``SCHEMA_HEAD`` equals the head of ``app/migrations``;
the deploy tooling can read it with ``flask --app socialsphere.wsgi schema-head``.

``/readyz`` uses :func:`schema_relation`. Migrations are expand/contract and the new
release's migrations run before the old release's hosts are switched, so an old host
must stay ready on a database that is *ahead* of its code:

* ``equal``: the database is at ``SCHEMA_HEAD`` → ready;
* ``ahead``: the database is at a descendant of ``SCHEMA_HEAD``, or at a revision this
  code's migration scripts do not contain (a newer release's; the code cannot check its
  ancestry and relies on the expand/contract rule) → ready;
* ``behind``: a database head is ``SCHEMA_HEAD``'s ancestor (or a known revision that does
  not descend from it), i.e. this code's migrations are not applied → not ready;
* ``missing``: no ``alembic_version`` table, or it is empty → not ready.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Sequence

from alembic.config import Config
from alembic.script import ScriptDirectory

SCHEMA_HEAD = "0004_email_outbox_secret"

EQUAL, AHEAD, BEHIND, MISSING = "equal", "ahead", "behind", "missing"
READY_RELATIONS = frozenset({EQUAL, AHEAD})

_lock = threading.Lock()


def load_scripts(directory: str) -> ScriptDirectory:
    """This code's migration scripts (the revision graph is loaded eagerly)."""
    config = Config(os.path.join(directory, "alembic.ini"))
    config.set_main_option("script_location", directory)
    script = ScriptDirectory.from_config(config)
    script.revision_map.get_revision(SCHEMA_HEAD)  # loads every script; fails if HEAD is absent
    return script


def cached_scripts(extensions: dict, directory: str) -> ScriptDirectory:
    """:func:`load_scripts` once per app and directory (``app.extensions`` holds the cache)."""
    key = ("socialsphere.schema", directory)
    with _lock:
        script = extensions.get(key)
        if script is None:
            script = extensions[key] = load_scripts(directory)
    return script


def _lineage(script: ScriptDirectory, revision: str) -> set[str]:
    """``revision`` and all its ancestors."""
    return {s.revision for s in script.iterate_revisions(revision, "base")}


def schema_relation(db_heads: Sequence[str], script: ScriptDirectory | None,
                    head: str | None = None) -> str:
    """``equal`` | ``ahead`` | ``behind`` | ``missing`` (see the module docstring).

    ``script`` may be ``None`` only when no ancestry has to be decided (``db_heads`` empty or
    exactly ``[head]``).
    """
    head = head or SCHEMA_HEAD
    if not db_heads:
        return MISSING
    if list(db_heads) == [head]:
        return EQUAL
    if script is None:
        raise ValueError("migration scripts needed to compare revisions")
    known = {s.revision for s in script.walk_revisions()}
    below_head = _lineage(script, head) - {head}
    head_applied = False
    for rev in db_heads:
        if rev in below_head:
            return BEHIND  # exact ids only: alembic's prefix matching is never used
        if rev == head or rev not in known or head in _lineage(script, rev):
            head_applied = True
    return AHEAD if head_applied else BEHIND
