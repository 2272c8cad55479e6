"""playbooks/rotate-secrets.yml -e rotate=pgbackrest_cipher -e rotate_repo=N refuses an
unsafe cipher rotation, naming the variable, before anything changes; no container.

- The request (the repository number, a second repository, the vault's new pass: long
  enough and not another repository's) runs in the real playbook against a copy of the
  preflight fixture inventory (local connection).
- The safety checks (playbooks/tasks/rotate-pgbackrest-checks.yml: what each repository
  host reported against the request) run on made-up states, all cases in one run:
  nothing to rotate (the same pass), a configuration with the new pass but a
  repository that does not open with it, no healthy other repository, a resumed run.
- The role's template renders the repository host's configuration with the new pass at
  the same path, and the line that tasks/cipher_state.yml compares with the vault.
- scripts/pgbackrest-cipher writes a new pass into a real ansible-vault file: only that
  entry changes, nothing is printed.
"""
import pathlib
import re
import shutil

import pytest
import yaml

from ansible_run import (
    REPO,
    case_plan,
    case_refusal,
    encrypted_vault,
    local_env,
    render_role_template,
    run_check_cases,
    run_playbook,
    run_vault_script,
    vault_plaintext,
)

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "inventory_ok"
CHECKS_PLAYBOOK = pathlib.Path(__file__).parent / "playbooks" / "rotate_pgbackrest_checks.yml"
SCRIPT = REPO / "scripts" / "pgbackrest-cipher"
PASS1 = "repo-one-pass-" + "1" * 30
PASS2 = "repo-two-pass-" + "2" * 30


# ---------------------------------------------------------------- the request play
@pytest.fixture
def inventory(tmp_path):
    """The preflight fixture with real-length passes for both repositories."""
    dest = tmp_path / "inventory"
    shutil.copytree(FIXTURE, dest)
    set_passes(dest, PASS1, PASS2)
    return dest


def set_passes(inventory, one, two):
    path = inventory / "group_vars" / "all" / "vault.yml"
    data = yaml.safe_load(path.read_text())
    data.update(vault_pgbackrest_cipher_pass=one, vault_pgbackrest_repo2_cipher_pass=two)
    path.write_text(yaml.safe_dump(data))


def rotate(inventory, *extra):
    return run_playbook(inventory / "hosts.yml", "rotate-secrets.yml", "-e", "rotate=pgbackrest_cipher", *extra,
                        timeout=300, env=local_env())


def assert_refused(rc, out, message):
    assert rc != 0
    assert message in re.sub(r"\s+", " ", out), out[-3000:]
    assert "PLAY RECAP" in out and not re.search(r"changed=[1-9]", out)
    assert PASS1 not in out and PASS2 not in out


@pytest.mark.parametrize("extra, message", [
    ((), "-e rotate_repo=N names the pgBackRest repository whose cipher to rotate: one of 1, 2 (the pgbackrest_repo "
         "of each host of group backup: backup1: 1, backup2: 2) (got '')"),
    (("-e", "rotate_repo=3"), "one of 1, 2 (the pgbackrest_repo of each host of group backup: backup1: 1, "
                              "backup2: 2) (got '3')"),
    (("-e", "rotate_repo=two"), "(got 'two')"),
    (("-e", "rotate_repo=2", "--limit", "backup2"), "run it without --limit (left out: backup1, db1, db2)"),
    (("-e", "rotate_repo=2", "-e", "rotate_keep_old=maybe"), "rotate_keep_old and rotate_pgbackrest_rebuild must be "
                                                             "true or false"),
])
def test_a_bad_request_is_refused(inventory, extra, message):
    assert_refused(*rotate(inventory, *extra), message)


def test_an_unknown_repository_is_refused(inventory):
    assert_refused(*rotate(inventory, "-e", "rotate_repo=5"), "(got '5')")


def test_the_only_repository_is_refused(inventory):
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    del hosts["all"]["children"]["backup"]["hosts"]["backup2"]
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    assert_refused(*rotate(inventory, "-e", "rotate_repo=1"),
                   "Repository 1 is the only pgBackRest repository (backup1): its cipher changes by building a new "
                   "repository")


def test_a_short_pass_names_its_variable(inventory):
    set_passes(inventory, PASS1, "short")
    assert_refused(*rotate(inventory, "-e", "rotate_repo=2"),
                   "vault_pgbackrest_repo2_cipher_pass (in group_vars/all/vault.yml; the cipher of repository 2 on "
                   "backup2) is shorter than 20 characters")


def test_another_repositorys_pass_is_refused(inventory):
    set_passes(inventory, PASS1, PASS1)
    assert_refused(*rotate(inventory, "-e", "rotate_repo=1"),
                   "vault_pgbackrest_cipher_pass (in group_vars/all/vault.yml; the cipher of repository 1 on backup1) "
                   "is the pass of another repository")


# ---------------------------------------------------------------- the safety checks
def target(host="backup2", repo=2, rebuild=False, keep_old=False):
    return {"host": host, "repo": repo, "variable": f"vault_pgbackrest_repo{repo}_cipher_pass",
            "others": sorted({"backup1", "backup2", "backup3"} - {host}) if host == "backup3" else
            sorted({"backup1", "backup2"} - {host}), "keep_old": keep_old, "rebuild": rebuild}


def state(host, repo, current=False, ok=True, backups=2, check=True, mark=None, message="ok"):
    return {"host": host, "repo": repo, "config_current": current, "mark": mark or {},
            "info": {"ok": ok, "code": 0 if ok else 99, "message": message if ok else message, "backups": backups,
                     "newest_stop": 1767225600, "archive_max": "000000010000000000000042"},
            "check": {"ok": check, "message": "" if check else "ERROR: [082]: WAL segment was not archived"}}


def states(two=None, one=None):
    return {"backup1": one or state("backup1", 1, current=True),
            "backup2": two or state("backup2", 2)}


MARK = {"repo": 2, "started": "2026-12-03T10:00:00Z", "retired": "/var/lib/pgbackrest.retired-20261203T100000Z"}
CASES = {
    "new pass": {"target": target(), "states": states()},
    "same pass": {"target": target(), "states": states(two=state("backup2", 2, current=True))},
    "same pass, other repository down": {
        "target": target(), "states": states(two=state("backup2", 2, current=True),
                                             one=state("backup1", 1, ok=False, message="unable to connect"))},
    "new pass written by site.yml first": {
        "target": target(), "states": states(two=state("backup2", 2, current=True, ok=False,
                                                      message="[CryptoError] unable to flush: bad decrypt"))},
    "new pass written by site.yml first, rebuild": {
        "target": target(rebuild=True), "states": states(two=state("backup2", 2, current=True, ok=False))},
    "resumed": {"target": target(), "states": states(two=state("backup2", 2, current=True, ok=False, backups=0,
                                                              mark=MARK))},
    "other repository does not open": {
        "target": target(), "states": states(one=state("backup1", 1, ok=False, message="[CryptoError] bad decrypt"))},
    "other repository has no backup": {"target": target(), "states": states(one=state("backup1", 1, backups=0))},
    "other repository does not take WAL": {"target": target(), "states": states(one=state("backup1", 1, check=False))},
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_check_cases(tmp_path_factory.mktemp("cipher-checks"), CHECKS_PLAYBOOK, CASES)


def test_a_new_pass_rebuilds_the_repository_while_the_other_keeps_the_backups(results):
    plan = case_plan(results, "new pass")
    assert plan["needed"] is True and plan["resume"] is False
    assert (plan["host"], plan["repo"], plan["healthy"]) == ("backup2", 2, ["backup1"])
    assert "previous one removed once the new one holds a full backup" in re.sub(r"\s+", " ", plan["message"])


def test_the_same_pass_is_nothing_to_rotate(results):
    plan = case_plan(results, "same pass")
    assert plan["needed"] is False
    assert re.sub(r"\s+", " ", plan["message"]).startswith(
        "Nothing to rotate: repository 2 on backup2 already uses the vault's vault_pgbackrest_repo2_cipher_pass "
        "(2 backup(s)); put a new pass in the vault first (scripts/pgbackrest-cipher -i <inventory> new 2)")
    # nothing to do needs no other repository
    assert case_plan(results, "same pass, other repository down")["needed"] is False


def test_a_configuration_ahead_of_its_repository_is_refused_unless_rebuilt(results):
    msg = re.sub(r"\s+", " ", case_refusal(results, "new pass written by site.yml first"))
    assert ("backup2's configuration already has the vault's vault_pgbackrest_repo2_cipher_pass, but repository 2 "
            "does not open with it or has no backup (pgbackrest info: [CryptoError] unable to flush: bad decrypt)") \
        in msg
    assert "-e rotate_pgbackrest_rebuild=true" in msg
    assert case_plan(results, "new pass written by site.yml first, rebuild")["needed"] is True


def test_a_stopped_rotation_resumes(results):
    plan = case_plan(results, "resumed")
    assert plan["needed"] is True and plan["resume"] is True
    assert "resuming the rotation started 2026-12-03T10:00:00Z" in re.sub(r"\s+", " ", plan["message"])


@pytest.mark.parametrize("case, reason", [
    ("other repository does not open", "backup1 (repository 1): pgbackrest info: [CryptoError] bad decrypt"),
    ("other repository has no backup", "backup1 (repository 1): no backup"),
    ("other repository does not take WAL",
     "backup1 (repository 1): pgbackrest check: ERROR: [082]: WAL segment was not archived"),
])
def test_no_rotation_without_a_healthy_other_repository(results, case, reason):
    msg = re.sub(r"\s+", " ", case_refusal(results, case))
    assert msg.startswith("No other repository can keep point-in-time recovery going while repository 2 is rebuilt:")
    assert reason in msg and msg.endswith("nothing was changed.")


# ---------------------------------------------------------------- the rendered configuration
def render(tmp_path, **extra):
    variables = {"ansible_host": "192.0.2.21", "pgbackrest_repo_hosts": ["localhost"], "pgbackrest_db_hosts": [],
                 "pgbackrest_pg_version": "16", **extra}
    return render_role_template(tmp_path, "pgbackrest", "pgbackrest.conf.j2", variables).read_text()


def test_the_new_pass_goes_to_the_same_path(tmp_path):
    text = render(tmp_path, pgbackrest_repo=2, pgbackrest_cipher_pass=PASS2)
    assert "repo2-path=/var/lib/pgbackrest\n" in text
    assert "repo2-cipher-type=aes-256-cbc\n" in text
    # the line tasks/cipher_state.yml compares with the vault (its regex)
    assert re.findall(r"^repo2-cipher-pass=(.*)$", text, re.MULTILINE) == [PASS2]
    assert not re.search(r"^repo1-", text, re.MULTILINE)


# ---------------------------------------------------------------- scripts/pgbackrest-cipher
def test_the_script_writes_a_new_pass_and_prints_none(tmp_path):
    text = f"---\nvault_app_secret_key: keep-me\nvault_pgbackrest_cipher_pass: {PASS1}\n" \
           f"vault_pgbackrest_repo2_cipher_pass: {PASS2}\n"
    vault = encrypted_vault(tmp_path, text)
    rc, out = run_vault_script(SCRIPT, vault, "new", "2")
    assert rc == 0, out
    data = yaml.safe_load(vault_plaintext(*vault))
    new = data["vault_pgbackrest_repo2_cipher_pass"]
    assert new != PASS2 and len(new) == 64
    assert data["vault_pgbackrest_cipher_pass"] == PASS1 and data["vault_app_secret_key"] == "keep-me"
    assert new not in out and PASS1 not in out
    assert "vault_pgbackrest_repo2_cipher_pass has a new pass (64 characters)" in out
    assert "-e rotate=pgbackrest_cipher -e rotate_repo=2" in out


def test_the_script_refuses_an_unknown_repository(tmp_path):
    vault = encrypted_vault(tmp_path, f"---\nvault_pgbackrest_cipher_pass: {PASS1}\n")
    before = vault[0].read_bytes()
    rc, out = run_vault_script(SCRIPT, vault, "new", "3")
    assert rc == 1
    assert "has no vault_pgbackrest_repo3_cipher_pass" in out and "(known: 1)" in out
    assert vault[0].read_bytes() == before
