"""Switchover drill (issue 5): a writer commits continuously through the app's
multi-host URL while playbooks/db-switchover.yml swaps primary and replica.
Asserts: no acknowledged write lost, writes resume on the new primary, the old
primary streams from it, and db.yml with the roles swapped in the inventory
changes nothing. Runs the swap twice so the cluster ends as it started.
Run: LAB_INVENTORY=... pytest tests/e2e/test_db_switchover.py -s
"""

import pytest

from labkit import db, writer

pytestmark = writer.requires_app_python


@pytest.fixture(scope="module")
def cluster():
    return db.drill_cluster(db_hosts=2, backup_hosts=1)


@pytest.mark.parametrize("leg", ["there", "back"])
def test_switchover_loses_no_write(cluster, leg):
    figures = db.switchover_drill(cluster)
    print(leg, figures)
    assert figures["acknowledged_writes"] > 30
    assert figures["lost_acknowledged_writes"] == 0
    assert figures["second_run_changed"] == 0
