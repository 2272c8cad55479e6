"""The one way the infrastructure tests run Ansible: the project's ansible.cfg,
the tool venv's binaries, no colours, and the output captured for assertions.

Importable from every test directory (tests/conftest.py puts tests/ on sys.path)."""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import yaml

REPO = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(sys.executable).parent


def ansible_env(**extra):
    """Environment for ansible-* commands; `extra` adds or overrides variables."""
    return dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                ANSIBLE_FORCE_COLOR="0", PATH=f"{BIN}:{os.environ['PATH']}", **extra)


def local_env(**extra):
    """ansible_env for playbooks whose hosts are this machine (local connection, the unit
    tests' fixture inventories): facts gathered per play and kept in memory only."""
    return ansible_env(ANSIBLE_CACHE_PLUGIN="memory", ANSIBLE_GATHERING="implicit", **extra)


def local_os_as_supported():
    """Extra vars (-e) that make this machine's OS supported by preflight (the tests run anywhere)."""
    info = dict(line.split("=", 1) for line in pathlib.Path("/etc/os-release").read_text().splitlines() if "=" in line)
    name = info.get("NAME", "").strip('"').split()[0]
    version = info.get("VERSION_ID", "").strip('"')
    if name == "Debian":
        version = version.split(".")[0]
    return json.dumps({"preflight_supported_os": [{"distribution": name, "version": version}]})


def playbook_command(inventory, playbook, *extra, vault_pass=None):
    """The ansible-playbook command line: `inventory` is one source or a list of them (one
    -i each, later ones win), `playbook` a name under playbooks/ or a path."""
    sources = inventory if isinstance(inventory, list | tuple) else [inventory]
    cmd = [str(BIN / "ansible-playbook")]
    for source in sources:
        cmd += ["-i", str(source)]
    if vault_pass:
        cmd += ["--vault-password-file", str(vault_pass)]
    return cmd + [str(REPO / "playbooks" / playbook), *extra]


def run_playbook_process(inventory, playbook, *extra, vault_pass=None, env=None, timeout=1800, check=False):
    """Run a playbook (see playbook_command); the CompletedProcess (stdout and stderr apart)
    with ``elapsed`` (seconds) and ``cmd``."""
    cmd = playbook_command(inventory, playbook, *extra, vault_pass=vault_pass)
    started = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env=env or ansible_env(), capture_output=True, text=True,
                          timeout=timeout, check=check)
    proc.elapsed = time.time() - started
    proc.started = started
    return proc


def run_playbook(inventory, playbook, *extra, vault_pass=None, env=None, timeout=1800):
    """Run playbooks/<playbook> against `inventory`; return (returncode, stdout + stderr)."""
    proc = run_playbook_process(inventory, playbook, *extra, vault_pass=vault_pass, env=env, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def render_role_template(tmp_path, role, template, variables=None, inventory="localhost,", **env):
    """roles/<role>/templates/<template> rendered by Ansible with the role's defaults and
    vars (a copy of the role whose only task is the template), against `inventory`
    ("localhost," with a local connection, or an inventory file whose localhost the
    caller sets up) with `variables` as extra vars; `env` adds environment variables
    (e.g. PYTHONHASHSEED). Returns the rendered file's path."""
    copy = tmp_path / "roles" / role
    if not copy.exists():
        for sub in ("defaults", "vars", "templates"):
            shutil.copytree(REPO / "roles" / role / sub, copy / sub)
        (copy / "tasks").mkdir()
    out = tmp_path / f"{template.removesuffix('.j2')}.{len(list(tmp_path.glob('render-*.yml')))}"
    (copy / "tasks" / "main.yml").write_text(yaml.safe_dump([{
        "name": f"Render {template}", "ansible.builtin.template": {"src": template, "dest": str(out), "mode": "0600"}}]))
    playbook = tmp_path / f"render-{out.suffix[1:]}.yml"
    play = {"name": "Render", "hosts": "localhost", "gather_facts": False, "roles": [role]}
    extra = ["-e", json.dumps(variables or {})]
    if inventory == "localhost,":
        play["vars"] = {"ansible_python_interpreter": "{{ ansible_playbook_python }}"}
        extra = ["-c", "local", *extra]
    playbook.write_text(yaml.safe_dump([play]))
    rc, output = run_playbook(inventory, str(playbook), *extra, timeout=120,
                              env=local_env(ANSIBLE_ROLES_PATH=str(tmp_path / "roles"), **env))
    assert rc == 0, output
    return out


_RECAP_LINE = re.compile(r"^(\S+)\s+:\s+((?:[a-z]+=\d+\s*)+)$")


def parse_recap(output):
    """PLAY RECAP lines → {host: {"ok": n, "changed": n, ...}} (the last recap of the
    output). Lines after the recap that are not host counters (warnings printed at exit)
    are ignored."""
    recap, in_recap = {}, False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap, recap = True, {}
            continue
        match = _RECAP_LINE.match(line.rstrip()) if in_recap else None
        if match:
            recap[match.group(1)] = {k: int(v) for k, v in (c.split("=") for c in match.group(2).split())}
    return recap


def encrypted_vault(directory, text, password="test-vault-password"):
    """A vault file holding `text`, encrypted with ansible-vault (the real tool) in
    `directory`; returns (vault path, password file)."""
    directory = pathlib.Path(directory)
    password_file = directory / "vault-pass"
    password_file.write_text(password + "\n")
    path = directory / "vault.yml"
    path.write_text(text)
    subprocess.run([str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(password_file), str(path)],
                   env=ansible_env(), capture_output=True, check=True, timeout=60)
    return path, password_file


def vault_plaintext(path, password_file):
    """The decrypted text of a vault file (ansible-vault view)."""
    return subprocess.run([str(BIN / "ansible-vault"), "view", "--vault-password-file", str(password_file), str(path)],
                          env=ansible_env(), capture_output=True, text=True, check=True, timeout=60).stdout


def run_vault_script(script, vault, *args):
    """One of the vault-editing scripts (scripts/jwt-keys, scripts/db-password) on a
    vault from encrypted_vault(); returns (exit code, stdout + stderr)."""
    path, password_file = vault
    proc = subprocess.run([sys.executable, str(script), "--vault-file", str(path), "--vault-password-file",
                           str(password_file), *args], env=ansible_env(), capture_output=True, text=True,
                          timeout=120, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def run_check_cases(directory, playbook, cases):
    """Run a playbook of the rotation checks over made-up cases on this machine
    (tests/unit/playbooks/rotate_*_checks.yml); returns {case: {failed, msg, plan}}."""
    directory = pathlib.Path(directory)
    (directory / "cases.json").write_text(json.dumps({"cases": cases, "results_file": str(directory / "results.json")}))
    rc, out = run_playbook("localhost,", playbook, "-c", "local", "-e", f"@{directory / 'cases.json'}", timeout=300)
    assert rc == 0, out[-4000:]
    results = json.loads((directory / "results.json").read_text())
    assert set(results) == set(cases), out[-2000:]
    return results


def case_plan(results, name):
    """The plan of a case the checks accepted."""
    result = results[name]
    assert not result["failed"], result["msg"]
    return result["plan"]


def case_refusal(results, name):
    """The message of a case the checks refused."""
    result = results[name]
    assert result["failed"], f"{name} was not refused: {result.get('plan')}"
    return result["msg"]
