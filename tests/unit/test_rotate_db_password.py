"""playbooks/rotate-secrets.yml -e rotate=db refuses unsafe database password
rotations, with a message that names the problem, before anything changes; no
container needed.

- The request play (the phase, --limit, the inventory's mapping of the active
  login) runs in the real playbook against a copy of the preflight fixture
  inventory (local connection).
- The phase checks (playbooks/tasks/rotate-db-checks.yml: the vault's logins
  against what each app host's Gunicorn and environment file use and what the
  primary says of the roles) run on made-up states, all cases in one run.
- The readers: running-state.py reports the database user of a real process and
  of the environment file without the password; db-login-check.py reports a
  refused login without the password.
- scripts/db-password edits a real ansible-vault file through a whole rotation:
  only the two entries change, no password is printed, unsafe requests are refused.
"""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

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
    run_check_cases,
    run_playbook,
    run_vault_script,
    vault_plaintext,
)

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "inventory_ok"
CHECKS_PLAYBOOK = pathlib.Path(__file__).parent / "playbooks" / "rotate_db_checks.yml"
STATE_SCRIPT = REPO / "roles" / "socialsphere_app" / "files" / "running-state.py"
LOGIN_SCRIPT = REPO / "roles" / "socialsphere_app" / "files" / "db-login-check.py"
APP_PYTHON = REPO / "app" / ".venv" / "bin" / "python"
DB_PASSWORD = REPO / "scripts" / "db-password"
PW_A = "pw-a-" + "a" * 30
PW_B = "pw-b-" + "b" * 30


# ---------------------------------------------------------------- the request play
@pytest.fixture
def inventory(tmp_path):
    """The preflight fixture, with the db and app groups' mappings of the app logins."""
    dest = tmp_path / "inventory"
    shutil.copytree(FIXTURE, dest)
    (dest / "group_vars" / "app").mkdir()
    (dest / "group_vars" / "app" / "vars.yml").write_text(
        "---\nsocialsphere_app_db_user: \"socialsphere_app_{{ vault_postgresql_app_active_login }}\"\n"
        "socialsphere_app_db_password: \"{{ vault_postgresql_app_logins[vault_postgresql_app_active_login] }}\"\n")
    (dest / "group_vars" / "db").mkdir()
    (dest / "group_vars" / "db" / "vars.yml").write_text(
        "---\npostgresql_app_logins: \"{{ vault_postgresql_app_logins }}\"\n"
        "postgresql_app_active_login: \"{{ vault_postgresql_app_active_login }}\"\n")
    path = dest / "group_vars" / "all" / "vault.yml"
    data = yaml.safe_load(path.read_text())
    data.update(vault_postgresql_app_logins={"a": PW_A, "b": PW_B}, vault_postgresql_app_active_login="b")
    path.write_text(yaml.safe_dump(data))
    return dest


def rotate(inventory, *extra):
    return run_playbook(inventory / "hosts.yml", "rotate-secrets.yml", "-e", "rotate=db", *extra, timeout=300,
                        env=local_env())


@pytest.mark.parametrize("extra, message", [
    ((), "-e rotate_db_phase=prepare|switch|retire is required (got '')"),
    (("-e", "rotate_db_phase=rollback"), "-e rotate_db_phase=prepare|switch|retire is required (got 'rollback')"),
    (("-e", "rotate_db_phase=switch", "--limit", "app1,db1"), "run it without --limit (left out: app2)"),
])
def test_a_bad_request_is_refused_with_its_reason(inventory, extra, message):
    rc, out = rotate(inventory, *extra)
    assert rc != 0
    assert message in out, out[-3000:]
    assert "PLAY RECAP" in out and not re.search(r"changed=[1-9]", out)
    assert PW_A not in out and PW_B not in out


def test_app_hosts_that_do_not_map_the_active_login_are_named(inventory):
    (inventory / "group_vars" / "app" / "vars.yml").write_text(
        "---\nsocialsphere_app_db_password: \"{{ vault_postgresql_app_logins['a'] }}\"\n")
    rc, out = rotate(inventory, "-e", "rotate_db_phase=switch")
    assert rc != 0
    assert ("The vault's active app login is socialsphere_app_b, but app1 would use 'socialsphere_app', "
            "app2 would use 'socialsphere_app': group_vars/app/vars.yml must map socialsphere_app_db_user") in out, \
        out[-3000:]
    assert PW_A not in out and PW_B not in out


def test_the_playbook_parses_with_the_production_inventory():
    proc = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", "inventories/production",
                           "playbooks/rotate-secrets.yml", "-e", "rotate=db"], cwd=REPO, env=ansible_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------- the phase checks
GROUP = "socialsphere_app"


def target(active, empty=()):
    idle = "b" if active == "a" else "a"
    return {"group": GROUP, "active": active, "active_user": f"{GROUP}_{active}", "idle": idle,
            "idle_user": f"{GROUP}_{idle}", "users": [f"{GROUP}_a", f"{GROUP}_b"], "empty": sorted(empty)}


def host(user, env_user=None, stale=False, running=True):
    return {"running": running, "error": "", "db_user": user if running else "",
            "env_db_user": user if env_user is None else env_user, "env_stale": stale, "release": "1.0.0+gabc"}


def role(login, password=None, sessions=0, clients="", member=True):
    return {"exists": True, "login": login, "password": login if password is None else password, "member": member,
            "sessions": sessions, "clients": clients}


def roles(group=False, a=True, b=False):
    """The primary's app roles: True/False = can log in (with a password) or not, or a role() of its own."""
    return {name: value if isinstance(value, dict) else role(value)
            for name, value in ((GROUP, group), (f"{GROUP}_a", a), (f"{GROUP}_b", b))}


def case(phase, tgt, running, states):
    return {"phase": phase, "target": tgt, "running": running, "roles": states}


A, B, OLD = f"{GROUP}_a", f"{GROUP}_b", GROUP
CASES = {
    # prepare: the idle login b gets the vault's new password; the hosts stay on a
    "prepare": case("prepare", target("a"), {"app1": host(A), "app2": host(A)}, roles()),
    "prepare again": case("prepare", target("a"), {"app1": host(A), "app2": host(A)}, roles(b=True)),
    "prepare without a new password": case("prepare", target("a", ["b"]), {"app1": host(A), "app2": host(A)}, roles()),
    "prepare a login in use": case("prepare", target("b"), {"app1": host(B), "app2": host(A)}, roles(b=True)),
    "prepare the active login no host uses yet": case("prepare", target("b"), {"app1": host(A), "app2": host(A)},
                                                      roles()),
    "prepare the first login of an older version's inventory": case("prepare", target("a", ["b"]),
                                                                    {"app1": host(OLD), "app2": host(OLD)},
                                                                    roles(group=True, a=False)),
    "prepare a login an environment file names": case("prepare", target("a"), {"app1": host(A), "app2": host(A, B)},
                                                      roles(b=True)),
    "prepare a login somebody else uses": case("prepare", target("a"), {"app1": host(A), "app2": host(A)},
                                               roles(b=role(True, sessions=2, clients="10.9.9.9"))),
    "prepare with a host down": case("prepare", target("a"), {"app1": host(A), "app2": host("", running=False)},
                                     roles()),
    # switch: every host to the active login b
    "switch": case("switch", target("b"), {"app1": host(A), "app2": host(A)}, roles(b=True)),
    "switch resumed": case("switch", target("b"), {"app1": host(B), "app2": host(A)}, roles(b=True)),
    "switch again": case("switch", target("b"), {"app1": host(B), "app2": host(B)}, roles(b=True)),
    "switch with a host not restarted": case("switch", target("b"), {"app1": host(A, B, stale=True), "app2": host(B)},
                                             roles(b=True)),
    "switch without a password": case("switch", target("b", ["b"]), {"app1": host(A), "app2": host(A)}, roles()),
    "switch from an older version's role": case("switch", target("a", ["b"]), {"app1": host(OLD), "app2": host(OLD)},
                                                roles(group=True)),
    # retire: a (and an older version's LOGIN group role) disabled once nobody uses them
    "retire": case("retire", target("b", ["a"]), {"app1": host(B), "app2": host(B)}, roles(a=True, b=True)),
    "retire an older version's role": case("retire", target("a", ["b"]), {"app1": host(A), "app2": host(A)},
                                           roles(group=True)),
    "retire again": case("retire", target("b", ["a"]), {"app1": host(B), "app2": host(B)}, roles(a=False, b=True)),
    "retire before the vault forgot": case("retire", target("b"), {"app1": host(B), "app2": host(B)},
                                           roles(a=True, b=True)),
    "retire while a host uses the old login": case("retire", target("b", ["a"]), {"app1": host(B), "app2": host(A)},
                                                   roles(a=True, b=True)),
    "retire while an environment file names it": case("retire", target("b", ["a"]),
                                                      {"app1": host(B), "app2": host(B, A)}, roles(a=True, b=True)),
    "retire while an older version's role runs": case("retire", target("a", ["b"]),
                                                      {"app1": host(A), "app2": host(OLD)}, roles(group=True)),
    "retire with a session left": case("retire", target("b", ["a"]), {"app1": host(B), "app2": host(B)},
                                       roles(a=role(True, sessions=1, clients="10.1.1.7"), b=True)),
    "retire with an active login that cannot log in": case("retire", target("b", ["a"]),
                                                           {"app1": host(B), "app2": host(B)}, roles(a=True, b=False)),
}


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    return run_check_cases(tmp_path_factory.mktemp("rotate_db_checks"), CHECKS_PLAYBOOK, CASES)


plan = case_plan
refusal = case_refusal


def test_prepare_sets_the_idle_login_and_moves_no_host(checked):
    assert plan(checked, "prepare") == {"phase": "prepare", "needed": False, "hosts_to_change": [], "set": "b",
                                        "retiring": []}
    assert plan(checked, "prepare again")["set"] == "b"


def test_prepare_sets_the_active_login_while_no_host_uses_it_yet(checked):
    # a switch refused because the database did not accept the password: prepare it again
    assert plan(checked, "prepare the active login no host uses yet")["set"] == "b"
    assert plan(checked, "prepare the first login of an older version's inventory")["set"] == "a"


def test_prepare_needs_a_new_password_in_the_vault(checked):
    msg = refusal(checked, "prepare without a new password")
    assert "vault_postgresql_app_logins has none for 'b': generate it first (scripts/db-password" in msg


def test_prepare_never_changes_the_password_of_a_login_in_use(checked):
    msg = refusal(checked, "prepare a login in use")
    assert "Phase prepare changes the password of socialsphere_app_a, but app2 uses it (Gunicorn: socialsphere_app_a" \
        in msg
    assert "finish phase switch" in msg
    msg = refusal(checked, "prepare a login an environment file names")
    assert "app2 uses it (Gunicorn: socialsphere_app_a, environment file: socialsphere_app_b)" in msg


def test_prepare_refuses_a_login_somebody_else_is_connected_as(checked):
    msg = refusal(checked, "prepare a login somebody else uses")
    assert "the primary has 2 session(s) of it (from 10.9.9.9) while no app host runs with it" in msg


def test_a_host_whose_app_does_not_run_stops_every_phase(checked):
    msg = refusal(checked, "prepare with a host down")
    assert "app2: socialsphere.service is not running" in msg and "start it first" in msg


def test_switch_rolls_the_hosts_that_do_not_use_the_active_login(checked):
    assert plan(checked, "switch")["hosts_to_change"] == ["app1", "app2"] and plan(checked, "switch")["needed"]
    assert plan(checked, "switch resumed")["hosts_to_change"] == ["app2"]
    assert plan(checked, "switch with a host not restarted")["hosts_to_change"] == ["app1"]
    assert plan(checked, "switch from an older version's role")["hosts_to_change"] == ["app1", "app2"]


def test_a_phase_that_is_done_changes_nothing(checked):
    assert plan(checked, "switch again")["needed"] is False
    assert plan(checked, "retire again")["retiring"] == []


def test_switch_needs_the_active_login_password(checked):
    assert "vault_postgresql_app_active_login is 'b', whose password in vault_postgresql_app_logins is empty" \
        in refusal(checked, "switch without a password")


def test_retire_disables_the_previous_login_and_an_older_version_s_role(checked):
    assert plan(checked, "retire") == {"phase": "retire", "needed": False, "hosts_to_change": [], "set": "",
                                       "retiring": ["socialsphere_app_a"]}
    assert plan(checked, "retire an older version's role")["retiring"] == ["socialsphere_app"]


def test_retire_needs_the_vault_to_forget_the_old_password_first(checked):
    assert ("vault_postgresql_app_logins still has a password for 'a': forget it first (scripts/db-password "
            "-i <inventory> retire)") in refusal(checked, "retire before the vault forgot")


def test_retire_never_disables_a_login_a_host_still_uses(checked):
    msg = refusal(checked, "retire while a host uses the old login")
    assert ("Refusing to retire socialsphere_app_a and socialsphere_app: app2 still uses socialsphere_app_a "
            "(Gunicorn: socialsphere_app_a") in msg
    assert "Finish phase switch first" in msg and "app1" not in msg
    msg = refusal(checked, "retire while an environment file names it")
    assert "app2 still uses socialsphere_app_a (Gunicorn: socialsphere_app_b, environment file: socialsphere_app_a)" \
        in msg
    assert "app2 still uses socialsphere_app (Gunicorn: socialsphere_app," in refusal(
        checked, "retire while an older version's role runs")


def test_retire_waits_for_the_sessions_of_the_old_login(checked):
    msg = refusal(checked, "retire with a session left")
    assert "Refusing to retire socialsphere_app_a: the primary has 1 session(s) of it (from 10.1.1.7)" in msg


def test_retire_refuses_when_the_active_login_cannot_log_in(checked):
    assert "the active login socialsphere_app_b is NOLOGIN on the primary" in refusal(
        checked, "retire with an active login that cannot log in")


# ---------------------------------------------------------------- the readers
@pytest.fixture
def app_process(tmp_path):
    url = f"postgresql+psycopg2://socialsphere_app_b:{PW_B}@/socialsphere?host=10.0.0.1:5432,10.0.0.2:5432"
    proc = subprocess.Popen(["sleep", "120"], env={"PATH": "/usr/bin:/bin", "SOCIALSPHERE_DATABASE_URL": url})
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "systemctl").write_text(f"#!/bin/sh\necho {proc.pid}\n")
    (fake / "systemctl").chmod(0o755)
    (tmp_path / "srv").mkdir()
    env_file = tmp_path / "socialsphere.env"
    env_file.write_text(f"SOCIALSPHERE_ENV='production'\nSOCIALSPHERE_DATABASE_URL='{url.replace('_b:', '_a:')}'\n")
    yield {"path": f"{fake}:{os.environ['PATH']}", "root": tmp_path / "srv", "env_file": env_file}
    proc.kill()
    proc.wait()


def test_the_database_users_are_read_without_the_password(app_process):
    out = subprocess.run([sys.executable, str(STATE_SCRIPT), str(app_process["env_file"]), "socialsphere.service",
                          str(app_process["root"])], env=dict(os.environ, PATH=app_process["path"]),
                         capture_output=True, text=True, check=True, timeout=30).stdout
    state = json.loads(out)
    assert state["db_user"] == "socialsphere_app_b" and state["env_db_user"] == "socialsphere_app_a"
    assert PW_B not in out


@pytest.mark.skipif(not APP_PYTHON.exists(), reason="the app's venv (app/.venv: make -C app venv) is missing")
def test_a_refused_login_is_reported_without_the_password():
    url = f"postgresql+psycopg2://socialsphere_app_b:{PW_B}@127.0.0.1:9/socialsphere?connect_timeout=2"
    proc = subprocess.run([str(APP_PYTHON), str(LOGIN_SCRIPT), "socialsphere_app"], input=url + "\n",
                          capture_output=True, text=True, timeout=60, check=True)
    state = json.loads(proc.stdout)
    assert state["ok"] is False and state["user"] == "" and "OperationalError" in state["error"]
    assert PW_B not in proc.stdout + proc.stderr


# ---------------------------------------------------------------- scripts/db-password
VAULT_TEXT = """---
# Secrets of the test environment.
vault_app_secret_key: "keep-me"
vault_postgresql_app_password: "legacy-password-of-an-older-version"
vault_other: |
  two
  lines

vault_last: x
"""


@pytest.fixture
def vault(tmp_path):
    return encrypted_vault(tmp_path, VAULT_TEXT)


def db_password(vault, *args):
    return run_vault_script(DB_PASSWORD, vault, *args)


def plaintext(vault):
    return vault_plaintext(*vault)


def logins(vault):
    data = yaml.safe_load(plaintext(vault))
    return data["vault_postgresql_app_logins"], data["vault_postgresql_app_active_login"]


def test_two_whole_rotations_edit_only_the_two_entries_and_print_no_password(vault):
    rc, out = db_password(vault, "prepare")
    assert rc == 1 and "has no vault_postgresql_app_logins (it has vault_postgresql_app_password" in out, out

    rc, out = db_password(vault, "init")
    assert rc == 0 and "added socialsphere_app_a (active, a new password) and socialsphere_app_b (idle)" in out, out
    first, active = logins(vault)
    assert active == "a" and set(first) == {"a", "b"} and len(first["a"]) >= 32 and first["b"] == ""
    others = [line for line in plaintext(vault).splitlines() if not line.startswith("vault_postgresql_app_")]
    assert others == [line for line in VAULT_TEXT.splitlines() if not line.startswith("vault_postgresql_app_")]
    assert "legacy-password-of-an-older-version" in plaintext(vault)  # kept until the older role is retired

    seen = [first["a"]]
    for old, new in (("a", "b"), ("b", "a")):
        rc, out = db_password(vault, "prepare")
        assert rc == 0 and f"a new password for socialsphere_app_{new} (not used yet)" in out, out
        assert "-e rotate_db_phase=prepare" in out
        keys, active = logins(vault)
        assert active == old and keys[old] == seen[-1] and len(keys[new]) >= 32 and keys[new] not in seen
        seen.append(keys[new])
        rc, out = db_password(vault, "prepare")  # again: refused, the password stays
        assert rc == 1 and "a rotation is in progress" in out and logins(vault)[0][new] == seen[-1]

        rc, out = db_password(vault, "switch")
        assert rc == 0 and f"the app uses socialsphere_app_{new} from the next rollout on" in out, out
        assert logins(vault)[1] == new
        rc, out = db_password(vault, "switch")  # again: no flip back
        assert rc == 0 and f"socialsphere_app_{new} is the active login already" in out and logins(vault)[1] == new

        rc, out = db_password(vault, "retire")
        assert rc == 0 and f"forgot the password of socialsphere_app_{old}" in out, out
        assert logins(vault) == ({old: "", new: seen[-1]}, new)
        rc, out = db_password(vault, "retire")
        assert rc == 0 and "nothing to retire" in out
        for secret in seen:
            assert secret not in out

    rc, out = db_password(vault, "status")
    assert rc == 0 and "socialsphere_app_b (idle, disabled), socialsphere_app_a (active)" in out, out


def test_switch_to_a_login_without_a_password_is_refused(vault):
    assert db_password(vault, "init")[0] == 0
    before = vault[0].read_bytes()
    rc, out = db_password(vault, "switch")
    assert rc == 1 and "socialsphere_app_b has no password: run prepare first" in out, out
    assert vault[0].read_bytes() == before
