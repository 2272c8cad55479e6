"""The continuous database writer of the drills: tests/bench/db_writer.py, run with the
app's Python (app/.venv: SQLAlchemy + psycopg2) through the app's multi-host URL
(labkit.db.Cluster.app_url); it logs one line per attempt, `ok <id> <time>` for an
acknowledged write, else an error line with the id and time."""

from labkit.inventory import REPO

APP_PYTHON = REPO / "app" / ".venv" / "bin" / "python"
WRITER = REPO / "tests" / "bench" / "db_writer.py"

def read_log(path):
    """The writer's log: (acknowledged writes, failed attempts), each a list of (id, time)."""
    acks, errors = [], []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 3:
                (acks if parts[0] == "ok" else errors).append((int(parts[1]), float(parts[2])))
    return acks, errors

