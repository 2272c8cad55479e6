"""lab/labctl without containers: the entry point finds its package (lab/labctl_lib/),
the command line is complete, and the generated inventory has the lab's shape.

Nothing here talks to Docker: the inventory is written from a stubbed container list.
"""
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
LABCTL = REPO / "lab" / "labctl"
sys.path.insert(0, str(REPO / "lab"))

from labctl_lib import containers, inventory, settings, util

COMMANDS = ["engine", "cache", "images", "up", "add", "start", "stop", "remove", "inventory",
            "status", "info", "secret", "ssh", "exec", "down", "purge"]


def labctl(*args, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    return subprocess.run([str(LABCTL), *args], env={**clean, **env}, capture_output=True, text=True,
                          timeout=60, check=False)


def test_help_lists_every_command():
    res = labctl("--help")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: labctl ")
    for command in COMMANDS:
        assert f"labctl {command}" in res.stdout
        assert labctl(command, "--help").returncode == 0


def test_usage_errors_exit_2():
    assert labctl().returncode == 2
    res = labctl("exec", "db1")
    assert res.returncode == 2 and "exec needs a command" in res.stderr


def test_lab_errors_exit_1():
    res = labctl("ssh", "nosuch1")
    assert res.returncode == 1
    assert res.stderr.startswith("labctl: error: unknown lab host name 'nosuch1'")


@pytest.mark.parametrize(("env", "message"), [
    ({"LAB_NAME": "Not_Valid"}, "LAB_NAME must be lower-case letters, digits and '-'"),
    ({"LAB_SUBNET": "10.1.0.0/25"}, "LAB_SUBNET must be an IPv4 network of /24 or larger"),
])
def test_bad_settings_stop_labctl_before_anything(env, message):
    res = labctl("--help", **env)
    assert res.returncode == 1
    assert res.stderr.strip() == f"labctl: error: {message}"


def test_host_vars():
    net = settings.LAB_SUBNET.network_address
    assert inventory.host_vars("edge1") == {"ansible_host": str(net + 11), "keepalived_priority": 150}
    assert inventory.host_vars("edge2")["keepalived_priority"] == 100
    assert inventory.host_vars("db1")["postgresql_role"] == "primary"
    assert inventory.host_vars("db2")["postgresql_role"] == "replica"
    assert inventory.host_vars("backup2")["pgbackrest_repo"] == 2
    assert inventory.host_vars("app3") == {"ansible_host": str(net + 23)}
    with pytest.raises(util.LabError, match="unknown lab host name"):
        util.host_spec("web1")


def test_inventory_has_every_group(tmp_path, monkeypatch):
    path = tmp_path / "hosts.yml"
    monkeypatch.setattr(inventory, "INVENTORY", str(path))
    monkeypatch.setattr(inventory, "INV_DIR", str(tmp_path))
    monkeypatch.setattr(inventory, "DEPLOY_KEY_VARS", str(tmp_path / "group_vars" / "all" / "deploy_key.yml"))
    monkeypatch.setattr(inventory, "SSH_KEY", str(tmp_path / "no-key"))  # no key yet: no deploy_key.yml
    monkeypatch.setattr(inventory, "lab_containers", lambda: [("db2", {}), ("edge1", {}), ("db1", {})])
    inventory.write_inventory("http://192.0.2.1:3142")
    assert not (tmp_path / "group_vars").exists()
    text = path.read_text()
    assert text.startswith(settings.GENERATED_MARK)
    data = yaml.safe_load(text)["all"]
    assert list(data["children"]) == [*settings.GROUP_ORDER, "isolated"]
    assert data["children"]["isolated"]["hosts"] == {}  # no compromised host (playbooks/isolate-host.yml)
    assert list(data["children"]["db"]["hosts"]) == ["db1", "db2"]
    assert data["children"]["app"]["hosts"] == {}
    assert data["vars"]["common_apt_proxy"] == "http://192.0.2.1:3142"
    assert data["vars"]["lab_vip"] == str(settings.VIP)
    # the deploy key is not in hosts.yml: group_vars/all/deploy_key.yml (below) is its one place
    assert "ansible_ssh_private_key_file" not in data["vars"]


def test_the_lab_key_is_the_inventory_s_deploy_key(tmp_path, monkeypatch):
    """group_vars/all/deploy_key.yml: the public half of the lab key as the one authorized
    key, its private half as the control node's key (what the rotation drill puts back)."""
    key = tmp_path / ".lab" / "id_ed25519"
    key.parent.mkdir()
    pub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ5dGVzLW9mLWEtdGVzdC1rZXktMDEyMzQ1Njc4OQ ssai-lab-deploy"
    pathlib.Path(f"{key}.pub").write_text(pub + "\n")
    target = tmp_path / "group_vars" / "all" / "deploy_key.yml"
    monkeypatch.setattr(inventory, "DEPLOY_KEY_VARS", str(target))
    monkeypatch.setattr(inventory, "SSH_KEY", str(key))
    inventory.write_deploy_key_vars()
    text = target.read_text()
    assert text.startswith(settings.GENERATED_MARK)
    assert yaml.safe_load(text) == {"deploy_authorized_keys": [pub], "ansible_ssh_private_key_file": str(key)}
    inventory.write_deploy_key_vars()
    assert target.read_text() == text  # byte for byte the same on every up
    assert settings.DEPLOY_KEY_VARS == os.path.join(settings.INV_DIR, "group_vars", "all", "deploy_key.yml")


def test_a_new_pebble_forgets_the_saved_edge_certificates(tmp_path, monkeypatch):
    """The lab's state backup of the edges' /etc/letsencrypt was issued by the Pebble
    of the lab services host; a new one has a new root, so the copies go with it
    (else a rebuilt edge restores a certificate the tests cannot verify)."""
    saved = tmp_path / ".lab" / "state-backup" / "letsencrypt"
    saved.mkdir(parents=True)
    (saved / "edge1.tar.gz.vault").write_text("x")
    archive = saved.parent / "socialsphere-state-20261202T000000Z.tar.gz.vault"
    archive.write_text("x")
    monkeypatch.setattr(containers, "EDGE_CERT_BACKUP", str(saved))
    monkeypatch.setattr(containers, "REPO", str(tmp_path))
    containers.forget_edge_certificates()
    assert not saved.exists() and archive.exists()
    containers.forget_edge_certificates()  # nothing saved: nothing to do
    assert settings.EDGE_CERT_BACKUP == os.path.join(settings.KEY_DIR, "state-backup", "letsencrypt")
