"""scripts/vault-secret against a real ansible-vault file: `new` changes only that entry,
to a random value of the length its role accepts, the file stays encrypted, no value is
printed; the structured secrets and unknown names are refused with nothing changed;
`status` says set/empty/too short and never a value. Every playbook it names exists.
"""
import importlib.machinery
import importlib.util
import re

import pytest
import yaml

from ansible_run import REPO, encrypted_vault, run_vault_script, vault_plaintext

SCRIPT = REPO / "scripts" / "vault-secret"
VALUES = {
    "vault_app_secret_key": "app-secret-" + "s" * 40,
    "vault_app_jwt_keys": '{"k1": "' + "j" * 64 + '"}',
    "vault_app_jwt_active_kid": "k1",
    "vault_app_token_encryption_key": "fernet-key-" + "f" * 33,
    "vault_app_admin_password": "admin-pass-12345",
    "vault_postgresql_superuser_password": "superuser-" + "u" * 30,
    "vault_postgresql_replication_password": "replication-" + "r" * 30,
    "vault_postgresql_owner_password": "owner-" + "o" * 30,
    "vault_pgbackrest_cipher_pass": "cipher-" + "c" * 40,
    "vault_haproxy_stats_password": "stats-" + "h" * 20,
    "vault_keepalived_auth_pass": "kpass123",
    "vault_grafana_admin_password": "grafana-" + "g" * 20,
}


def load_script():
    spec = importlib.util.spec_from_loader("vault_secret", importlib.machinery.SourceFileLoader("vault_secret",
                                                                                                str(SCRIPT)))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def vault_text(values=None):
    lines = ["---", "# the production vault's comments stay"]
    for name, value in (values or VALUES).items():
        lines.append(f"{name}: '{value}'")
    return "\n".join(lines) + "\n"


@pytest.fixture
def vault(tmp_path):
    return encrypted_vault(tmp_path, vault_text())


def assert_no_value(out, *values):
    for value in (*VALUES.values(), *values):
        assert value not in out, "a secret was printed"


@pytest.mark.parametrize("name, length, playbooks", [
    ("vault_postgresql_superuser_password", 43, ["db.yml"]),
    ("vault_postgresql_replication_password", 43, ["db.yml"]),
    ("vault_postgresql_owner_password", 43, ["db.yml", "app.yml"]),
    ("vault_app_secret_key", 64, ["app.yml"]),
    ("vault_app_admin_password", 32, ["app.yml"]),
    ("vault_haproxy_stats_password", 32, ["edge.yml"]),
    ("vault_keepalived_auth_pass", 8, ["edge.yml"]),
    ("vault_grafana_admin_password", 32, ["monitoring-ui.yml"]),
])
def test_new_changes_only_that_entry_and_prints_no_value(vault, name, length, playbooks):
    path, password_file = vault
    before = vault_plaintext(path, password_file)
    rc, out = run_vault_script(SCRIPT, vault, "new", name)
    assert rc == 0, out
    assert path.read_bytes().startswith(b"$ANSIBLE_VAULT;"), "the vault is no longer encrypted"
    after = vault_plaintext(path, password_file)
    new = yaml.safe_load(after)[name]
    assert new != VALUES[name] and len(new) == length and re.fullmatch(r"[A-Za-z0-9_-]+", new)
    # every other line, comments included, is as it was
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert changed == [(f"{name}: '{VALUES[name]}'", f"{name}: '{new}'")]
    assert_no_value(out, new)
    assert f"{name} has a new value ({length} characters)" in out
    assert re.findall(r"^next: ansible-playbook -i <inventory> playbooks/(\S+)", out, re.MULTILINE) == playbooks


def test_two_runs_give_two_different_values(vault):
    seen = set()
    for _ in range(2):
        rc, out = run_vault_script(SCRIPT, vault, "new", "vault_keepalived_auth_pass")
        assert rc == 0, out
        seen.add(yaml.safe_load(vault_plaintext(*vault))["vault_keepalived_auth_pass"])
    assert len(seen) == 2 and VALUES["vault_keepalived_auth_pass"] not in seen


@pytest.mark.parametrize("name, message", [
    ("vault_app_jwt_keys", "scripts/jwt-keys"),
    ("vault_app_jwt_active_kid", "scripts/jwt-keys"),
    ("vault_postgresql_app_logins", "scripts/db-password"),
    ("vault_postgresql_app_active_login", "scripts/db-password"),
    ("vault_pgbackrest_cipher_pass", "scripts/pgbackrest-cipher"),
    ("vault_pgbackrest_repo2_cipher_pass", "scripts/pgbackrest-cipher"),
    ("vault_app_token_encryption_key", "SOCIALSPHERE_TOKEN_ENCRYPTION_KEYS"),
    ("vault_internal_ca_key_passphrase", "playbooks/rotate-ca.yml"),
    ("vault_smtp_password", "ansible-vault edit"),
    ("vault_no_such_secret", "is not a secret this script rotates (known: vault_postgresql_superuser_password,"),
])
def test_refused_with_nothing_changed(vault, name, message):
    before = vault[0].read_bytes()
    rc, out = run_vault_script(SCRIPT, vault, "new", name)
    assert rc == 1, out
    assert out.startswith(f"vault-secret: {name} is not ") and message in out and "nothing was changed" in out
    assert vault[0].read_bytes() == before
    assert_no_value(out)


def test_a_secret_missing_from_the_vault_is_refused(tmp_path):
    values = {k: v for k, v in VALUES.items() if k != "vault_grafana_admin_password"}
    vault = encrypted_vault(tmp_path, vault_text(values))
    before = vault[0].read_bytes()
    rc, out = run_vault_script(SCRIPT, vault, "new", "vault_grafana_admin_password")
    assert rc == 1 and "has no vault_grafana_admin_password" in out
    assert vault[0].read_bytes() == before


def test_a_vault_layout_it_cannot_edit_safely_is_refused(tmp_path):
    # the entry twice (YAML keeps the last one): which one the playbooks read is unclear
    text = vault_text() + f"vault_haproxy_stats_password: '{VALUES['vault_haproxy_stats_password']}'\n"
    vault = encrypted_vault(tmp_path, text)
    before = vault[0].read_bytes()
    rc, out = run_vault_script(SCRIPT, vault, "new", "vault_haproxy_stats_password")
    assert rc == 1, out
    assert "expected one top-level 'vault_haproxy_stats_password:' line in the vault, found 2" in out
    assert "Traceback" not in out and vault[0].read_bytes() == before
    assert_no_value(out)


def test_a_wrong_vault_password_is_refused(vault, tmp_path):
    path, _ = vault
    wrong = tmp_path / "wrong-pass"
    wrong.write_text("not-the-password\n")
    before = path.read_bytes()
    rc, out = run_vault_script(SCRIPT, (path, wrong), "new", "vault_haproxy_stats_password")
    assert rc == 1 and "ansible-vault view failed" in out
    assert path.read_bytes() == before


def test_new_without_a_variable_is_a_usage_error(vault):
    rc, out = run_vault_script(SCRIPT, vault, "new")
    assert rc == 2 and "new needs the vault variable" in out


def test_status_says_set_empty_or_too_short_and_never_a_value(tmp_path):
    values = dict(VALUES, vault_app_secret_key="short-key", vault_haproxy_stats_password="",
                  vault_keepalived_auth_pass="nine-char")
    del values["vault_grafana_admin_password"]
    vault = encrypted_vault(tmp_path, vault_text(values))
    rc, out = run_vault_script(SCRIPT, vault, "status")
    assert rc == 0, out
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert lines["vault_app_secret_key"].startswith("too short (9 characters, 32 at least);")
    assert lines["vault_haproxy_stats_password"].startswith("empty;")
    assert lines["vault_keepalived_auth_pass"].startswith("too long (9 characters, 8 at most);")
    assert lines["vault_grafana_admin_password"].startswith("not in the vault;")
    assert lines["vault_postgresql_replication_password"].startswith("set; used by the replication role")
    assert "applied by playbooks/db.yml then playbooks/app.yml" in lines["vault_postgresql_owner_password"]
    assert set(lines) == set(load_script().SECRETS)
    assert_no_value(out, "short-key", "nine-char")


def test_each_table_row_names_playbooks_that_exist_and_lengths_its_role_accepts():
    module = load_script()
    for name, secret in module.SECRETS.items():
        for playbook in secret.playbooks:
            assert (REPO / "playbooks" / playbook).is_file(), (name, playbook)
        for _ in range(20):
            assert module.state(secret, module.new_value(secret, "")) == "set", name
    # the roles' own limits (their asserts), read from the roles
    assert "keepalived_auth_pass | length <= 8" in (REPO / "roles/keepalived/tasks/main.yml").read_text()
    assert module.SECRETS["vault_keepalived_auth_pass"].max_length == 8
    assert "socialsphere_app_secret_key | length >= 32" in (REPO / "roles/socialsphere_app/tasks/assert.yml").read_text()
    assert module.SECRETS["vault_app_secret_key"].min_length == 32
    assert "haproxy_stats_password | length >= 8" in (REPO / "roles/haproxy/tasks/assert.yml").read_text()
    assert module.SECRETS["vault_haproxy_stats_password"].min_length == 8
    assert "socialsphere_app_admin_password | length >= 10" in (REPO / "roles/socialsphere_app/tasks/admin.yml").read_text()
    assert module.SECRETS["vault_app_admin_password"].min_length == 10
    # every plain secret of the example vault is either rotated here or refused with where it rotates
    example = yaml.safe_load((REPO / "inventories/production/group_vars/all/vault.yml.example").read_text())
    for name in example:
        assert name in module.SECRETS or module.elsewhere(name), name
