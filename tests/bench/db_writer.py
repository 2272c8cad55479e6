"""Continuous writer for the failover drill: one INSERT per transaction, each on a
new connection through the app's multi-host URL (target_session_attrs=read-write).
Logs `ok <id> <epoch>` for every acknowledged commit, `err <id> <epoch> <error>`.
Runs with the app's virtualenv (SQLAlchemy + psycopg2):
  app/.venv/bin/python tests/bench/db_writer.py URL TABLE LOG STOPFILE MAX_SECONDS
"""
import os
import sys
import time

import sqlalchemy
from sqlalchemy.pool import NullPool


def main():
    url, table, log_path, stop_path, max_seconds = sys.argv[1:6]
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    insert = sqlalchemy.text(f"INSERT INTO {table} (id, written_at) VALUES (:id, now())")  # table name from the drill
    deadline = time.time() + float(max_seconds)
    n = 0
    with open(log_path, "w", encoding="utf-8") as log:
        while time.time() < deadline and not os.path.exists(stop_path):
            n += 1
            try:
                with engine.begin() as conn:
                    conn.execute(insert, {"id": n})
                log.write(f"ok {n} {time.time():.3f}\n")
            except Exception as exc:  # noqa: BLE001 - every failure is logged and retried
                log.write(f"err {n} {time.time():.3f} {type(exc).__name__}\n")
                time.sleep(0.1)
            log.flush()


if __name__ == "__main__":
    main()
