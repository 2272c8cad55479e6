"""playbooks/rebuild-site.yml checks everything before it touches any host: each test
runs the real playbook against the complete fixture inventory (every host is this
machine, local connection, no sudo: -e ansible_become=false) with a made-up control
node (CA directory, state_backup_dir with the edge copies and the manifest, a release
artifact in dist/) and expects a refusal that names the problem, before the first
change (the mark of the rebuild). The last one shows that a complete request passes
every check up to reading the surviving repository (the fixture has no pgBackRest)."""
import json
import pathlib
import uuid

import pytest

from ansible_run import REPO, local_env, run_playbook

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "inventory_ok"
FIRST_CHANGE = "Mark the host as rebuilt by this site rebuild"
RELEASE = f"0.0.0+unittest{uuid.uuid4().hex[:8]}"


@pytest.fixture
def control(tmp_path):
    """A control node with its state restored: CA, edge copies, manifest, the artifact."""
    (tmp_path / "ca").mkdir()
    for name in ("ca.crt", "ca.key"):
        (tmp_path / "ca" / name).write_text("not a real CA\n")
    (tmp_path / "sb" / "letsencrypt").mkdir(parents=True)
    for edge in ("edge1", "edge2"):
        (tmp_path / "sb" / "letsencrypt" / f"{edge}.tar.gz.vault").write_text("$ANSIBLE_VAULT;1.1;AES256\n")
    (tmp_path / "sb" / "MANIFEST.json").write_text(json.dumps({"app_release": RELEASE}))
    (tmp_path / "pg").mkdir()
    (tmp_path / "repo").mkdir()
    artifact = REPO / "dist" / f"socialsphere-{RELEASE}.tar.gz"
    artifact.parent.mkdir(exist_ok=True)
    artifact.write_bytes(b"")
    yield tmp_path
    artifact.unlink()


def run(control, *extra, repo="2"):
    args = ["-e", f"internal_ca_dir={control / 'ca'}", "-e", f"state_backup_dir={control / 'sb'}",
            "-e", f"rebuild_site_pg_root={control / 'pg'}", "-e", f"pgbackrest_repo_path={control / 'repo'}",
            "-e", "ansible_become=false"]
    if repo is not None:
        args += ["-e", f"rebuild_repo={repo}"]
    rc, out = run_playbook(FIXTURE / "hosts.yml", "rebuild-site.yml", *args, *extra, timeout=300, env=local_env())
    assert FIRST_CHANGE not in out, out[-3000:]
    return rc, out


def refused_on_the_control_node(rc, out):
    assert rc != 0
    assert "Wait until the new machine answers" not in out, out[-2000:]


@pytest.mark.parametrize("repo", [None, "3", "0", "two"])
def test_the_surviving_repository_must_be_named(control, repo):
    rc, out = run(control, repo=repo)
    refused_on_the_control_node(rc, out)
    first = "Name the repository that survived: -e rebuild_repo=N." if repo is None \
        else f"rebuild_repo={repo} is not a repository of this inventory."
    assert first in out, out[-2000:]
    assert "The backup hosts hold 1 on backup1, 2 on backup2" in out, out[-2000:]


def test_no_internal_ca_on_the_control_node_is_refused(control):
    (control / "ca" / "ca.key").unlink()
    rc, out = run(control)
    refused_on_the_control_node(rc, out)
    assert f"The internal CA is not on this control node ({control / 'ca'}: missing ca.key)" in out, out[-2000:]
    assert "scripts/state-restore" in out


def test_an_edge_host_without_its_saved_certificate_is_refused_unless_asked(control):
    (control / "sb" / "letsencrypt" / "edge2.tar.gz.vault").unlink()
    rc, out = run(control)
    refused_on_the_control_node(rc, out)
    assert f"No saved /etc/letsencrypt for edge2 in {control / 'sb'}/letsencrypt/" in out, out[-2000:]
    # asked for: the check passes and the next one (the hosts) runs
    rc, out = run(control, "-e", "rebuild_site_new_certificates=true", "-e", f"rebuild_site_pg_root={control}")
    assert rc != 0
    assert "No saved /etc/letsencrypt" not in out
    assert "Wait until the new machine answers" in out, out[-2000:]


def test_no_release_is_refused_and_an_explicit_one_needs_its_artifact(control):
    (control / "sb" / "MANIFEST.json").unlink()
    rc, out = run(control)
    refused_on_the_control_node(rc, out)
    assert f"Which release did the app run? {control / 'sb'}/MANIFEST.json is not there" in out, out[-2000:]
    rc, out = run(control, "-e", "app_release_version=9.9.9+gdeadbee")
    refused_on_the_control_node(rc, out)
    assert "dist/socialsphere-9.9.9+gdeadbee.tar.gz is not on this control node" in out, out[-2000:]
    assert "git checkout deadbee" in out


def test_a_host_with_a_postgresql_data_directory_is_refused_by_name(control):
    (control / "pg" / "16" / "main").mkdir(parents=True)
    (control / "pg" / "16" / "main" / "PG_VERSION").write_text("16\n")
    rc, out = run(control)
    assert rc != 0
    assert f"db1 is not a new, empty machine: it holds a PostgreSQL data directory {control / 'pg'}/16/main" in out, \
        out[-2000:]
    # the surviving repository's host is not checked (nor changed)
    assert "backup2 is not a new, empty machine" not in out
    assert "Read the repository's contents" not in out


def test_a_backup_host_that_still_holds_a_repository_is_refused(control):
    stanza = control / "repo" / "backup" / "socialsphere"
    stanza.mkdir(parents=True)
    (stanza / "backup.info").write_text("[backrest]\n")
    rc, out = run(control, repo="1")
    assert rc != 0
    assert ("backup2 is not a new, empty machine: it holds a pgBackRest repository of the stanza "
            f"({stanza}/backup.info)") in out, out[-2000:]
    assert "backup1 is not a new, empty machine" not in out  # repository 1 is the surviving one


def test_a_complete_request_passes_every_check_up_to_the_surviving_repository(control):
    rc, out = run(control, "-e", "db_restore_target='2026-11-25 00:40:00+00'")
    assert rc != 0  # the fixture's backup hosts have no pgBackRest
    assert "TASK [Refuse a host that is not empty]" in out, out[-3000:]
    assert "Repository 2 on backup2 cannot be read" in out, out[-3000:]
    assert "it is the copy the site is rebuilt from" in out
