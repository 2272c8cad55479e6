"""A stale inventory cannot hurt the database tier: after a failover or
switchover the primary has moved; running db.yml (so site.yml, scale-out.yml,
db-rejoin.yml) with the old roles must stop in its first check, naming the host
and the fix, before anything changes (otherwise the replica play would stop
the live primary and rewind it from the standby)."""

import pytest

from labkit import db


@pytest.fixture(scope="module")
def cluster():
    return db.drill_cluster(db_hosts=2, backup_hosts=0)


def test_db_yml_refuses_roles_that_contradict_the_cluster(cluster):
    primary = cluster.primary()
    assert primary, "no primary is running"
    standby = next(h for h in cluster.db if h != primary)
    cluster.set_roles({primary: "replica", standby: "primary"})
    res = cluster.playbook("db.yml", {"db_preflight": False}, check=False)
    assert res.returncode != 0, "db.yml ran with roles that contradict the running cluster"
    out = res.stdout
    assert f"{primary} runs as a primary of this cluster but the inventory says postgresql_role: replica" in out, out[-3000:]
    assert f"{standby} runs as a standby of this cluster but the inventory says postgresql_role: primary" in out, out[-3000:]
    assert cluster.changed(res) == 0
    # nothing moved: same primary, the standby still streams from it
    assert cluster.primary() == primary
    cluster.wait_streaming(primary, standby, timeout=30)
