"""The continuous database writer of the drills: tests/bench/db_writer.py, run with the
app's Python (app/.venv: SQLAlchemy + psycopg2) through the app's multi-host URL
(labkit.db.Cluster.app_url); it logs one line per attempt, `ok <id> <time>` for an
acknowledged write, else an error line with the id and time."""
import os
import subprocess
import tempfile
import time

import pytest

from labkit.inventory import REPO

APP_PYTHON = REPO / "app" / ".venv" / "bin" / "python"
WRITER = REPO / "tests" / "bench" / "db_writer.py"
# The mark of a test module that runs the writer.
requires_app_python = pytest.mark.skipif(not APP_PYTHON.exists(), reason="app/.venv (SQLAlchemy + psycopg2) missing")


def read_log(path):
    """The writer's log: (acknowledged writes, failed attempts), each a list of (id, time)."""
    acks, errors = [], []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 3:
                (acks if parts[0] == "ok" else errors).append((int(parts[1]), float(parts[2])))
    return acks, errors



class Writer:
    """db_writer.py in the background: one row a transaction into ``table`` through ``url``
    until stop() (or ``max_seconds``, its own bound); its log in a new directory named
    after ``prefix``."""

    def __init__(self, url, table, max_seconds, prefix="db-drill-"):
        self.workdir = tempfile.mkdtemp(prefix=prefix)  # the drill may keep more files there
        self.log_path = os.path.join(self.workdir, "writes.log")
        self.stop_path = os.path.join(self.workdir, "stop")
        self.proc = subprocess.Popen([str(APP_PYTHON), str(WRITER), url, table, self.log_path, self.stop_path,
                                      str(max_seconds)])

    def log(self):
        """(acknowledged writes, failed attempts) so far (read_log)."""
        return read_log(self.log_path)

    def wait_acknowledged(self, count=30, timeout=60):
        """Wait until ``count`` writes were acknowledged (at most ``timeout`` s); the number."""
        deadline = time.time() + timeout
        while time.time() < deadline and (not os.path.exists(self.log_path) or len(read_log(self.log_path)[0]) < count):
            time.sleep(0.2)
        acknowledged = len(read_log(self.log_path)[0])
        assert acknowledged >= count, "the writer could not write before the drill"
        return acknowledged

    def stop(self, timeout=30):
        """Tell the writer to stop and wait for it."""
        open(self.stop_path, "w", encoding="utf-8").close()
        self.proc.wait(timeout=timeout)
