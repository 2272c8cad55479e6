"""roles/socialsphere_app/templates/gunicorn.conf.py.j2 rendered by Ansible with the
role's defaults: the settings Gunicorn reads on start and on every reload name the
release `current` points at, its own migration scripts included (the app is installed
as a wheel, so without SOCIALSPHERE_MIGRATIONS_DIR /readyz looked for them in the
virtualenv and answered 503 schema_unverifiable once a newer release had migrated)."""
import json
import os
import runpy
import shutil

import yaml

from ansible_run import REPO, local_env, run_playbook


def render(tmp_path, root):
    role = tmp_path / "roles" / "socialsphere_app"
    for sub in ("defaults", "vars", "templates"):
        shutil.copytree(REPO / "roles" / "socialsphere_app" / sub, role / sub)
    (role / "tasks").mkdir()
    conf = tmp_path / "gunicorn.conf.py"
    (role / "tasks" / "main.yml").write_text(yaml.safe_dump([{
        "name": "Render gunicorn.conf.py", "ansible.builtin.template": {
            "src": "gunicorn.conf.py.j2", "dest": str(conf), "mode": "0644"}}]))
    playbook = tmp_path / "render.yml"
    playbook.write_text(yaml.safe_dump([{"name": "Render", "hosts": "localhost", "gather_facts": False,
                                         "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                                         "roles": ["socialsphere_app"]}]))
    variables = {"socialsphere_app_root": str(root), "socialsphere_app_version": "2.0.0"}
    rc, out = run_playbook("localhost,", str(playbook), "-c", "local", "-e", json.dumps(variables), timeout=120,
                           env=local_env(ANSIBLE_ROLES_PATH=str(tmp_path / "roles")))
    assert rc == 0, out
    return conf


def settings(conf):
    env = dict(item.split("=", 1) for item in runpy.run_path(str(conf))["raw_env"])
    return env


def test_the_workers_environment_names_the_current_release_and_its_migrations(tmp_path):
    root = tmp_path / "srv"
    for version in ("1.0.0", "2.0.0"):
        (root / "releases" / version / "migrations").mkdir(parents=True)
    os.symlink(root / "releases" / "1.0.0", root / "current")
    conf = render(tmp_path, root)
    assert settings(conf) == {"SOCIALSPHERE_RELEASE": "1.0.0",
                              "SOCIALSPHERE_MIGRATIONS_DIR": str(root / "releases" / "1.0.0" / "migrations")}
    # a reload re-reads the file after `current` moved: the new workers use the new scripts
    os.remove(root / "current")
    os.symlink(root / "releases" / "2.0.0", root / "current")
    env = settings(conf)
    assert env["SOCIALSPHERE_RELEASE"] == "2.0.0"
    assert os.path.isdir(env["SOCIALSPHERE_MIGRATIONS_DIR"])
    assert env["SOCIALSPHERE_MIGRATIONS_DIR"] == str(root / "releases" / "2.0.0" / "migrations")
