"""The scripts of roles/socialsphere_app/files, run as their command lines on this machine:
verify-release.py (the manifest check of release.yml) against release directories made
here, socialsphere-readyz against a local HTTP server on 127.0.0.1."""
import hashlib
import json
import pathlib
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

FILES = pathlib.Path(__file__).resolve().parents[2] / "roles" / "socialsphere_app" / "files"


def run(script, *args):
    return subprocess.run([sys.executable, str(FILES / script), *args], capture_output=True, text=True, timeout=60)


# ---------------------------------------------------------------- verify-release.py
def make_release(root, version="1.0.0+gabc", files=None):
    files = files or {"app/socialsphere/__init__.py": b"x = 1\n", "requirements.lock": b"flask==3\n"}
    manifest = {"version": version, "alembic_head": "abc", "files": {}}
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        manifest["files"][name] = {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_verify_release_accepts_an_intact_release(tmp_path):
    res = run("verify-release.py", str(make_release(tmp_path)), "1.0.0+gabc")
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")


def test_verify_release_names_changed_and_missing_files(tmp_path):
    root = make_release(tmp_path)
    (root / "requirements.lock").write_bytes(b"flask==2\n")
    (root / "app/socialsphere/__init__.py").unlink()
    res = run("verify-release.py", str(root), "1.0.0+gabc")
    assert res.returncode == 1
    assert "verify-release: missing: app/socialsphere/__init__.py" in res.stderr
    assert "verify-release: checksum mismatch: requirements.lock" in res.stderr


def test_verify_release_refuses_another_version(tmp_path):
    res = run("verify-release.py", str(make_release(tmp_path)), "1.0.1+gdef")
    assert res.returncode == 1
    assert "manifest version 1.0.0+gabc != 1.0.1+gdef" in res.stderr


def test_verify_release_caps_the_names_it_lists(tmp_path):
    root = make_release(tmp_path, files={f"f{i:02}": b"%d" % i for i in range(25)})
    for i in range(25):
        (root / f"f{i:02}").write_bytes(b"changed")
    res = run("verify-release.py", str(root), "1.0.0+gabc")
    assert res.returncode == 1
    assert "f19 (and 5 more)" in res.stderr and "f20" not in res.stderr


def test_verify_release_without_manifest_or_arguments(tmp_path):
    res = run("verify-release.py", str(tmp_path), "1.0.0")
    assert res.returncode == 1 and "manifest.json" in res.stderr
    assert run("verify-release.py").returncode == 2


# ---------------------------------------------------------------- socialsphere-readyz
class _App(BaseHTTPRequestHandler):
    ready_after = 0  # answers 503 to this many requests first

    def do_GET(self):  # noqa: N802 - http.server's handler name
        if self.path == "/readyz" and _App.ready_after <= 0:
            status, body = 200, b'{"status": "ready"}'
        else:
            _App.ready_after -= 1
            status, body = 503, b'{"status": "not ready", "reason": "draining"}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def app():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_readyz_waits_for_200(app):
    _App.ready_after = 3
    res = run("socialsphere-readyz.py", "--timeout", "20", "--interval", "0.1", f"{app}/readyz")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"{app}/readyz: HTTP 200"


def test_readyz_timeout_names_the_url_and_last_answer(app):
    res = run("socialsphere-readyz.py", "--timeout", "0.5", "--interval", "0.1", f"{app}/other")
    assert res.returncode == 1
    assert f"{app}/other did not answer 200 within 0.5s (last: HTTP 503" in res.stderr
    assert "draining" in res.stderr


def test_readyz_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = run("socialsphere-readyz.py", "--timeout", "0.3", f"http://127.0.0.1:{port}/readyz")
    assert res.returncode == 1
    assert "refused" in res.stderr.lower()


@pytest.mark.parametrize("args", [[], ["file:///etc/passwd"], ["http://x/readyz", "--timeout", "-1"]])
def test_readyz_usage_errors(args):
    res = run("socialsphere-readyz.py", *args)
    assert res.returncode == 2
    assert "usage: socialsphere-readyz" in res.stderr
