"""roles/socialsphere_app/files/socialsphere-switch.py, the drained window of a release in
one call, run as its command line against a release tree made here and a real Gunicorn.

The releases are tiny WSGI apps (each answers its own name, /readyz 200, /slow holds a
request for a second) under <tmp>/releases/<name>/, with a gunicorn.conf.py that
resolves `current` on every HUP as the role's template does. systemd is stood in for by
a `systemctl` script on PATH that runs that Gunicorn (show MainPID/ActiveState, reload =
HUP, restart = TERM then a new master, daemon-reload and reset-failed recorded): the
switch, the graceful reload and the waits are the real thing. Gunicorn comes from
app/.venv (`make -C app venv`) or SSAI_TEST_GUNICORN; without it these tests skip.
"""
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "roles" / "socialsphere_app" / "files" / "socialsphere-switch.py"
LIBEXEC_FILES = next(task["loop"] for task in yaml.safe_load(
    (REPO / "roles" / "socialsphere_app" / "tasks" / "install.yml").read_text())
    if "socialsphere-switch.py" in task.get("loop", []))
GUNICORN = os.environ.get("SSAI_TEST_GUNICORN") or str(REPO / "app" / ".venv" / "bin" / "gunicorn")

APP = '''
import time
RELEASE = {name!r}
{broken}

def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(1.0)
    body = RELEASE.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''

CONF = '''
import os
import sys
_current = os.path.realpath({current!r})
sys.path[:] = [p for p in sys.path if not p.startswith({releases!r})]
sys.path.insert(0, _current)
sys.modules.pop("wsgiapp", None)
chdir = _current
bind = ["127.0.0.1:{port}"]
workers = 2
graceful_timeout = 10
timeout = 30
'''

FAKE_SYSTEMCTL = '''#!{python}
"""systemctl for these tests: runs one Gunicorn (FAKE_SYSTEMD_DIR holds its pid and the calls)."""
import os, signal, socket, subprocess, sys, time
d = os.environ["FAKE_SYSTEMD_DIR"]
args = sys.argv[1:]
with open(os.path.join(d, "calls"), "a") as f:
    f.write(" ".join(a for a in args if not a.startswith("--property")) + "\\n")

def pid():
    try:
        p = int(open(os.path.join(d, "pid")).read())
        os.kill(p, 0)
        with open(f"/proc/{{p}}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return 0
        return p
    except (OSError, ValueError):
        return 0

cmd = args[0]
if cmd == "show":
    props = {{"MainPID": str(pid()), "ActiveState": "active" if pid() else "failed",
              "NeedDaemonReload": open(os.path.join(d, "need-daemon-reload")).read().strip()
              if os.path.exists(os.path.join(d, "need-daemon-reload")) else "no", "LoadState": "loaded"}}
    wanted = [p for a in args if a.startswith("--property=") for p in a.split("=", 1)[1].split(",")]
    for name in wanted:
        print(props[name] if "--value" in args else f"{{name}}={{props[name]}}")
elif cmd == "reload":
    os.kill(pid(), signal.SIGHUP)
elif cmd == "restart":
    old = pid()
    if old:
        os.kill(old, signal.SIGTERM)
        while pid():
            time.sleep(0.05)
    log = open(os.path.join(d, "gunicorn.log"), "ab")
    proc = subprocess.Popen([{gunicorn!r}, "-c", {conf!r}, "wsgiapp:app"], stdout=log, stderr=log,
                            start_new_session=True, cwd="/")
    open(os.path.join(d, "pid"), "w").write(str(proc.pid))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None:
                sys.exit("gunicorn exited")
            time.sleep(0.05)
elif cmd == "daemon-reload":
    try:
        os.remove(os.path.join(d, "need-daemon-reload"))
    except OSError:
        pass
'''


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def site(tmp_path):
    if not os.access(GUNICORN, os.X_OK):
        pytest.skip(f"no Gunicorn at {GUNICORN} (make -C app venv, or SSAI_TEST_GUNICORN)")
    root, fake = tmp_path / "srv", tmp_path / "systemd"
    (root / "releases").mkdir(parents=True)
    fake.mkdir()
    port = _free_port()
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(CONF.format(current=str(root / "current"), releases=str(root / "releases") + "/", port=port))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    systemctl = bindir / "systemctl"
    systemctl.write_text(FAKE_SYSTEMCTL.format(python=sys.executable, gunicorn=GUNICORN, conf=str(conf), port=port))
    systemctl.chmod(0o755)
    # What the role installs beside the switch (its install task's loop).
    libexec = tmp_path / "lib"
    libexec.mkdir()
    for name in LIBEXEC_FILES:
        shutil.copy(SCRIPT.parent / name, libexec / name)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", FAKE_SYSTEMD_DIR=str(fake))

    def release(name, broken=False, complete=True):
        d = root / "releases" / name
        (d / "venv").mkdir(parents=True)
        (d / "wsgiapp.py").write_text(APP.format(
            name=name, broken='raise RuntimeError("this release is broken")' if broken else ""))
        if complete:
            (d / "venv" / ".complete").touch()
        return name

    def switch(name, *args, timeout=20):
        res = subprocess.run([sys.executable, str(libexec / "socialsphere-switch.py"), "--root", str(root),
                              "--release", name, "--url", f"http://127.0.0.1:{port}/readyz",
                              "--timeout", str(timeout), *args],
                             capture_output=True, text=True, env=env, timeout=120, check=False)
        out = json.loads(res.stdout) if res.returncode == 0 else None
        return res, out

    def calls():
        text = (fake / "calls").read_text() if (fake / "calls").exists() else ""
        return [line for line in text.splitlines() if not line.startswith("show")]

    def main_pid():
        return int((fake / "pid").read_text())

    def get(path="/"):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:  # noqa: S310
            return resp.read().decode()

    ns = type("Site", (), {})()
    ns.root, ns.fake, ns.release, ns.switch, ns.calls, ns.main_pid, ns.get = (
        root, fake, release, switch, calls, main_pid, get)
    ns.port = port
    try:
        yield ns
    finally:
        if (fake / "pid").exists():
            try:
                os.killpg(main_pid(), 15)
            except OSError:
                pass


def _link(path):
    return os.path.basename(os.readlink(path)) if os.path.islink(path) else None


def test_first_switch_starts_gunicorn_on_the_release(site):
    site.release("1.0.0")
    res, out = site.switch("1.0.0")
    assert res.returncode == 0, res.stderr
    print(f"first start: {out['seconds']}s")
    assert (out["from"], out["to"], out["switched"], out["action"]) == ("", "1.0.0", True, "restart")
    assert set(out["workers"]) == {"1.0.0"}  # the workers up when /readyz answered
    assert _link(site.root / "current") == "1.0.0" and _link(site.root / "previous") is None
    assert site.get() == "1.0.0"
    assert site.calls() == ["reset-failed socialsphere.service", "restart socialsphere.service"]


def test_switch_reloads_gracefully_keeping_the_request_in_flight(site):
    site.release("1.0.0")
    site.release("1.0.1")
    assert site.switch("1.0.0")[0].returncode == 0
    pid = site.main_pid()
    answers = []
    slow = threading.Thread(target=lambda: answers.append(site.get("/slow")))
    slow.start()
    time.sleep(0.3)  # the request is in a 1.0.0 worker now
    res, out = site.switch("1.0.1")
    slow.join(30)
    assert res.returncode == 0, res.stderr
    print(f"switch 1.0.0 -> 1.0.1 (reload): {out['seconds']}s")
    assert answers == ["1.0.0"]  # the old worker finished its request
    assert (out["from"], out["to"], out["action"], set(out["workers"])) == ("1.0.0", "1.0.1", "reload", {"1.0.1"})
    assert site.main_pid() == pid and site.calls()[-1] == "reload socialsphere.service"
    assert _link(site.root / "current") == "1.0.1" and _link(site.root / "previous") == "1.0.0"
    assert site.get() == "1.0.1"
    # Again on the same release: `current` and `previous` stay, a reload applies a configuration change.
    res, out = site.switch("1.0.1")
    assert res.returncode == 0 and (out["switched"], out["action"]) == (False, "reload")
    assert _link(site.root / "previous") == "1.0.0"


def test_pending_restart_restarts_and_is_removed(site):
    site.release("1.0.0")
    assert site.switch("1.0.0")[0].returncode == 0
    pid = site.main_pid()
    (site.root / ".activation-pending").write_text("restart\n")
    (site.fake / "need-daemon-reload").write_text("yes\n")
    res, out = site.switch("1.0.0")
    assert res.returncode == 0, res.stderr
    assert out["action"] == "restart" and site.main_pid() != pid
    assert site.calls()[-3:] == ["daemon-reload", "reset-failed socialsphere.service", "restart socialsphere.service"]
    assert not (site.root / ".activation-pending").exists()
    # --restart does the same without a pending file.
    res, out = site.switch("1.0.0", "--restart")
    assert res.returncode == 0 and out["action"] == "restart"


def test_broken_release_fails_naming_the_workers_then_restore_goes_back(site):
    site.release("1.0.0")
    site.release("2.0.0", broken=True)
    assert site.switch("1.0.0")[0].returncode == 0
    (site.root / ".activation-pending").write_text("reload\n")
    t0 = time.monotonic()
    res, _ = site.switch("2.0.0", timeout=4)
    assert res.returncode == 1
    assert time.monotonic() - t0 < 15
    assert "socialsphere-switch: Gunicorn does not serve 2.0.0 after 4s" in res.stderr, res.stderr
    assert "workers on" in res.stderr
    assert _link(site.root / "current") == "2.0.0" and _link(site.root / "previous") == "1.0.0"
    assert (site.root / ".activation-pending").exists()  # not applied: the next run does it
    # The way back (tasks_from: restore): `previous` as it was (none), restarted since `current` moved back.
    res, out = site.switch("1.0.0", "--restore", "--no-previous")
    assert res.returncode == 0, res.stderr
    assert (out["from"], out["to"], out["action"], set(out["workers"])) == ("2.0.0", "1.0.0", "restart", {"1.0.0"})
    assert _link(site.root / "current") == "1.0.0" and not os.path.lexists(site.root / "previous")
    assert site.get() == "1.0.0"


def test_restore_without_a_switch_reloads_and_sets_previous(site):
    site.release("1.0.0")
    site.release("0.9.0")
    assert site.switch("1.0.0")[0].returncode == 0
    pid = site.main_pid()
    res, out = site.switch("1.0.0", "--restore", "--previous", "0.9.0")
    assert res.returncode == 0, res.stderr
    assert (out["switched"], out["action"]) == (False, "reload") and site.main_pid() == pid
    assert _link(site.root / "previous") == "0.9.0"
    res, _ = site.switch("1.0.0", "--restore", "--previous", "0.8.0")
    assert res.returncode == 1 and "--previous 0.8.0" in res.stderr and "is not installed" in res.stderr


def test_incomplete_release_switches_nothing(site):
    site.release("1.0.0")
    site.release("1.0.1", complete=False)
    assert site.switch("1.0.0")[0].returncode == 0
    before = site.calls()
    res, _ = site.switch("1.0.1")
    assert res.returncode == 1
    assert f"{site.root}/releases/1.0.1 is not a complete release (no venv/.complete): nothing switched" in res.stderr
    assert _link(site.root / "current") == "1.0.0" and site.calls() == before


@pytest.mark.parametrize("args", [
    ["--root", "/srv", "--release", "1.0.0", "--url", "ftp://x/readyz"],
    ["--root", "/srv", "--release", "../etc", "--url", "http://127.0.0.1:1/readyz"],
    ["--root", "/srv", "--release", "1.0.0"],
    ["--root", "/srv", "--release", "1", "--url", "http://x/", "--previous", "a", "--no-previous"],
    ["--root", "/srv", "--release", "1", "--url", "http://x/", "--timeout", "0"],
])
def test_usage_errors_exit_2(args):
    res = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=30,
                         check=False)
    assert res.returncode == 2, res
    assert "usage: socialsphere-switch" in res.stderr


def test_help_says_what_it_does():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    assert "--restore" in out and "--previous" in out and "/readyz" in out
