"""playbooks/rotate-secrets.yml refuses unsafe JWT key rotations, with a message that
names the problem, before anything changes; no container needed.

- The request play (what to rotate, the phase, --limit, the vault's key set) runs in
  the real playbook against a copy of the preflight fixture inventory (local connection).
- The phase checks (playbooks/tasks/rotate-jwt-checks.yml: the vault against what each
  app host's Gunicorn runs with) run on made-up host states, all cases in one run.
- The reader of those states (roles/socialsphere_app/files/running-state.py) runs
  against a real process started with a known environment and a stand-in systemctl.
- scripts/jwt-keys edits a real ansible-vault file: only the two entries change, no
  secret is printed, unsafe requests are refused.
"""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from ansible_run import (
    BIN,
    REPO,
    ansible_env,
    case_plan,
    case_refusal,
    encrypted_vault,
    local_env,
    local_os_as_supported,
    run_check_cases,
    run_playbook,
    run_vault_script,
    vault_plaintext,
)

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "inventory_ok"
CHECKS_PLAYBOOK = pathlib.Path(__file__).parent / "playbooks" / "rotate_jwt_checks.yml"
STATE_SCRIPT = REPO / "roles" / "socialsphere_app" / "files" / "running-state.py"
JWT_KEYS = REPO / "scripts" / "jwt-keys"
SECRET_1 = "s1-" + "a" * 40
SECRET_2 = "s2-" + "b" * 40


# ---------------------------------------------------------------- the request play
@pytest.fixture
def inventory(tmp_path):
    """The preflight fixture, with the app group's mapping of the JWT keys and a key the
    app would accept (>= 32 characters)."""
    dest = tmp_path / "inventory"
    shutil.copytree(FIXTURE, dest)
    (dest / "group_vars" / "app").mkdir()
    (dest / "group_vars" / "app" / "vars.yml").write_text(
        "---\nsocialsphere_app_jwt_keys: \"{{ vault_app_jwt_keys }}\"\n"
        "socialsphere_app_jwt_active_kid: \"{{ vault_app_jwt_active_kid }}\"\n")
    set_vault(dest, {"k1": SECRET_1}, "k1")
    return dest


def set_vault(inventory, keys, active):
    path = inventory / "group_vars" / "all" / "vault.yml"
    data = yaml.safe_load(path.read_text())
    data.update(vault_app_jwt_keys=json.dumps(keys) if isinstance(keys, dict) else keys,
                vault_app_jwt_active_kid=active)
    path.write_text(yaml.safe_dump(data))


def rotate(inventory, *extra):
    return run_playbook(inventory / "hosts.yml", "rotate-secrets.yml", *extra, timeout=300,
                        env=local_env())


def test_the_playbook_parses_with_the_production_inventory():
    proc = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", "inventories/production",
                           "playbooks/rotate-secrets.yml"], cwd=REPO, env=ansible_env(), capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("extra, message", [
    ((), "rotate-secrets.yml needs -e rotate=jwt (the app's JWT signing keys), -e rotate=db (the app's database "
         "password), -e rotate=deploy_key (the deploy user's SSH key) or -e rotate=pgbackrest_cipher -e rotate_repo=N "
         "(a pgBackRest repository's cipher) (got '')"),
    (("-e", "rotate=ssh"), "or -e rotate=pgbackrest_cipher -e rotate_repo=N (a pgBackRest repository's cipher) (got 'ssh')"),
    (("-e", "rotate=jwt"), "-e rotate_jwt_phase=add|activate|retire is required (got '')"),
    (("-e", "rotate=jwt", "-e", "rotate_jwt_phase=swap"), "-e rotate_jwt_phase=add|activate|retire is required (got 'swap')"),
    (("-e", "rotate=jwt", "-e", "rotate_jwt_phase=add", "--limit", "app1"),
     "run it without --limit (left out: app2)"),
    (("-e", "rotate=jwt", "-e", "rotate_jwt_phase=add", "--limit", "edge1"),
     "run it without --limit (left out: app1, app2)"),
    (("-e", "rotate=jwt", "-e", "rotate_jwt_phase=retire", "-e", "rotate_jwt_retire_force=maybe"),
     "rotate_jwt_retire_force must be true or false"),
])
def test_a_bad_request_is_refused_with_its_reason(inventory, extra, message):
    rc, out = rotate(inventory, *extra)
    assert rc != 0
    assert message in out, out[-3000:]
    assert "PLAY RECAP" in out and not re.search(r"changed=[1-9]", out)


@pytest.mark.parametrize("keys, active, phase, message", [
    ("not json", "k1", "add",
     "socialsphere_app_jwt_keys (vault_app_jwt_keys in group_vars/all/vault.yml) is not a JSON object"),
    ({}, "k1", "add", "is not a non-empty JSON object"),
    ({"k1": SECRET_1, "k2": "short"}, "k1", "add",
     "vault_app_jwt_keys: the secret of kid(s) k2 is shorter than 32 characters"),
    ({"k1": SECRET_1}, "k2", "activate", "vault_app_jwt_active_kid ('k2') is not a key of vault_app_jwt_keys (kids: k1)."),
    ({"k2": SECRET_2}, "k1", "retire",
     "vault_app_jwt_active_kid ('k1') is not a key of vault_app_jwt_keys (kids: k2): the signing key cannot be retired"),
])
def test_a_bad_key_set_in_the_vault_is_refused(inventory, keys, active, phase, message):
    set_vault(inventory, keys, active)
    rc, out = rotate(inventory, "-e", "rotate=jwt", "-e", f"rotate_jwt_phase={phase}")
    assert rc != 0
    assert message in out, out[-3000:]
    assert SECRET_1 not in out and SECRET_2 not in out


def test_keys_the_inventory_does_not_map_are_named(inventory):
    (inventory / "group_vars" / "app" / "vars.yml").write_text("---\n{}\n")
    rc, out = rotate(inventory, "-e", "rotate=jwt", "-e", "rotate_jwt_phase=add")
    assert rc != 0
    assert "socialsphere_app_jwt_keys (vault_app_jwt_keys in group_vars/all/vault.yml) is not set" in out, out[-3000:]


def test_app_hosts_with_different_key_sets_are_refused(inventory):
    (inventory / "host_vars").mkdir()
    (inventory / "host_vars" / "app2.yml").write_text(f"socialsphere_app_jwt_keys: '{json.dumps({'k9': SECRET_2})}'\n")
    rc, out = rotate(inventory, "-e", "rotate=jwt", "-e", "rotate_jwt_phase=add")
    assert rc != 0
    assert ("differ between app hosts (app1: kids k1, active 'k1'; app2: kids k9, active 'k1'). "
            "Every app host must get the same keys") in out, out[-3000:]
    assert SECRET_2 not in out


def test_a_valid_request_goes_on_to_read_the_app_hosts(inventory):
    """Past the request play and the inventory preflight, the hosts are read: this
    machine runs no socialsphere.service, so the phase checks stop there."""
    rc, out = rotate(inventory, "-e", "rotate=jwt", "-e", "rotate_jwt_phase=add", "-e", "ansible_become=false",
                     "-e", local_os_as_supported())
    assert rc != 0
    assert "app1: socialsphere.service is not running" in out, out[-3000:]
    assert not re.search(r"changed=[1-9]", out) and SECRET_1 not in out


# ---------------------------------------------------------------- the phase checks
NOW = 1_000_000.0


def host(kids, active, started=NOW - 5000, ttl=900, **kw):
    return dict({"running": True, "error": "", "jwt_kids": sorted(kids), "jwt_active_kid": active,
                 "started": started, "now": NOW, "access_ttl": ttl, "release": "1.0.0+gabc"}, **kw)


def case(phase, kids, active, running, **kw):
    return dict({"phase": phase, "target": {"kids": sorted(kids), "active": active}, "running": running}, **kw)


OLD = ["k1"]
BOTH = ["k1", "k2"]
CASES = {
    # add
    "add": case("add", BOTH, "k1", {"app1": host(OLD, "k1"), "app2": host(OLD, "k1")}),
    "add again": case("add", BOTH, "k1", {"app1": host(BOTH, "k1"), "app2": host(BOTH, "k1")}),
    "add resumed": case("add", BOTH, "k1", {"app1": host(BOTH, "k1"), "app2": host(OLD, "k1")}),
    "add switching the signing key": case("add", BOTH, "k2", {"app1": host(OLD, "k1"), "app2": host(OLD, "k1")}),
    "add removing a key": case("add", ["k2"], "k2", {"app1": host(BOTH, "k2"), "app2": host(BOTH, "k2")}),
    "add with a host down": case("add", BOTH, "k1", {"app1": host(OLD, "k1"),
                                                     "app2": host([], "", running=False, started=None)}),
    # activate
    "activate": case("activate", BOTH, "k2", {"app1": host(BOTH, "k1"), "app2": host(BOTH, "k1")}),
    "activate resumed": case("activate", BOTH, "k2", {"app1": host(BOTH, "k2"), "app2": host(BOTH, "k1")}),
    "activate a key a host lacks": case("activate", BOTH, "k2", {"app1": host(BOTH, "k1"), "app2": host(OLD, "k1")}),
    "activate and add": case("activate", ["k1", "k2", "k3"], "k2", {"app1": host(BOTH, "k1"), "app2": host(BOTH, "k1")}),
    "activate and retire": case("activate", ["k2"], "k2", {"app1": host(BOTH, "k1"), "app2": host(BOTH, "k1")}),
    # retire (NOW - started: app1 1000 s, app2 500 s; tokens live 900 s, + 60 s margin)
    "retire": case("retire", ["k2"], "k2", {"app1": host(BOTH, "k2", started=NOW - 1000),
                                            "app2": host(BOTH, "k2", started=NOW - 1000)}),
    "retire too early": case("retire", ["k2"], "k2", {"app1": host(BOTH, "k2", started=NOW - 1000),
                                                      "app2": host(BOTH, "k2", started=NOW - 500)}),
    "retire too early, forced": case("retire", ["k2"], "k2", {"app1": host(BOTH, "k2", started=NOW - 1000),
                                                              "app2": host(BOTH, "k2", started=NOW - 500)},
                                     force=True),
    "retire with a longer token lifetime": case("retire", ["k2"], "k2",
                                                {"app1": host(BOTH, "k2", started=NOW - 1000, ttl=1800),
                                                 "app2": host(BOTH, "k2", started=NOW - 1000)}),
    "retire resumed": case("retire", ["k2"], "k2", {"app1": host(["k2"], "k2", started=NOW - 10),
                                                    "app2": host(BOTH, "k2", started=NOW - 1000)}),
    "retire again": case("retire", ["k2"], "k2", {"app1": host(["k2"], "k2", started=NOW - 10),
                                                  "app2": host(["k2"], "k2", started=NOW - 5)}),
    "retire before activate finished": case("retire", ["k2"], "k2", {"app1": host(BOTH, "k2", started=NOW - 1000),
                                                                     "app2": host(BOTH, "k1")}),
    "retire and add": case("retire", ["k2", "k3"], "k2", {"app1": host(BOTH, "k2"), "app2": host(BOTH, "k2")}),
}


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    return run_check_cases(tmp_path_factory.mktemp("rotate_jwt_checks"), CHECKS_PLAYBOOK, CASES)


plan = case_plan
refusal = case_refusal


def test_add_rolls_the_new_key_out_while_the_old_one_signs(checked):
    assert plan(checked, "add") == {"phase": "add", "needed": True, "hosts_to_change": ["app1", "app2"],
                                    "adding": ["k2"], "retiring": [], "forced": False}
    assert plan(checked, "add resumed")["hosts_to_change"] == ["app2"]


def test_a_phase_that_is_done_changes_nothing(checked):
    for name in ("add again", "retire again"):
        assert plan(checked, name)["needed"] is False, name
        assert plan(checked, name)["hosts_to_change"] == [], name


def test_add_refuses_to_switch_the_signing_key(checked):
    msg = refusal(checked, "add switching the signing key")
    assert "Phase add keeps signing with the current key, but vault_app_jwt_active_kid is 'k2' while app1 signs with 'k1'" in msg


def test_add_refuses_to_remove_a_key(checked):
    assert "Phase add removes no key, but app1 runs with kid(s) k1 that vault_app_jwt_keys no longer has" \
        in refusal(checked, "add removing a key")


def test_a_host_whose_app_does_not_run_stops_every_phase(checked):
    msg = refusal(checked, "add with a host down")
    assert "app2: socialsphere.service is not running" in msg and "start it first" in msg


def test_activate_makes_the_new_key_sign(checked):
    assert plan(checked, "activate")["hosts_to_change"] == ["app1", "app2"]
    assert plan(checked, "activate resumed")["hosts_to_change"] == ["app2"]


def test_activate_refuses_a_kid_that_a_host_does_not_know(checked):
    msg = refusal(checked, "activate a key a host lacks")
    assert "Refusing to activate kid 'k2': app2 does not know it yet (it runs with kid(s) k1)" in msg
    assert "Run -e rotate_jwt_phase=add first" in msg


def test_activate_changes_nothing_but_the_signing_key(checked):
    assert "Phase activate changes only vault_app_jwt_active_kid" in refusal(checked, "activate and add")
    assert "Phase activate changes only vault_app_jwt_active_kid" in refusal(checked, "activate and retire")


def test_retire_after_the_token_lifetime(checked):
    assert plan(checked, "retire") == {"phase": "retire", "needed": True, "hosts_to_change": ["app1", "app2"],
                                       "adding": [], "retiring": ["k1"], "forced": False}


def test_retire_before_the_old_tokens_expired_is_refused_with_the_time_to_wait(checked):
    msg = refusal(checked, "retire too early")
    assert "Too early to retire kid(s) k1: app2 signs with 'k2' only since 1970-01-12 13:38:20 UTC" in msg
    assert "valid for 900 s (+ rotate_jwt_retire_margin 60 s)" in msg
    assert "Retire from 1970-01-12 13:54:20 UTC on (in 460 s)" in msg
    assert "rotate_jwt_retire_force=true" in msg
    assert "app1" not in msg  # app1's old tokens have expired


def test_a_forced_retire_skips_the_wait(checked):
    result = plan(checked, "retire too early, forced")
    assert result["forced"] is True and result["retiring"] == ["k1"]


def test_the_longest_token_lifetime_counts(checked):
    assert "valid for 1800 s" in refusal(checked, "retire with a longer token lifetime")


def test_a_resumed_retire_waits_only_for_hosts_that_still_know_the_old_key(checked):
    assert plan(checked, "retire resumed")["hosts_to_change"] == ["app2"]


def test_retire_refuses_while_a_host_still_signs_with_the_old_key(checked):
    msg = refusal(checked, "retire before activate finished")
    assert "while app2 still signs with 'k1' (the key this phase would retire). Finish phase activate first" in msg


def test_retire_refuses_to_add_a_key(checked):
    assert "Phase retire only removes keys, but vault_app_jwt_keys has kid(s) k3" in refusal(checked, "retire and add")


# ---------------------------------------------------------------- running-state.py
@pytest.fixture
def app_process(tmp_path):
    """A process started with the app's environment, and a systemctl that names it."""
    env = {"PATH": "/usr/bin:/bin", "SOCIALSPHERE_JWT_KEYS": json.dumps({"k2": SECRET_2, "k1": SECRET_1}),
           "SOCIALSPHERE_JWT_ACTIVE_KID": "k2", "SOCIALSPHERE_ACCESS_TOKEN_TTL": "600"}
    proc = subprocess.Popen(["sleep", "120"], env=env)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "systemctl").write_text(f"#!/bin/sh\necho {proc.pid}\n")
    (fake / "systemctl").chmod(0o755)
    root = tmp_path / "srv"
    (root / "releases" / "1.2.3+gabc").mkdir(parents=True)
    (root / "current").symlink_to(root / "releases" / "1.2.3+gabc")
    env_file = tmp_path / "socialsphere.env"
    env_file.write_text("# the file systemd read\n")
    yield {"pid": proc.pid, "path": f"{fake}:{os.environ['PATH']}", "root": root, "env_file": env_file}
    proc.kill()
    proc.wait()


def read_state(app_process):
    out = subprocess.run([sys.executable, str(STATE_SCRIPT), str(app_process["env_file"]), "socialsphere.service",
                          str(app_process["root"])], env=dict(os.environ, PATH=app_process["path"]),
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return out, json.loads(out)


def test_the_state_is_read_from_the_running_process_without_its_secrets(app_process):
    os.utime(app_process["env_file"], (time.time() - 3600, time.time() - 3600))
    out, state = read_state(app_process)
    assert state["running"] and state["pid"] == app_process["pid"] and state["error"] == ""
    assert state["jwt_kids"] == ["k1", "k2"] and state["jwt_active_kid"] == "k2"
    assert state["access_ttl"] == 600 and state["release"] == "1.2.3+gabc"
    assert abs(state["started"] - time.time()) < 60 and abs(state["now"] - time.time()) < 60
    assert state["env_stale"] is False
    assert SECRET_1 not in out and SECRET_2 not in out


def test_an_environment_file_newer_than_the_process_is_stale(app_process):
    os.utime(app_process["env_file"], (time.time() + 5, time.time() + 5))
    assert read_state(app_process)[1]["env_stale"] is True


def test_no_running_service_reads_as_not_running(app_process, tmp_path):
    (tmp_path / "bin" / "systemctl").write_text("#!/bin/sh\necho 0\n")
    state = read_state(app_process)[1]
    assert state["running"] is False and state["jwt_kids"] == [] and state["release"] == "1.2.3+gabc"


# ---------------------------------------------------------------- the playbook on a running "app"
def rotate_against(inventory, app_process, *extra):
    """The whole playbook, the app hosts being this machine, whose "Gunicorn" is the
    process of app_process (k1 + k2, k2 signing, started just now)."""
    env = local_env()
    env["PATH"] = f"{app_process['path'].split(':')[0]}:{env['PATH']}"
    return run_playbook(inventory / "hosts.yml", "rotate-secrets.yml", "-e", "rotate=jwt", "-e", "ansible_become=false",
                        "-e", f"socialsphere_app_root={app_process['root']}",
                        "-e", f"socialsphere_app_config_dir={app_process['env_file'].parent}",
                        "-e", local_os_as_supported(), *extra, timeout=300, env=env)


def test_a_phase_that_every_host_runs_already_changes_nothing_and_says_what_next(inventory, app_process):
    set_vault(inventory, {"k1": SECRET_1, "k2": SECRET_2}, "k2")
    rc, out = rotate_against(inventory, app_process, "-e", "rotate_jwt_phase=activate")
    assert rc == 0, out[-4000:]
    assert "every app host runs it already: nothing to do" in out
    assert "Every app host signs with k2. Next, from" in out and "rotate_jwt_phase=retire" in out
    assert "PLAY RECAP" in out and not re.search(r"changed=[1-9]", out)
    assert SECRET_1 not in out and SECRET_2 not in out


def test_retiring_too_early_is_refused_by_the_playbook(inventory, app_process):
    set_vault(inventory, {"k2": SECRET_2}, "k2")
    rc, out = rotate_against(inventory, app_process, "-e", "rotate_jwt_phase=retire")
    assert rc != 0
    # the app's own lifetime (600 s) is shorter than the inventory's (the default, 900 s): the longer counts
    assert "Too early to retire kid(s) k1: app1 signs with 'k2' only since" in out, out[-4000:]
    assert "valid for 900 s" in out


def test_a_rollout_needs_the_artifact_of_the_running_release(inventory, app_process):
    set_vault(inventory, {"k1": SECRET_1, "k2": SECRET_2, "k3": "s3-" + "c" * 40}, "k2")
    rc, out = rotate_against(inventory, app_process, "-e", "rotate_jwt_phase=add")
    assert rc != 0
    assert "dist/socialsphere-1.2.3+gabc.tar.gz, the release the app hosts run, is not on this control node" in out, \
        out[-4000:]
    assert "PLAY RECAP" in out and not re.search(r"changed=[1-9]", out)


# ---------------------------------------------------------------- scripts/jwt-keys
VAULT_TEXT = f"""---
# Secrets of the test environment.
vault_app_secret_key: "keep-me"
vault_app_jwt_keys: "{{\\"k1\\": \\"{SECRET_1}\\"}}"
vault_app_jwt_active_kid: "k1"
vault_other: |
  two
  lines

vault_last: x
"""


@pytest.fixture
def vault(tmp_path):
    return encrypted_vault(tmp_path, VAULT_TEXT)


def jwt_keys(vault, *args):
    return run_vault_script(JWT_KEYS, vault, *args)


def plaintext(vault):
    return vault_plaintext(*vault)


def test_a_whole_rotation_edits_only_the_two_entries_and_prints_no_secret(vault):
    rc, out = jwt_keys(vault, "add", "--kid", "k2")
    assert rc == 0, out
    assert "added k2 (not signing yet)" in out and "kids k1 (signing), k2" in out
    assert "-e rotate_jwt_phase=add" in out
    data = yaml.safe_load(plaintext(vault))
    keys = json.loads(data["vault_app_jwt_keys"])
    assert list(keys) == ["k1", "k2"] and keys["k1"] == SECRET_1 and len(keys["k2"]) >= 32
    assert data["vault_app_jwt_active_kid"] == "k1"
    assert keys["k2"] not in out and SECRET_1 not in out
    others = [line for line in plaintext(vault).splitlines() if not line.startswith("vault_app_jwt")]
    assert others == [line for line in VAULT_TEXT.splitlines() if not line.startswith("vault_app_jwt")]

    rc, out = jwt_keys(vault, "activate")
    assert rc == 0 and "k2 signs from the next rollout on" in out, out
    assert yaml.safe_load(plaintext(vault))["vault_app_jwt_active_kid"] == "k2"
    rc, out = jwt_keys(vault, "activate")  # again: the newest key signs already, nothing flips back
    assert rc == 0 and "k2 signs already" in out, out

    rc, out = jwt_keys(vault, "retire")
    assert rc == 0 and "retired k1" in out and "kids k2 (signing)" in out, out
    data = yaml.safe_load(plaintext(vault))
    assert json.loads(data["vault_app_jwt_keys"]) == {"k2": keys["k2"]} and data["vault_app_jwt_active_kid"] == "k2"
    rc, out = jwt_keys(vault, "retire")
    assert rc == 0 and "nothing to retire" in out, out


@pytest.mark.parametrize("steps, message", [
    ([("retire", "k1")], "k1 is the signing key: it cannot be retired, activate another key first"),
    ([("activate", "k7")], "kid k7 is not in the vault (kids k1 (signing)): add it first"),
    ([("add", "--kid", "k2"), ("add",)], "a rotation is in progress (kids k1 (signing), k2): finish it"),
    ([("add", "--kid", "bad kid")], "kid 'bad kid': use letters, digits"),
])
def test_unsafe_edits_are_refused_and_leave_the_vault_alone(vault, steps, message):
    for step in steps[:-1]:
        assert jwt_keys(vault, *step)[0] == 0
    before = vault[0].read_bytes()
    rc, out = jwt_keys(vault, *steps[-1])
    assert rc == 1 and message in out, out
    assert vault[0].read_bytes() == before


def test_a_wrong_password_changes_nothing(vault, tmp_path):
    wrong = tmp_path / "wrong-pass"
    wrong.write_text("not the password\n")
    before = vault[0].read_bytes()
    rc, out = jwt_keys((vault[0], wrong), "add")
    assert rc == 1 and "ansible-vault view failed" in out, out
    assert vault[0].read_bytes() == before
    assert not list(tmp_path.glob(".vault.yml.*"))
