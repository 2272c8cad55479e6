"""tests/labkit's inventory and db.Cluster without the lab: the one inventory variable
(LAB_INVENTORY: comma-separated sources, a relative path from the repository, an
inventory of the repository outside inventories/lab/ refused), and a Cluster read from
a made-up inventory by the real ansible-inventory (role overlay, "{{ var }}" indirection,
commands as Ansible would reach the hosts, playbook runs against the overlay)."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from labkit import db, inventory  # noqa: E402


def _import_inventory(value, cwd):
    env = dict(os.environ, LAB_INVENTORY=value)
    code = f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r}); from labkit import inventory; print(inventory.SOURCES)"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_lab_inventory_names_the_sources_and_refuses_a_real_environment(tmp_path):
    res = _import_inventory(f"{tmp_path}/a.yml,inventories/staging/hosts.yml", REPO)
    assert res.returncode != 0
    assert "LAB_INVENTORY=inventories/staging/hosts.yml" in res.stderr and "only against a lab" in res.stderr
    # run elsewhere: a relative path that exists in the repository is taken from there
    res = _import_inventory(f"{tmp_path}/a.yml,inventories/lab/group_vars", tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == repr([f"{tmp_path}/a.yml", str(REPO / "inventories/lab/group_vars")])
    res = _import_inventory("inventories/production/hosts.yml", tmp_path)
    assert res.returncode != 0
    assert f"LAB_INVENTORY={REPO}/inventories/production/hosts.yml: the lab tests and drills" in res.stderr


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    (tmp_path / "hosts.yml").write_text(json.dumps({"all": {
        "vars": {"vault_owner": "s3cret", "postgresql_owner_password": "{{ vault_owner }}"},
        "children": {
            "db": {"hosts": {"db1": {"ansible_host": "10.9.0.11", "postgresql_role": "primary",
                                     "ansible_connection": "community.docker.docker",
                                     "ansible_docker_host": "lab-db1"},
                             "db2": {"ansible_host": "10.9.0.12", "postgresql_role": "replica",
                                     "ansible_user": "deploy"}}},
            "backup": {"hosts": {"backup1": {"ansible_host": "10.9.0.21"}}}}}}))
    monkeypatch.setattr(inventory, "SOURCES", [str(tmp_path / "hosts.yml")])
    monkeypatch.setattr(inventory, "VAULT_PASS", tmp_path / "no-vault-pass")
    return db.Cluster()


def test_a_cluster_reads_its_inventory_and_an_overlay_swaps_the_roles(cluster):
    assert (cluster.db, cluster.backup) == (["db1", "db2"], ["backup1"])
    assert cluster.var("db1", "postgresql_owner_password") == "s3cret"
    assert (cluster.role("db1"), cluster.role("db2")) == ("primary", "replica")
    cluster.set_roles({"db1": "replica", "db2": "primary"})
    assert (cluster.role("db1"), cluster.role("db2")) == ("replica", "primary")
    assert cluster.address("db2") == "10.9.0.12"


def test_commands_reach_hosts_as_ansible_does(cluster):
    assert cluster.command("db1", "echo 1") == ["docker", "exec", "lab-db1", "bash", "-c", "echo 1"]
    ssh = cluster.command("db2", "echo 'a b'")
    assert ssh[0] == "ssh" and "BatchMode=yes" in ssh
    assert ssh[-2:] == ["deploy@10.9.0.12", "sudo bash -c 'echo '\"'\"'a b'\"'\"''"]


def test_a_playbook_runs_against_the_overlay_and_its_recap_is_counted(cluster, tmp_path, monkeypatch):
    book = tmp_path / "roles.yml"
    # debug runs on the controller: no connection to the made-up hosts
    book.write_text("- hosts: db\n  gather_facts: false\n  tasks:\n"
                    "    - ansible.builtin.debug:\n        msg: \"{{ inventory_hostname }}={{ postgresql_role }}\"\n"
                    "      changed_when: postgresql_role == 'primary'\n")
    cluster.set_roles({"db1": "replica", "db2": "primary"})
    monkeypatch.setenv("DB_E2E_PLAYBOOKS", str(tmp_path))  # another playbooks/ directory
    res = cluster.playbook("roles.yml", timeout=300)
    assert "db1=replica" in res.stdout and "db2=primary" in res.stdout
    assert res.elapsed > 0 and db.Cluster.changed(res) == 1
    log_dir = tmp_path / "logs"
    monkeypatch.setenv("DB_E2E_LOG_DIR", str(log_dir))
    with pytest.raises(AssertionError, match="missing.yml failed"):
        cluster.playbook("missing.yml", timeout=300)
    [log] = log_dir.iterdir()
    assert log.name.endswith("-missing.yml.log") and "rc=" in log.read_text()
