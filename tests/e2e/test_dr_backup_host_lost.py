"""Disaster drill: a backup (repository) host is destroyed while writes continue
(docs/runbooks/backup-host-lost.md).

1. A writer commits one row per transaction through the app's connection URL
   and logs every acknowledged commit.
2. The container of the first repository host is removed (the machine is gone).
3. Writes go on; every 10 s the primary switches WAL. Archiving goes on to the
   other repository: the last switched segment reaches it.
4. A new, empty machine with the same name (`labctl up <host>`), then
   `playbooks/replace-host.yml -e replace_host=<host>`: the site converges with
   it, its repository gets a stanza and a first full backup.
5. The writer stops; a scratch restore (playbooks/db-restore.yml) from each
   repository to the end of its archived WAL holds exactly the rows the primary
   holds, every acknowledged write among them: no hole in either archive.

Prints the figures: outage, WAL segments that reached the other repository
meanwhile, time to replace, each restore. A long drill: `make test-drills`.
Run: pytest -s tests/e2e/test_dr_backup_host_lost.py
"""
import json
import time

import pytest

from labkit import db
from labkit.db import max_archived, repo_info, repo_of, scratch_restore, switch_wal, wait_archived
from labkit.hosts import destroy, labctl
from labkit.writer import Writer

CHECKSUM = "SELECT count(*) || ':' || coalesce(md5(string_agg(id::text, ',' ORDER BY id)), '') FROM {table}"


@pytest.fixture(scope="module")
def cluster():
    return db.drill_cluster(db_hosts=1, backup_hosts=2)


def archiver(cluster, primary):
    return cluster.psql(primary, "SELECT archived_count || ' ' || failed_count FROM pg_stat_archiver").split()


def test_backup_host_lost_while_writes_continue(cluster, lab_inventory):
    lost, other = cluster.backup[0], cluster.backup[1]
    primary = cluster.primary()
    assert primary, "no primary is running"
    replica = next((h for h in cluster.db if h != primary), primary)
    figures = {"lost_host": lost, "lost_repo": repo_of(cluster, lost), "other_repo": repo_of(cluster, other)}

    table = f"drill_backup_lost_{int(time.time())}"
    cluster.psql(primary, f"SET ROLE socialsphere_owner; CREATE TABLE {table} "
                 "(id bigint PRIMARY KEY, written_at timestamptz NOT NULL)", db="socialsphere")
    writer = Writer(cluster.app_url(), table, 3600, prefix="dr-backup-")
    try:
        writer.wait_acknowledged()

        archived0, failed0 = archiver(cluster, primary)
        t_lost = time.time()
        destroy(lab_inventory, lost)
        print(f"\n{lost} destroyed (repository {figures['lost_repo']}); writes continue")

        segments = []
        for _ in range(6):
            time.sleep(10)
            segments.append(switch_wal(cluster, primary))
        # archiving goes on to the other repository: the last switched segment arrives
        # there. Not at once: each archive-push batch first retries the lost host for
        # about 3 minutes (pgBackRest 2.50's connection retries), then moves on.
        deadline = time.time() + 900
        while max_archived(repo_info(cluster, other)) < segments[-1]:
            assert time.time() < deadline, (f"segment {segments[-1]} never reached repository "
                                            f"{figures['other_repo']}: {max_archived(repo_info(cluster, other))}")
            time.sleep(3)
        archived1, failed1 = archiver(cluster, primary)
        figures.update(segments_switched_during_outage=len(segments),
                       other_repo_has_last_segment_after_s=round(time.time() - t_lost, 1),
                       pg_archiver_archived_delta=int(archived1) - int(archived0),
                       pg_archiver_failed_delta=int(failed1) - int(failed0))
        print(f"outage: {figures}")

        t_new = time.time()
        up = labctl(lab_inventory, "up", lost)
        assert up.returncode == 0, up.stdout + up.stderr
        t_play = time.time()
        cluster.playbook("replace-host.yml", {"replace_host": lost}, timeout=3600)
        t_done = time.time()
        figures.update(new_machine_s=round(t_play - t_new, 1), replace_playbook_s=round(t_done - t_play, 1),
                       outage_total_s=round(t_done - t_lost, 1))
        new_info = repo_info(cluster, lost)
        assert new_info.get("backup"), f"the new repository has no backup: {new_info}"
        assert new_info["status"]["code"] == 0, new_info["status"]
        time.sleep(5)
    finally:
        writer.stop(timeout=60)

    acks, errors = writer.log()
    figures.update(acknowledged_writes=len(acks), failed_writes=len(errors))
    final = switch_wal(cluster, primary)
    expected = cluster.psql(primary, CHECKSUM.format(table=table), db="socialsphere")
    present = {int(x) for x in cluster.psql(primary, f"SELECT id FROM {table}", db="socialsphere").split()}
    assert not [i for i, _ in acks if i not in present], "an acknowledged write is missing on the primary"
    wait_archived(cluster, final, hosts=(other, lost))

    for host in (other, lost):
        repo = repo_of(cluster, host)
        restored, figures[f"restore_repo{repo}_s"] = scratch_restore(cluster, repo, replica,
                                                                     CHECKSUM.format(table=table), writer.workdir)
        figures[f"restore_repo{repo}_rows"] = restored
        assert restored == expected, f"repository {repo} restores {restored}, the primary holds {expected}"
    figures["lost_acknowledged_writes"] = 0
    print(f"backup host lost: {json.dumps(figures)}")
