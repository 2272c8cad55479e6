"""Failover drill (issue 5): kill the primary under a continuous writer, fail over,
rejoin, converge again. Asserts correctness (writes resume on the new primary,
no acknowledged write lost in synchronous mode, the old primary streams again,
second run changed=0); the timings are printed (tests/bench/db-failover.sh).
Run: LAB_INVENTORY=... pytest tests/e2e/test_db_failover.py -s
"""

import pytest

from labkit import db, writer

pytestmark = pytest.mark.skipif(not writer.APP_PYTHON.exists(), reason="app/.venv (SQLAlchemy + psycopg2) missing")


@pytest.fixture(scope="module")
def cluster():
    c = db.Cluster()
    if len(c.db) < 2 or not c.backup:
        pytest.skip("needs two db hosts and a backup host in the inventory")
    return c


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
def test_failover_and_rejoin(cluster, sync):
    figures = db.failover_drill(cluster, sync=sync)
    print(figures)
    assert figures["acknowledged_writes"] > 30
    assert figures["rto_from_kill_s"] > 0
    if sync:
        assert figures["lost_acknowledged_writes"] == 0
    assert figures["second_run_changed"] == 0
