"""roles/socialsphere_app/templates/gunicorn.conf.py.j2 rendered by Ansible with the
role's defaults: the settings Gunicorn reads on start and on every reload name the
release `current` points at, its own migration scripts included (the app is installed
as a wheel, so without SOCIALSPHERE_MIGRATIONS_DIR /readyz looked for them in the
virtualenv and answered 503 schema_unverifiable once a newer release had migrated)."""
import os
import runpy

from ansible_run import render_role_template


def render(tmp_path, root):
    variables = {"socialsphere_app_root": str(root), "socialsphere_app_version": "2.0.0"}
    return render_role_template(tmp_path, "socialsphere_app", "gunicorn.conf.py.j2", variables)


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
