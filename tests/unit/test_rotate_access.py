"""The deploy SSH key and the vault password rotations, without containers.

- playbooks/rotate-secrets.yml -e rotate=deploy_key refuses a bad request before any host
  is touched (the real playbook against a copy of the preflight fixture inventory, with
  real ed25519 keys made by ssh-keygen): the phase, --limit, the inventory's one list of
  keys, the key this control node connects with (present, 0600, its .pub listed), phase
  add without a key to add, phase all without force or without the leaked key's file.
  A valid request goes on to log in with that key only (a real ssh, refused here).
- The filter that compares keys (playbooks/filter_plugins/ssh_keys.py) against
  ssh-keygen's own fingerprints.
- scripts/deploy-key makes a real key pair (0600) and prints what goes where, never the
  private key; `status` marks the key this control node uses.
- scripts/vault-rekey re-encrypts a temp inventory's vault files (and a state backup
  directory's) with real ansible-vault, keeps the old ones, prints no secret, refuses a
  wrong or unchanged password with nothing changed; its lab variant rotates
  .lab/vault-pass and back.
"""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import stat
import subprocess
import sys

import pytest
import yaml

from ansible_run import BIN, REPO, ansible_env, local_env, run_playbook, vault_plaintext

sys.path.insert(0, str(REPO / "playbooks" / "filter_plugins"))
from ssh_keys import ssai_ssh_keys  # noqa: E402

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "inventory_ok"
DEPLOY_KEY = REPO / "scripts" / "deploy-key"
VAULT_REKEY = REPO / "scripts" / "vault-rekey"
SECRET = "the-secret-value-" + "x" * 20


def keygen(path: pathlib.Path, comment: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True,
                   capture_output=True)
    return pathlib.Path(f"{path}.pub").read_text().strip()


def ssh_keygen_fingerprint(pub: pathlib.Path) -> str:
    return subprocess.run(["ssh-keygen", "-l", "-f", str(pub)], check=True, capture_output=True,
                          text=True).stdout.split()[1]


# ---------------------------------------------------------------- the request play
@pytest.fixture
def keys(tmp_path):
    """Two real key pairs: `old` (the control node connects with it) and `new`."""
    d = tmp_path / "keys"
    d.mkdir(mode=0o700)
    return {"old": (d / "old", keygen(d / "old", "deploy-old")), "new": (d / "new", keygen(d / "new", "deploy-new"))}


@pytest.fixture
def inventory(tmp_path, keys):
    dest = tmp_path / "inventory"
    shutil.copytree(FIXTURE, dest)
    vars_file = dest / "group_vars" / "all" / "vars.yml"
    data = yaml.safe_load(vars_file.read_text())
    data["common_admin_users"] = [{"name": "deploy", "ssh_keys": "{{ deploy_authorized_keys }}"}]
    vars_file.write_text(yaml.safe_dump(data))
    set_deploy_keys(dest, [keys["old"][1], keys["new"][1]], keys["old"][0])
    return dest


def set_deploy_keys(inventory, authorized, key_file):
    data = {}
    if authorized is not None:
        data["deploy_authorized_keys"] = authorized
    if key_file is not None:
        data["ansible_ssh_private_key_file"] = str(key_file)
    (inventory / "group_vars" / "all" / "deploy_key.yml").write_text(yaml.safe_dump(data))


def rotate(inventory, *extra):
    # ansible_user: the fixture connects locally; the rotation needs the operator's name.
    return run_playbook(inventory / "hosts.yml", "rotate-secrets.yml", "-e", "rotate=deploy_key",
                        "-e", "ansible_user=deploy", *extra, timeout=300, env=local_env())


def assert_refused(rc, out, message):
    assert rc != 0
    assert message in re.sub(r"\s+", " ", out), out[-3000:]
    assert "PLAY RECAP" in out and not re.search(r"changed=[1-9]", out)
    assert "PRIVATE KEY" not in out


@pytest.mark.parametrize("extra, message", [
    ((), "-e rotate_deploy_key_phase=add|switch|retire is required (got '')"),
    (("-e", "rotate_deploy_key_phase=swap"), "-e rotate_deploy_key_phase=add|switch|retire is required (got 'swap')"),
    (("-e", "rotate_deploy_key_phase=all"),
     "it is for a leaked key only and needs -e rotate_deploy_key_force=true"),
    (("-e", "rotate_deploy_key_phase=retire", "-e", "rotate_deploy_key_force=true"),
     "-e rotate_deploy_key_force=true goes with -e rotate_deploy_key_phase=all only"),
    (("-e", "rotate_deploy_key_phase=add", "--limit", "app1"),
     "changes the deploy user's keys on every host or on none: run it without --limit (left out: app2, backup1, "
     "backup2, db1, db2, edge1, edge2, mon1)"),
    (("-e", "rotate_deploy_key_phase=add", "--limit", "all:!mon1"), "without --limit (left out: mon1)"),
])
def test_a_bad_request_is_refused(inventory, extra, message):
    assert_refused(*rotate(inventory, *extra), message)


def test_the_key_file_must_exist(inventory, keys, tmp_path):
    set_deploy_keys(inventory, [keys["old"][1], keys["new"][1]], tmp_path / "missing")
    assert_refused(*rotate(inventory, "-e", "rotate_deploy_key_phase=add"),
                   f"ansible_ssh_private_key_file {tmp_path / 'missing'} does not exist on this control node")


def test_the_key_file_must_be_private(inventory, keys):
    os.chmod(keys["old"][0], 0o644)
    assert_refused(*rotate(inventory, "-e", "rotate_deploy_key_phase=add"),
                   f"{keys['old'][0]} has mode 0644: a private key must be readable by its owner only")


def test_the_public_half_must_be_there(inventory, keys):
    pathlib.Path(f"{keys['old'][0]}.pub").unlink()
    assert_refused(*rotate(inventory, "-e", "rotate_deploy_key_phase=add"),
                   f"{keys['old'][0]}.pub, the public half of ansible_ssh_private_key_file, is missing")


def test_the_key_file_must_be_set(inventory, keys):
    set_deploy_keys(inventory, [keys["old"][1], keys["new"][1]], None)
    assert_refused(*rotate(inventory, "-e", "rotate_deploy_key_phase=add"),
                   "ansible_ssh_private_key_file is not set: the rotation needs to know which key")


@pytest.mark.parametrize("phase", ["add", "switch", "retire"])
def test_a_list_without_the_key_in_use_is_refused_as_a_lock_out(inventory, keys, phase):
    set_deploy_keys(inventory, [keys["new"][1]], keys["old"][0])
    fingerprint = ssh_keygen_fingerprint(pathlib.Path(f"{keys['old'][0]}.pub"))
    assert_refused(*rotate(inventory, "-e", f"rotate_deploy_key_phase={phase}"),
                   f"({keys['old'][0]}, {fingerprint} (deploy-old)) is not in deploy_authorized_keys: this run "
                   "would remove it from every host and lock you out.")


def test_add_needs_a_key_to_add(inventory, keys):
    set_deploy_keys(inventory, [keys["old"][1]], keys["old"][0])
    assert_refused(*rotate(inventory, "-e", "rotate_deploy_key_phase=add"),
                   "Phase add: deploy_authorized_keys lists only the key this control node connects with")


@pytest.mark.parametrize("authorized, message", [
    (None, "deploy_authorized_keys is not set: list the deploy user's public keys in"),
    ("ssh-ed25519 AAAA", "deploy_authorized_keys in group_vars/all/deploy_key.yml must be a non-empty list"),
    ([], "must be a non-empty list of public keys"),
    ("KEYS_AND_JUNK", "entry 2 (counting from 1) is not an SSH public key"),
    ("KEYS_TWICE", "deploy_authorized_keys lists the same key twice (entries 3)"),
])
def test_a_bad_key_list_is_refused(inventory, keys, authorized, message):
    if authorized == "KEYS_AND_JUNK":
        authorized = [keys["old"][1], "ssh-ed25519 not-base64!", keys["new"][1]]
    elif authorized == "KEYS_TWICE":
        authorized = [keys["old"][1], keys["new"][1], keys["old"][1].rsplit(" ", 1)[0] + " another-comment"]
    set_deploy_keys(inventory, authorized, keys["old"][0])
    assert_refused(*rotate(inventory, "-e", "rotate_deploy_key_phase=add"), message)


def test_keys_listed_outside_deploy_authorized_keys_are_refused(inventory, keys):
    vars_file = inventory / "group_vars" / "all" / "vars.yml"
    data = yaml.safe_load(vars_file.read_text())
    data["common_admin_users"] = [{"name": "deploy", "ssh_keys": [keys["old"][1]]}]
    vars_file.write_text(yaml.safe_dump(data))
    assert_refused(*rotate(inventory, "-e", "rotate_deploy_key_phase=add"),
                   "The common_admin_users entry of the connecting user (deploy) does not list exactly "
                   "deploy_authorized_keys on app1, app2, backup1")


def test_a_key_list_that_differs_per_host_is_refused(inventory, keys):
    (inventory / "host_vars").mkdir()
    (inventory / "host_vars" / "db2.yml").write_text(yaml.safe_dump({"deploy_authorized_keys": [keys["old"][1]]}))
    assert_refused(*rotate(inventory, "-e", "rotate_deploy_key_phase=add"),
                   "deploy_authorized_keys differs between hosts: set it in group_vars/all/deploy_key.yml only")


@pytest.mark.parametrize("case, message", [
    ("no previous", "give its private key file with -e rotate_deploy_key_previous=PATH (found '', which does not exist)"),
    ("previous listed", "deploy_authorized_keys still lists the key to retire"),
    ("previous is current", "rotate_deploy_key_previous is the key ansible_ssh_private_key_file already names"),
])
def test_phase_all_needs_the_leaked_key_apart(inventory, keys, case, message):
    extra = ["-e", "rotate_deploy_key_phase=all", "-e", "rotate_deploy_key_force=true"]
    if case == "no previous":
        set_deploy_keys(inventory, [keys["new"][1]], keys["new"][0])
    elif case == "previous listed":
        set_deploy_keys(inventory, [keys["old"][1], keys["new"][1]], keys["new"][0])
        extra += ["-e", f"rotate_deploy_key_previous={keys['old'][0]}"]
    else:
        set_deploy_keys(inventory, [keys["new"][1]], keys["new"][0])
        extra += ["-e", f"rotate_deploy_key_previous={keys['new'][0]}"]
    assert_refused(*rotate(inventory, *extra), message)


@pytest.mark.parametrize("phase, message", [
    ("add", "This control node cannot log in with the key it uses now; fix that before adding a key."),
    ("switch", "The new key is not authorized there yet: run phase add first"),
    ("retire", "Refusing to retire: the key this control node uses does not log in everywhere."),
])
def test_a_valid_request_logs_in_with_that_key_only_before_anything_changes(inventory, keys, phase, message):
    """Past the request checks, a real ssh with the one key: refused here (nothing listens on
    127.0.0.1:9), so the run stops naming the host, before preflight connects anywhere."""
    if phase == "retire":
        set_deploy_keys(inventory, [keys["new"][1]], keys["new"][0])
    key = keys["new"][0] if phase == "retire" else keys["old"][0]
    rc, out = rotate(inventory, "-e", f"rotate_deploy_key_phase={phase}", "-e", "ansible_host=127.0.0.1",
                     "-e", "ansible_port=9")
    assert_refused(rc, out, f"refused a login with {key} only (ssh exit 255")
    assert_refused(rc, out, message)
    assert_refused(rc, out, "Nothing was changed.")
    assert "Check the inventory" not in out  # preflight.yml never ran


# ---------------------------------------------------------------- the key filter
def test_keys_are_compared_by_key_and_named_by_ssh_keygen_fingerprints(keys):
    old_pub = pathlib.Path(f"{keys['old'][0]}.pub")
    authorized = ("# a comment line\n\n"
                  f'from="10.0.0.0/8",no-agent-forwarding {keys["old"][1]}\n'
                  f"{keys['new'][1].rsplit(' ', 1)[0]}\n")
    desc = ssai_ssh_keys(authorized)
    assert desc["pubkeys"] == [" ".join(keys["old"][1].split()[:2]), " ".join(keys["new"][1].split()[:2])]
    assert desc["invalid"] == [] and desc["duplicates"] == []
    old = desc["pubkeys"][0]
    assert desc["fingerprints"][old] == ssh_keygen_fingerprint(old_pub)
    assert desc["labels"][old] == f"{ssh_keygen_fingerprint(old_pub)} (deploy-old)"
    assert desc["labels"][desc["pubkeys"][1]] == desc["fingerprints"][desc["pubkeys"][1]]  # no comment


def test_entries_that_are_not_keys_are_named_by_position(keys):
    rsa_type_with_ed25519_blob = "ssh-rsa " + keys["old"][1].split()[1]
    desc = ssai_ssh_keys([keys["old"][1], "ssh-ed25519", "", rsa_type_with_ed25519_blob, "ssh-ed25519 @@@",
                          keys["old"][1]])
    assert desc["invalid"] == [2, 3, 4, 5]
    assert desc["duplicates"] == [6]
    assert len(desc["pubkeys"]) == 1


# ---------------------------------------------------------------- scripts/deploy-key
def deploy_key(*args):
    proc = subprocess.run([sys.executable, str(DEPLOY_KEY), *args], capture_output=True, text=True, timeout=60,
                          check=False, env=ansible_env())
    return proc.returncode, proc.stdout + proc.stderr


def test_deploy_key_new_makes_a_private_key_pair_and_says_where_it_goes(inventory, tmp_path):
    key = tmp_path / "ssh" / "deploy-2026"
    rc, out = deploy_key("-i", str(inventory), "new", "--no-passphrase", "--file", str(key))
    assert rc == 0, out
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    pub = pathlib.Path(f"{key}.pub").read_text().strip()
    assert pub.startswith("ssh-ed25519 ")
    assert subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True,
                          check=True).stdout.split()[:2] == pub.split()[:2]
    assert ssh_keygen_fingerprint(pathlib.Path(f"{key}.pub")) in out
    assert f'- "{pub}"' in out
    assert f"ansible_ssh_private_key_file: {key}" in out
    for phase in ("add", "switch", "retire", "all"):
        assert f"-e rotate=deploy_key -e rotate_deploy_key_phase={phase}" in out
    assert "PRIVATE KEY" not in out and key.read_text().split("\n")[1] not in out
    # never overwritten
    before = key.read_bytes()
    rc, out = deploy_key("-i", str(inventory), "new", "--no-passphrase", "--file", str(key))
    assert rc == 1 and "exists: this script never overwrites a key" in out
    assert key.read_bytes() == before


def test_deploy_key_status_marks_the_key_in_use(inventory, keys):
    rc, out = deploy_key("-i", str(inventory), "status")
    assert rc == 0, out
    old_fp = ssh_keygen_fingerprint(pathlib.Path(f"{keys['old'][0]}.pub"))
    new_fp = ssh_keygen_fingerprint(pathlib.Path(f"{keys['new'][0]}.pub"))
    assert f"{old_fp} (deploy-old)  <- this control node connects with it" in out
    assert f"{new_fp} (deploy-new)\n" in out
    assert f"ansible_ssh_private_key_file: {keys['old'][0]} (mode 0600)" in out
    set_deploy_keys(inventory, [keys["new"][1]], keys["old"][0])
    rc, out = deploy_key("-i", str(inventory), "status")
    assert rc == 0 and "WARNING: that key is not in deploy_authorized_keys" in out


def test_deploy_key_status_without_the_vars_file_is_refused(tmp_path):
    (tmp_path / "inv").mkdir()
    rc, out = deploy_key("-i", str(tmp_path / "inv"), "status")
    assert rc == 1 and "group_vars/all/deploy_key.yml does not exist" in out


# ---------------------------------------------------------------- scripts/vault-rekey
def encrypt(path: pathlib.Path, data: bytes, password_file: pathlib.Path, label: str | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    opts = ["--vault-id", f"{label}@{password_file}"] if label else ["--vault-password-file", str(password_file)]
    subprocess.run([str(BIN / "ansible-vault"), "encrypt", *opts, str(path)], env=ansible_env(), check=True,
                   capture_output=True)


def opens_with(path, password_file) -> bytes | None:
    proc = subprocess.run([str(BIN / "ansible-vault"), "decrypt", "--vault-password-file", str(password_file),
                           "--output", "-", str(path)], env=ansible_env(), capture_output=True, check=False)
    return proc.stdout if proc.returncode == 0 else None


@pytest.fixture
def checkout(tmp_path):
    """A checkout's layout: an inventory with a vault and a plain vars file, a state backup
    directory with a labelled binary vault file, the old password."""
    root = tmp_path / "checkout"
    old = tmp_path / "old-pass"
    old.write_text("the-old-password-0123456789\n")
    old.chmod(0o600)
    encrypt(root / "inventories" / "prod" / "group_vars" / "all" / "vault.yml", f"vault_x: {SECRET}\n".encode(), old)
    (root / "inventories" / "prod" / "group_vars" / "all" / "vars.yml").write_text("x: 1\n")
    encrypt(root / "state-backup" / "letsencrypt" / "edge1.tar.gz.vault", b"\x00binary" + SECRET.encode(), old,
            label="state")
    return root, old


def vault_rekey(root, *args):
    proc = subprocess.run([sys.executable, str(VAULT_REKEY), *args], capture_output=True, text=True, timeout=300,
                          check=False, env=ansible_env(SSAI_CHECKOUT=str(root)))
    return proc.returncode, proc.stdout + proc.stderr


def test_vault_rekey_re_encrypts_every_vault_file_and_keeps_the_old_ones(checkout, tmp_path):
    root, old = checkout
    inv = root / "inventories" / "prod"
    vault = inv / "group_vars" / "all" / "vault.yml"
    backup = root / "state-backup" / "letsencrypt" / "edge1.tar.gz.vault"
    new = tmp_path / "new-pass"
    rc, out = vault_rekey(root, "-i", str(inv), "--vault-password-file", str(old), "--new-vault-password-file",
                          str(new), "--generate", "--also", str(root / "state-backup"))
    assert rc == 0, out
    assert stat.S_IMODE(new.stat().st_mode) == 0o600
    assert new.read_text().strip() not in out and SECRET not in out and "the-old-password" not in out
    assert "2 vault file(s) now open with" in out
    assert vault_plaintext(vault, new) == f"vault_x: {SECRET}\n"
    assert opens_with(vault, old) is None
    assert opens_with(backup, new) == b"\x00binary" + SECRET.encode()
    assert backup.read_bytes().startswith(b"$ANSIBLE_VAULT;1.2;AES256;state\n")  # its label kept
    assert (inv / "group_vars" / "all" / "vars.yml").read_text() == "x: 1\n"
    keep = re.search(r"kept in (\S+)/:", out).group(1)
    kept = root / keep / "old" / "inventories" / "prod" / "group_vars" / "all" / "vault.yml"
    assert vault_plaintext(kept, old) == f"vault_x: {SECRET}\n"


@pytest.mark.parametrize("case, message", [
    ("wrong old", "does not decrypt with"),
    ("same", "holds the same password as"),
    ("short", "holds a password shorter than 16 characters"),
    ("missing new", "does not exist: put the new password there (mode 0600), or add --generate"),
])
def test_vault_rekey_refuses_with_nothing_changed(checkout, tmp_path, case, message):
    root, old = checkout
    inv = root / "inventories" / "prod"
    vault = inv / "group_vars" / "all" / "vault.yml"
    before = vault.read_bytes()
    new = tmp_path / "new-pass"
    if case == "wrong old":
        wrong = tmp_path / "wrong"
        wrong.write_text("not-the-password-at-all\n")
        args = ["--vault-password-file", str(wrong), "--new-vault-password-file", str(new), "--generate"]
    elif case == "same":
        args = ["--vault-password-file", str(old), "--new-vault-password-file", str(old)]
    elif case == "short":
        new.write_text("short\n")
        args = ["--vault-password-file", str(old), "--new-vault-password-file", str(new)]
    else:
        args = ["--vault-password-file", str(old), "--new-vault-password-file", str(new)]
    rc, out = vault_rekey(root, "-i", str(inv), *args)
    assert rc == 1 and message in out, out
    assert vault.read_bytes() == before
    assert not (root / ".vault-rekey").exists()
    if case == "wrong old":
        assert not new.exists()  # a generated password nothing is encrypted with is not left behind
    assert SECRET not in out


def test_vault_rekey_of_the_lab_rotates_its_password_file_and_back(tmp_path):
    root = tmp_path / "checkout"
    lab = root / ".lab"
    lab.mkdir(parents=True)
    password = lab / "vault-pass"
    password.write_text("lab-password-0123456789abcdef\n")
    password.chmod(0o600)
    original = password.read_bytes()
    vault = root / "inventories" / "lab" / "group_vars" / "all" / "vault.yml"
    encrypt(vault, f"vault_y: {SECRET}\n".encode(), password)
    encrypt(lab / "state-backup" / "letsencrypt" / "edge1.tar.gz.vault", b"certs", password)
    (lab / "vault-index.json").write_text('{"sha256": "stale", "names": ["vault_y"]}')
    saved = tmp_path / "saved-pass"
    shutil.copy2(password, saved)

    rc, out = vault_rekey(root, "--lab")
    assert rc == 0, out
    assert password.read_bytes() != original and stat.S_IMODE(password.stat().st_mode) == 0o600
    assert vault_plaintext(vault, password) == f"vault_y: {SECRET}\n"
    assert opens_with(vault, saved) is None
    assert opens_with(lab / "state-backup" / "letsencrypt" / "edge1.tar.gz.vault", password) == b"certs"
    assert not (lab / "vault-pass.new").exists()
    index = yaml.safe_load((lab / "vault-index.json").read_text())
    assert index["sha256"] == __import__("hashlib").sha256(vault.read_bytes()).hexdigest()
    assert SECRET not in out and password.read_text().strip() not in out

    rc, out = vault_rekey(root, "--lab", "--new-vault-password-file", str(saved))  # and back
    assert rc == 0, out
    assert password.read_bytes() == original
    assert vault_plaintext(vault, password) == f"vault_y: {SECRET}\n"
