"""Switchover drill (issue 5): a writer commits continuously through the app's
multi-host URL while playbooks/db-switchover.yml swaps primary and replica.
Asserts: no acknowledged write lost, writes resume on the new primary, the old
primary streams from it, and db.yml with the roles swapped in the inventory
changes nothing. Runs the swap twice so the cluster ends as it started.
Run: LAB_INVENTORY=... pytest tests/e2e/test_db_switchover.py -s
"""
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import db_support  # noqa: E402

pytestmark = pytest.mark.skipif(not db_support.APP_PYTHON.exists(), reason="app/.venv (SQLAlchemy + psycopg2) missing")


@pytest.fixture(scope="module")
def cluster():
    c = db_support.Cluster()
    if len(c.db) < 2 or not c.backup:
        pytest.skip("needs two db hosts and a backup host in the inventory")
    return c


@pytest.mark.parametrize("leg", ["there", "back"])
def test_switchover_loses_no_write(cluster, leg):
    figures = db_support.switchover_drill(cluster)
    print(leg, figures)
    assert figures["acknowledged_writes"] > 30
    assert figures["lost_acknowledged_writes"] == 0
    assert figures["second_run_changed"] == 0
