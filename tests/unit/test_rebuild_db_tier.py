"""playbooks/rebuild-db-tier.yml checks its request before it touches any host: each
test runs the real playbook against the complete fixture inventory (local
connection) and expects its first play (localhost only) to stop with a message that
names the problem and the variable to set. The last one shows that a valid request
passes these checks and preflight, and stops only where the fixture has no
pgBackRest repository to read (no host was changed before that)."""
import pathlib

import pytest

from ansible_run import local_env, local_os_as_supported, run_playbook

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "inventory_ok"
FIRST_CHANGE = "Mark the rebuild as under way"


def run(*extra):
    return run_playbook(FIXTURE / "hosts.yml", "rebuild-db-tier.yml", *extra, timeout=300, env=local_env())


def refused(rc, out):
    assert rc != 0
    assert "Wait until each database host answers" not in out, out[-2000:]
    assert FIRST_CHANGE not in out


def test_the_rebuild_needs_the_confirmation():
    rc, out = run()
    refused(rc, out)
    assert "Confirm the rebuild: -e rebuild_db_confirm=db1." in out, out[-2000:]


@pytest.mark.parametrize("confirm", ["db2", "app1", "DB1", "yes"])
def test_a_confirmation_that_does_not_name_the_primary_is_refused(confirm):
    rc, out = run("-e", f"rebuild_db_confirm={confirm}")
    refused(rc, out)
    assert f"rebuild_db_confirm={confirm} is not the primary of the inventory, db1." in out, out[-2000:]


@pytest.mark.parametrize("repo", ["3", "0", "two"])
def test_an_unknown_repository_is_refused_with_the_known_ones(repo):
    rc, out = run("-e", "rebuild_db_confirm=db1", "-e", f"rebuild_db_repo={repo}")
    refused(rc, out)
    assert (f"rebuild_db_repo={repo} is not a repository of this inventory: the backup hosts hold 1, 2"
            in out), out[-2000:]


@pytest.mark.parametrize("extra", [["-e", "rebuild_db_type=latest"], ["-e", "rebuild_db_type=time"],
                                   ["-e", "rebuild_db_type=name", "-e", "rebuild_db_target= "]])
def test_a_bad_recovery_type_or_a_missing_target_is_refused(extra):
    rc, out = run("-e", "rebuild_db_confirm=db1", *extra)
    refused(rc, out)
    assert "rebuild_db_type must be default (the end of the archived WAL; the default), time" in out, out[-2000:]


def test_a_valid_request_passes_the_checks_and_changes_nothing_before_reading_the_backups():
    rc, out = run("-e", "rebuild_db_confirm=db1", "-e", "rebuild_db_type=time",
                  "-e", "rebuild_db_target='2026-11-25 00:40:00+00'", "-e", "rebuild_db_repo=2",
                  "-e", local_os_as_supported())
    assert rc != 0  # the fixture's backup hosts have no pgBackRest
    assert "TASK [Record that preflight passed in this run]" in out, out[-3000:]
    assert "TASK [Read the repository's contents]" in out, out[-3000:]
    assert FIRST_CHANGE not in out
