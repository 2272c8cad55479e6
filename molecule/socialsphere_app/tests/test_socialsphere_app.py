"""Testinfra checks of the socialsphere_app role (one app host, local PostgreSQL)."""
import json
import time

import pytest

ROOT = "/srv/socialsphere"


def _curl(host, path):
    return host.run(f"curl -sS -o /dev/stdout -w '\\n%{{http_code}}' http://127.0.0.1:8000{path}")


def _wait_ready(host, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = _curl(host, "/readyz").stdout.strip().splitlines()
        if out and out[-1] == "200":
            return True
        time.sleep(1)
    return False


def test_user_has_no_login_shell(host):
    user = host.user("socialsphere")
    assert user.exists
    assert user.shell in ("/usr/sbin/nologin", "/sbin/nologin")


def test_current_points_at_a_complete_release(host):
    current = host.file(f"{ROOT}/current")
    assert current.is_symlink
    target = current.linked_to
    assert target.startswith(f"{ROOT}/releases/")
    assert host.file(f"{target}/venv/.complete").exists
    manifest = json.loads(host.file(f"{target}/manifest.json").content_string)
    assert manifest["version"] == target.rsplit("/", 1)[1]
    assert manifest["alembic_head"]
    code = host.file(f"{target}/venv/bin/python")
    assert host.file(target).user == "root"
    assert code.exists


def test_environment_files_are_protected(host):
    env = host.file("/etc/socialsphere/socialsphere.env")
    assert (env.user, env.group, env.mode) == ("root", "socialsphere", 0o640)
    assert "verify-full" in env.content_string
    assert "target_session_attrs=read-write" in env.content_string
    migrate = host.file("/etc/socialsphere/migrate.env")
    assert (migrate.user, migrate.group, migrate.mode) == ("root", "root", 0o600)


def test_gunicorn_listens_on_the_private_address(host):
    assert host.service("socialsphere.service").is_running
    assert host.service("socialsphere.service").is_enabled
    assert host.socket("tcp://127.0.0.1:8000").is_listening
    assert not host.socket("tcp://0.0.0.0:8000").is_listening


def test_gunicorn_runs_as_the_app_user(host):
    pid = host.check_output("systemctl show -p MainPID --value socialsphere.service")
    assert host.check_output(f"ps -o user= -p {pid}").strip() == "socialsphere"


def test_readyz_is_ok_schema_migrated(host):
    assert _wait_ready(host)
    body = _curl(host, "/readyz").stdout.strip().splitlines()[0]
    assert json.loads(body)["status"] == "ready"


def test_readyz_client(host):
    """socialsphere-readyz (files/socialsphere-readyz.py), what `fab deploy` waits with."""
    assert host.file("/usr/local/bin/socialsphere-readyz").mode == 0o755
    out = host.check_output("socialsphere-readyz --timeout 30 http://127.0.0.1:8000/readyz")
    assert out == "http://127.0.0.1:8000/readyz: HTTP 200"
    res = host.run("socialsphere-readyz --timeout 1 http://127.0.0.1:8000/no-such-page")
    assert res.rc == 1 and "did not answer 200 within 1s (last: HTTP 404" in res.stderr, res.stderr


def test_sandboxing(host):
    props = host.check_output(
        "systemctl show socialsphere.service -p NoNewPrivileges -p ProtectSystem -p ProtectHome "
        "-p PrivateTmp -p PrivateDevices -p CapabilityBoundingSet -p RestrictAddressFamilies"
    )
    assert "NoNewPrivileges=yes" in props
    assert "ProtectSystem=strict" in props
    assert "ProtectHome=yes" in props
    assert "PrivateTmp=yes" in props
    assert "PrivateDevices=yes" in props
    assert "CapabilityBoundingSet=\n" in props + "\n" or "CapabilityBoundingSet=" in props


def test_worker_timers_run(host):
    for name in ("publish", "email"):
        assert host.service(f"socialsphere-{name}.timer").is_enabled
        assert host.service(f"socialsphere-{name}.timer").is_running
    res = host.run("systemctl start socialsphere-publish.service")
    assert res.rc == 0, res.stderr
    res = host.run("systemctl start socialsphere-email.service")
    assert res.rc == 0, res.stderr


def test_manage_wrapper_reports_schema(host):
    out = host.check_output("socialsphere-manage db current --directory /srv/socialsphere/current/migrations")
    manifest = json.loads(host.file(f"{ROOT}/current/manifest.json").content_string)
    assert manifest["alembic_head"] in out


def test_reload_is_graceful(host):
    """HUP: the master stays, the workers are replaced, /readyz keeps answering."""
    before = host.check_output("systemctl show -p MainPID --value socialsphere.service")
    host.run_expect([0], "systemctl reload socialsphere.service")
    failures = 0
    for _ in range(20):
        out = _curl(host, "/healthz").stdout.strip().splitlines()
        failures += 0 if out and out[-1] == "200" else 1
        time.sleep(0.1)
    assert failures == 0
    assert _wait_ready(host)
    assert host.check_output("systemctl show -p MainPID --value socialsphere.service") == before


def test_kill_9_is_restarted_by_systemd(host):
    before = host.check_output("systemctl show -p MainPID --value socialsphere.service")
    host.run_expect([0], f"kill -9 {before}")
    assert _wait_ready(host, 60)
    after = host.check_output("systemctl show -p MainPID --value socialsphere.service")
    assert after != before


@pytest.mark.parametrize("path", ["manifest.json"])
def test_static_assets_published(host, path):
    manifest = json.loads(host.file(f"{ROOT}/static/manifest.json").content_string)
    for name in manifest["files"]:
        assert host.file(f"{ROOT}/static/{name}").exists
    assert host.file(f"{ROOT}/static-manifests").is_directory
