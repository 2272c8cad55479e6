"""Preflight refuses a broken inventory with a message that names the problem.

Each test copies a complete inventory, breaks one thing, and runs the real
playbook (preflight.yml or site.yml) against it; the hosts use the local
connection, so no container is needed.
"""
import pathlib
import shutil

import pytest
import yaml

from ansible_run import local_env, local_os_as_supported, run_playbook

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "inventory_ok"


@pytest.fixture
def inventory(tmp_path):
    dest = tmp_path / "inventory"
    shutil.copytree(FIXTURE, dest)
    return dest


def edit_yaml(path, change):
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def run(playbook, inventory, *extra):
    return run_playbook(inventory / "hosts.yml", playbook, *extra, timeout=300,
                        env=local_env())


def test_complete_inventory_passes(inventory):
    rc, out = run("preflight.yml", inventory, "-e", local_os_as_supported())
    assert rc == 0, out
    assert "failed=0" in out


def test_an_isolated_host_passes_and_an_isolated_primary_is_refused(inventory):
    edit_yaml(inventory / "hosts.yml", lambda d: d["all"]["children"].update(isolated={"hosts": {"app2": {}}}))
    rc, out = run("preflight.yml", inventory, "-e", local_os_as_supported())
    assert rc == 0, out[-3000:]
    assert "app2" not in out.split("PLAY RECAP")[-1], "preflight's host checks ran on the isolated host"
    edit_yaml(inventory / "hosts.yml", lambda d: d["all"]["children"].update(isolated={"hosts": {"db1": {}}}))
    rc, out = run("preflight.yml", inventory, "-e", local_os_as_supported())
    assert rc != 0
    assert "db1 is the database primary and in group isolated: every play would" in out, out[-3000:]


def test_missing_vault_variable_is_named_with_its_file(inventory):
    edit_yaml(inventory / "group_vars/all/vault.yml", lambda d: d.pop("vault_app_secret_key"))
    rc, out = run("preflight.yml", inventory)
    assert rc != 0
    assert "Variable 'vault_app_secret_key' is missing or empty for host(s) app1, app2" in out
    assert f"{inventory}/group_vars/all/vault.yml" in out


def test_empty_variable_counts_as_missing(inventory):
    edit_yaml(inventory / "group_vars/all/vars.yml", lambda d: d.update(socialsphere_domain=""))
    rc, out = run("preflight.yml", inventory)
    assert rc != 0
    assert "Variable 'socialsphere_domain' is missing or empty" in out
    assert "group_vars/all/vars.yml" in out


def test_repository_host_without_its_cipher_is_named(inventory):
    edit_yaml(inventory / "group_vars/all/vault.yml", lambda d: d.pop("vault_pgbackrest_repo2_cipher_pass"))
    rc, out = run("preflight.yml", inventory)
    assert rc != 0
    assert "Host backup2 (group backup) holds pgBackRest repository 2" in out
    assert f"vault_pgbackrest_repo2_cipher_pass, in {inventory}/group_vars/all/vault.yml" in out


def test_two_repository_hosts_with_one_number_fail(inventory):
    edit_yaml(inventory / "hosts.yml",
              lambda d: d["all"]["children"]["backup"]["hosts"]["backup2"].update(pgbackrest_repo=1))
    rc, out = run("preflight.yml", inventory)
    assert rc != 0
    assert "each backup host needs its own number, pgbackrest_repo: 1, 2, ... in hosts.yml (unique; found 1, 1)" in out


def test_several_repository_hosts_need_explicit_numbers(inventory):
    edit_yaml(inventory / "hosts.yml", lambda d: d["all"]["children"]["backup"]["hosts"]["backup2"].clear())
    rc, out = run("preflight.yml", inventory)
    assert rc != 0
    assert "Host backup2 (group backup) holds pgBackRest repository 1" in out


def test_two_primaries_fail(inventory):
    edit_yaml(inventory / "hosts.yml",
              lambda d: d["all"]["children"]["db"]["hosts"]["db2"].update(postgresql_role="primary"))
    rc, out = run("preflight.yml", inventory)
    assert rc != 0
    assert "Exactly one host of group db must have postgresql_role: primary; found 2 (db1, db2)" in out


def test_haproxy_timeout_not_above_gunicorns_fails(inventory):
    """Gunicorn must answer before HAProxy gives up: haproxy_timeout_server > socialsphere_app_timeout."""
    edit_yaml(inventory / "hosts.yml",
              lambda d: d["all"]["children"]["edge"]["hosts"]["edge2"].update(haproxy_timeout_server="30s"))
    rc, out = run("preflight.yml", inventory)
    assert rc != 0
    assert "haproxy_timeout_server of edge2 (30 s) must be longer than socialsphere_app_timeout" in out
    assert "(30 s on the app hosts at most)" in out


def test_longer_gunicorn_timeout_on_one_app_host_fails(inventory):
    edit_yaml(inventory / "hosts.yml",
              lambda d: d["all"]["children"]["app"]["hosts"]["app2"].update(socialsphere_app_timeout=40))
    rc, out = run("preflight.yml", inventory)
    assert rc != 0
    assert "haproxy_timeout_server of edge1 (35 s) must be longer than" in out


def test_no_primary_fails(inventory):
    edit_yaml(inventory / "hosts.yml",
              lambda d: d["all"]["children"]["db"]["hosts"]["db1"].update(postgresql_role="replica"))
    rc, out = run("preflight.yml", inventory)
    assert rc != 0
    assert "found 0 (none)" in out


def test_invalid_database_role_is_named(inventory):
    edit_yaml(inventory / "hosts.yml",
              lambda d: d["all"]["children"]["db"]["hosts"]["db2"].update(postgresql_role="master"))
    rc, out = run("preflight.yml", inventory)
    assert rc != 0
    assert "Host db2 (group db) needs postgresql_role: primary or replica" in out


def test_empty_group_fails(inventory):
    edit_yaml(inventory / "hosts.yml", lambda d: d["all"]["children"]["backup"].update(hosts={}))
    rc, out = run("preflight.yml", inventory)
    assert rc != 0
    assert "Inventory group 'backup' is missing or empty" in out


def test_group_name_typo_fails(inventory):
    def rename(d):
        d["all"]["children"]["apps"] = d["all"]["children"].pop("app")
    edit_yaml(inventory / "hosts.yml", rename)
    rc, out = run("preflight.yml", inventory)
    assert rc != 0
    assert "Unknown inventory group(s) apps" in out


def test_unsupported_os_fails(inventory):
    rc, out = run("preflight.yml", inventory, "-e",
                  '{"preflight_supported_os": [{"distribution": "Ubuntu", "version": "24.04"}]}')
    assert rc != 0
    assert "supported: Ubuntu 24.04" in out


def test_site_stops_in_preflight_before_any_change(inventory):
    edit_yaml(inventory / "group_vars/all/vault.yml", lambda d: d.pop("vault_postgresql_app_active_login"))
    rc, out = run("site.yml", inventory)
    assert rc != 0
    assert "Variable 'vault_postgresql_app_active_login' is missing" in out
    assert "PLAY [Check the inventory]" in out
    # No play after preflight has started.
    assert "PLAY [Configure the base system]" not in out


def test_a_vault_with_the_one_app_password_of_an_older_version_is_told_what_to_add(inventory):
    def legacy(d):
        d.pop("vault_postgresql_app_logins")
        d.pop("vault_postgresql_app_active_login")
        d["vault_postgresql_app_password"] = "test-only-legacy-password"
    edit_yaml(inventory / "group_vars/all/vault.yml", legacy)
    rc, out = run("preflight.yml", inventory)
    assert rc != 0
    assert ("The vault of app1, app2, db1, db2 has vault_postgresql_app_password (the one login role socialsphere_app "
            "of an older version) but not vault_postgresql_app_logins and vault_postgresql_app_active_login") in out, \
        out[-3000:]
    assert f"scripts/db-password -i {inventory} init" in out
    assert "test-only-legacy-password" not in out


@pytest.mark.parametrize("logins, active, found", [
    ({"a": "x" * 20}, "a", "found keys [a], active 'a'"),
    ({"a": "x" * 20, "b": "", "c": ""}, "a", "found keys [a, b, c]"),
    ({"A": "x" * 20, "b": ""}, "A", "found keys [A, b]"),
    ({"a": "x" * 20, "b": ""}, "b", "found keys [a, b], active 'b'"),
    ({"a": "short", "b": ""}, "a", "found keys [a, b], active 'a'"),
    ("not-a-mapping", "a", "found keys [not a mapping]"),
])
def test_a_bad_shape_of_the_app_logins_is_refused(inventory, logins, active, found):
    edit_yaml(inventory / "group_vars/all/vault.yml",
              lambda d: d.update(vault_postgresql_app_logins=logins, vault_postgresql_app_active_login=active))
    rc, out = run("preflight.yml", inventory)
    assert rc != 0
    assert "vault_postgresql_app_logins must map the app's two database login roles" in out, out[-3000:]
    assert found in out
    assert "x" * 20 not in out
