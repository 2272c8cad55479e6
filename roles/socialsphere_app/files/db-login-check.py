"""Log in to the app's database with a URL read from stdin, as the app would, and say
what the database made of it, as one JSON line.

    echo "$URL" | <release>/venv/bin/python db-login-check.py GROUP_ROLE

Run with the Python of the release the host runs (its SQLAlchemy, psycopg2 and
socialsphere.config.normalize_database_url: the app's own way to the primary,
libpq multi-host with target_session_attrs=read-write, TLS verify-full), from
the app host itself (so its pg_hba.conf line counts). Used by the socialsphere_app
role (tasks_from: db_login) for playbooks/rotate-secrets.yml -e rotate=db: a
phase never moves a host to a login the database does not accept.

Prints: ok (logged in, a member of GROUP_ROLE that inherits its privileges, and
the schema version table readable when it exists), user (current_user),
member, schema_readable (null: no table yet), error (never the password).
"""
import json
import sys


def main():
    group = sys.argv[1]
    url = sys.stdin.readline().strip()
    state = {"ok": False, "user": "", "member": False, "schema_readable": None, "error": ""}
    password = ""
    try:
        from sqlalchemy import create_engine, make_url, text
        from sqlalchemy.pool import NullPool

        try:
            from socialsphere.config import normalize_database_url
        except ImportError:  # an older release: the URL as it is
            def normalize_database_url(value):
                return value
        password = make_url(url).password or ""
        engine = create_engine(normalize_database_url(url), poolclass=NullPool)
        with engine.connect() as conn:
            row = conn.execute(text(
                "SELECT current_user, pg_has_role(current_user, :group, 'USAGE'), "
                "CASE WHEN to_regclass('alembic_version') IS NULL THEN NULL "
                "ELSE has_table_privilege('alembic_version', 'SELECT') END"), {"group": group}).one()
        state.update(user=row[0], member=bool(row[1]), schema_readable=row[2])
        state["ok"] = state["member"] and state["schema_readable"] is not False
        if not state["member"]:
            state["error"] = f"{row[0]} does not inherit the privileges of {group}"
        elif state["schema_readable"] is False:
            state["error"] = f"{row[0]} cannot read alembic_version (the readiness check would fail)"
    except Exception as exc:  # noqa: BLE001 - every failure is the answer, reported without the secret
        message = " ".join(str(getattr(exc, "orig", None) or exc).split())
        if password:
            message = message.replace(password, "********")
        state["error"] = f"{type(exc).__name__}: {message[:300]}"
    print(json.dumps(state, sort_keys=True))


if __name__ == "__main__":
    main()
