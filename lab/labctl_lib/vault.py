"""Lab secrets: the lab's SSH key (.lab/id_ed25519) and its ansible-vault file
(inventories/lab/group_vars/all/vault.yml, password in .lab/vault-pass)."""

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import string

from .settings import GENERATED_MARK, KEY_DIR, LAB_NAME, REPO, SSH_KEY, VAULT, VAULT_PASS
from .util import LabError, apt_install, have, log, run

# Lab secrets: (variable, generator(current values)).  Add a line to add a secret;
# existing values are kept, missing ones are generated on the next `labctl up`.
ALNUM = string.ascii_letters + string.digits


def _password(n=32):
    return "".join(secrets.choice(ALNUM) for _ in range(n))


def _jwt_keys(_cur):
    return json.dumps({f"lab-{secrets.token_hex(4)}": secrets.token_hex(32)})


def _jwt_active_kid(cur):
    return next(iter(json.loads(cur["vault_app_jwt_keys"])))


VAULT_VARS = [
    ("vault_app_secret_key", lambda c: secrets.token_urlsafe(48)),
    ("vault_app_jwt_keys", _jwt_keys),
    ("vault_app_jwt_active_kid", _jwt_active_kid),
    ("vault_app_token_encryption_key",
     lambda c: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()),
    ("vault_postgresql_superuser_password", lambda c: _password()),
    ("vault_postgresql_replication_password", lambda c: _password()),
    ("vault_postgresql_owner_password", lambda c: _password()),
    # The app's two database login roles (socialsphere_app_a, _b): a logs in, b is idle
    # and disabled until a rotation (scripts/db-password, docs/runbooks/rotate-secrets.md).
    # A lab vault of an older version keeps its vault_postgresql_app_password (unused).
    ("vault_postgresql_app_logins", lambda c: {"a": _password(), "b": ""}),
    ("vault_postgresql_app_active_login", lambda c: "a"),
    ("vault_pgbackrest_cipher_pass", lambda c: _password(48)),
    ("vault_pgbackrest_repo2_cipher_pass", lambda c: _password(48)),
    ("vault_app_admin_password", lambda c: _password(24)),
    ("vault_haproxy_stats_password", lambda c: _password(24)),
    ("vault_keepalived_auth_pass", lambda c: _password(8)),  # VRRP PASS: 8 chars max
    ("vault_smtp_password", lambda c: _password(24)),
    ("vault_alertmanager_smtp_password", lambda c: _password(24)),
    ("vault_grafana_admin_password", lambda c: _password(24)),
]


VAULT_INDEX = os.path.join(KEY_DIR, "vault-index.json")  # names + checksum, no values


def ansible_vault_bin():
    for cand in (os.environ.get("ANSIBLE_VAULT"),
                 os.path.join(REPO, ".venv", "bin", "ansible-vault"),
                 shutil.which("ansible-vault")):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise LabError("ansible-vault not found: run `make venv` (creates .venv) or set "
                   "ANSIBLE_VAULT=/path/to/ansible-vault")


def ensure_key_dir():
    os.makedirs(KEY_DIR, mode=0o700, exist_ok=True)
    os.chmod(KEY_DIR, 0o700)


def ensure_ssh_key():
    if not (have("ssh-keygen") and have("ssh")):
        apt_install("openssh-client")  # Ansible and the lab reach the hosts over SSH
    ensure_key_dir()
    if not os.path.exists(SSH_KEY):
        log(f"generating the lab SSH key {SSH_KEY}")
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{LAB_NAME}-lab-deploy",
             "-f", SSH_KEY])
    os.chmod(SSH_KEY, 0o600)
    with open(SSH_KEY + ".pub") as f:
        return f.read().strip()


def _write_vault_index(values):
    with open(VAULT_INDEX, "w") as f:
        json.dump({"sha256": _sha256(VAULT), "names": sorted(values)}, f)
    os.chmod(VAULT_INDEX, 0o600)


def _parse_vault_yaml(text):
    values = {}
    for line in text.splitlines():
        m = re.match(r"^(vault_\w+):\s*(.*)$", line)
        if not m:
            continue
        raw = m.group(2).strip()
        try:
            values[m.group(1)] = json.loads(raw)
        except ValueError:
            values[m.group(1)] = raw.strip("'")
    return values



def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _vault_is_complete():
    """True when vault.yml is the one we wrote last and has every variable (no decrypt)."""
    try:
        with open(VAULT_INDEX) as f:
            index = json.load(f)
        return (os.path.exists(VAULT_PASS) and index["sha256"] == _sha256(VAULT)
                and {n for n, _ in VAULT_VARS} <= set(index["names"]))
    except (OSError, ValueError, KeyError):
        return False


def ensure_vault():
    """Create or complete the lab vault; existing secrets are kept."""
    if _vault_is_complete():
        return
    av = ansible_vault_bin()
    ensure_key_dir()
    current = {}
    if os.path.exists(VAULT):
        if not os.path.exists(VAULT_PASS):
            raise LabError(f"{VAULT} exists but {VAULT_PASS} is missing: remove the vault "
                           "(`labctl purge`) to generate new lab secrets")
        p = run([av, "view", "--vault-password-file", VAULT_PASS, VAULT], quiet=True)
        current = _parse_vault_yaml(p.stdout)
    elif not os.path.exists(VAULT_PASS):
        fd = os.open(VAULT_PASS, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    os.chmod(VAULT_PASS, 0o600)
    values, changed = dict(current), not os.path.exists(VAULT)
    for name, gen in VAULT_VARS:
        if name not in values:
            values[name] = gen(values)
            changed = True
    if not changed:
        _write_vault_index(values)
        return
    lines = [f"{GENERATED_MARK}: lab secrets, generated per lab.",
             "# Encrypted with .lab/vault-pass; view with",
             ("#   ansible-vault view --vault-password-file .lab/vault-pass "
              "inventories/lab/group_vars/all/vault.yml"),
             "---"]
    lines += [f"{k}: {json.dumps(v)}" for k, v in values.items()]
    os.makedirs(os.path.dirname(VAULT), exist_ok=True)
    tmp = VAULT + ".tmp"
    # plaintext only on the pipe, never on disk nor in the output
    run([av, "encrypt", "--vault-password-file", VAULT_PASS, "--output", tmp, "-"],
        input="\n".join(lines) + "\n", quiet=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, VAULT)
    _write_vault_index(values)
    log(f"lab vault written: {os.path.relpath(VAULT, REPO)} ({len(values)} secrets)")
