"""Action plugin vault_encrypt_file: encrypt a file of the control node with the run's vault secret.

    - name: Encrypt the archive
      vault_encrypt_file:
        src: /tmp/state/archive.tar.gz
        dest: .state-backup/production/socialsphere-state-20261202T2100Z.tar.gz.vault

The result is an ordinary ansible-vault file (AES256 with an HMAC), binary-safe:
`ansible-vault decrypt` opens it with the vault password alone, and
ansible.builtin.copy / ansible.builtin.unarchive decrypt it on their way to a host.
It runs on the control node only (an action plugin never reaches a host), reads the
secret the run was given (--vault-password-file, --ask-vault-pass, --vault-id), and
never puts it in an argument or a log. `dest` is written with mode 0600 through a
temporary file in its directory, so a reader never sees half a file.
"""
from __future__ import annotations

import os
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.parsing.vault import VaultLib, match_encrypt_secret
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("src", "dest"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        src = self._task.args.get("src")
        dest = self._task.args.get("dest")
        if not src or not dest:
            raise AnsibleActionFail("vault_encrypt_file needs src and dest (paths on the control node)")
        secrets = self._loader._vault.secrets  # the secrets of this run
        if not secrets:
            raise AnsibleActionFail(
                "vault_encrypt_file: this run has no vault secret; give one with --vault-password-file, "
                "--ask-vault-pass or --vault-id")
        vault_id, secret = match_encrypt_secret(secrets)
        try:
            with open(to_bytes(src), "rb") as fh:
                plaintext = fh.read()
        except OSError as exc:
            raise AnsibleActionFail(f"vault_encrypt_file: cannot read {src}: {exc.strerror}") from exc
        ciphertext = VaultLib(secrets).encrypt(plaintext, secret=secret, vault_id=vault_id)
        directory = os.path.dirname(os.path.abspath(dest))
        fd, partial = tempfile.mkstemp(dir=directory, prefix=".partial-")
        try:
            with os.fdopen(fd, "wb") as out:  # mkstemp: mode 0600
                out.write(ciphertext)
            os.replace(partial, dest)
        except OSError as exc:
            os.unlink(partial)
            raise AnsibleActionFail(f"vault_encrypt_file: cannot write {dest}: {exc.strerror}") from exc
        result.update(changed=True, dest=to_text(dest), size=len(plaintext))
        return result
