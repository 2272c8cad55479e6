"""tests/labkit/writer.py without the lab: the drills' writer process (tests/bench/db_writer.py
with the app's Python) started, read, waited for and stopped. SQLite stands in for
PostgreSQL; it has no now(), so every attempt fails and is logged as such, which is what
the drills' wait must refuse. Skips without app/.venv (`make -C app venv`)."""
import pathlib
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from labkit import writer  # noqa: E402

pytestmark = writer.requires_app_python


def test_the_writer_logs_each_attempt_is_refused_when_nothing_is_acknowledged_and_stops(tmp_path):
    url = f"sqlite:///{tmp_path / 'drill.db'}"
    w = writer.Writer(url, "drill", 60, prefix=str(tmp_path / "w-"))
    try:
        assert pathlib.Path(w.workdir).parent == tmp_path
        with pytest.raises(AssertionError, match="the writer could not write before the drill"):
            w.wait_acknowledged(count=1, timeout=1.5)
        acks, errors = w.log()
        assert acks == [] and len(errors) >= 3
        assert [i for i, _ in errors[:3]] == [1, 2, 3] and all(t <= time.time() for _, t in errors)
    finally:
        w.stop(timeout=30)
    assert w.proc.returncode == 0
    assert pathlib.Path(w.stop_path).exists()
    assert len(w.log()[1]) >= len(errors)
