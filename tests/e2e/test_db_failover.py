"""Failover drill (issue 5): kill the primary under a continuous writer, fail over,
rejoin, converge again. Asserts correctness (writes resume on the new primary,
no acknowledged write lost in synchronous mode, the old primary streams again,
second run changed=0); the timings are printed (tests/bench/db-failover.sh).
Run: LAB_INVENTORY=... pytest tests/e2e/test_db_failover.py -s
"""

import pytest

from labkit import db, writer

pytestmark = writer.requires_app_python


@pytest.fixture(scope="module")
def cluster():
    return db.drill_cluster(db_hosts=2, backup_hosts=1)


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
def test_failover_and_rejoin(cluster, sync):
    figures = db.failover_drill(cluster, sync=sync)
    print(figures)
    assert figures["acknowledged_writes"] > 30
    assert figures["rto_from_kill_s"] > 0
    if sync:
        assert figures["lost_acknowledged_writes"] == 0
    assert figures["second_run_changed"] == 0
