"""roles/haproxy/files/ssai-haproxy.py, the runtime-API client of the edge hosts.

Parsing is checked on answers captured from HAProxy 2.6.12 (Debian 12's package;
fixtures/haproxy/: backend be_app with app1 up and app2 down, then app1 drained and
app2 in maintenance). The commands run as the real command line against a real
HAProxy started here on 127.0.0.1 (a backend answering /readyz and one that is
down); those tests skip when no haproxy binary is installed (.ci/run installs it).
"""
import importlib.util
import json
import pathlib
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "roles" / "haproxy" / "files" / "ssai-haproxy.py"
FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "haproxy"


def _load():
    spec = importlib.util.spec_from_file_location("ssai_haproxy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while it loads
    spec.loader.exec_module(module)
    return module


ctl = _load()


def fixture(name):
    return (FIXTURES / name).read_text()


# ---------------------------------------------------------------- parsing
def test_show_stat_rows_carry_the_header_names():
    rows = ctl.parse_show_stat(fixture("show-stat-ready.txt"))
    assert [(r["pxname"], r["svname"]) for r in rows] == [
        ("fe_main", "FRONTEND"), ("be_app", "app1"), ("be_app", "app2"), ("be_app", "BACKEND")]
    app1 = rows[1]
    assert (app1["status"], app1["scur"], app1["check_status"], app1["check_code"]) == ("UP", "0", "L7OK", "200")
    assert app1["check_desc"] == "Layer7 check passed"


def test_servers_state_rows_skip_the_format_version():
    rows = ctl.parse_servers_state(fixture("servers-state-drain-maint.txt"))
    assert [(r["be_name"], r["srv_name"], r["srv_admin_state"]) for r in rows] == [
        ("be_app", "app1", "8"), ("be_app", "app2", "1")]


@pytest.mark.parametrize(("flags", "state"), [
    (0, "ready"), (0x08, "drain"), (0x10, "drain"), (0x01, "maint"), (0x04, "maint"), (0x01 | 0x08, "maint"),
    (0x20, "maint"), (0x40, "maint"),
])
def test_admin_state_from_srv_admin_state_bits(flags, state):
    assert ctl.admin_state(flags) == state


def test_backend_servers_ready_and_down():
    servers = ctl.backend_servers(fixture("show-stat-ready.txt"), fixture("servers-state-ready.txt"), "be_app")
    assert list(servers) == ["app1", "app2"]  # FRONTEND/BACKEND rows are not servers
    app1, app2 = servers["app1"], servers["app2"]
    assert (app1.admin, app1.status, app1.check, app1.sessions, app1.up) == ("ready", "UP", "L7OK/200", 0, True)
    assert app1.address == "127.0.0.1:18000"
    assert (app2.admin, app2.status, app2.check, app2.up) == ("ready", "DOWN", "L4CON", False)


def test_backend_servers_drained_and_in_maintenance():
    servers = ctl.backend_servers(fixture("show-stat-drain-maint.txt"), fixture("servers-state-drain-maint.txt"),
                                  "be_app")
    assert (servers["app1"].admin, servers["app1"].status, servers["app1"].up) == ("drain", "DRAIN", False)
    assert (servers["app2"].admin, servers["app2"].status, servers["app2"].check) == ("maint", "MAINT", "")


def test_backend_servers_of_another_backend_is_empty():
    assert ctl.backend_servers(fixture("show-stat-ready.txt"), fixture("servers-state-ready.txt"), "be_other") == {}


@pytest.mark.parametrize(("status", "up"), [("UP", True), ("UP 1/2", True), ("DOWN", False), ("DOWN 1/2", False),
                                            ("DRAIN", False), ("MAINT", False), ("no check", False)])
def test_up_is_what_the_health_check_says(status, up):
    server = ctl.Server("app1", "ready", status, "", 0, 0, 0, 1, "")
    assert server.up is up


@pytest.mark.parametrize("answer", ["", "Unknown command.\n", "1\nno header\n"])
def test_unexpected_answers_are_errors_not_empty_backends(answer):
    with pytest.raises(ctl.CtlError):
        ctl.parse_show_stat(answer)
    with pytest.raises(ctl.CtlError):
        ctl.parse_servers_state(answer)


# ---------------------------------------------------------------- command line
def run(*args, check=False):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                          check=check)


@pytest.mark.parametrize("args", [
    [],                                       # no command
    ["drain"],                                # no server
    ["frobnicate", "app1"],                   # unknown command
    ["wait-up", "app1", "--timeout", "0"],    # timeout must be > 0
    ["wait-drained", "app1", "--timeout", "soon"],
    ["status", "app1"],                       # status takes no server
    ["api"],                                  # api needs a command
])
def test_usage_errors_exit_2(args):
    res = run(*args)
    assert res.returncode == 2, res
    assert "usage: ssai-haproxy" in res.stderr


def test_help_names_every_command_and_the_exit_codes():
    out = run("--help", check=True).stdout
    for command in ("status", "drain", "ready", "maint", "wait-drained", "wait-up", "api"):
        assert command in out
    assert "4 timed out" in " ".join(out.split())


def test_missing_config_says_what_to_do(tmp_path):
    res = run("--config", str(tmp_path / "none.json"), "status")
    assert res.returncode == 2
    assert "none.json is missing" in res.stderr and "--backend" in res.stderr


def test_config_without_a_backend_is_refused(tmp_path):
    config = tmp_path / "ctl.json"
    config.write_text(json.dumps({"socket": "/run/haproxy/admin.sock"}))
    res = run("--config", str(config), "status")
    assert res.returncode == 2
    assert "must name 'backend' and 'socket'" in res.stderr


def test_no_runtime_api_exits_3_naming_the_socket(tmp_path):
    config = tmp_path / "ctl.json"
    config.write_text(json.dumps({"socket": str(tmp_path / "admin.sock"), "backend": "be_app"}))
    res = run("--config", str(config), "drain", "app1")
    assert res.returncode == 3
    assert f"no HAProxy runtime API at {tmp_path / 'admin.sock'}" in res.stderr


# ---------------------------------------------------------------- against a real HAProxy
HAPROXY = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _App(BaseHTTPRequestHandler):
    """Stands in for Gunicorn: /readyz answers 200; /slow holds the request until released."""

    release = threading.Event()

    def do_GET(self):  # noqa: N802 - http.server's handler name
        if self.path == "/slow":
            self.release.wait(30)
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def haproxy(tmp_path_factory):
    if not HAPROXY:
        pytest.skip("no haproxy binary (apt-get install haproxy)")
    workdir = tmp_path_factory.mktemp("hap")
    app = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    front, dead = _free_port(), _free_port()
    sock = workdir / "admin.sock"
    cfg = workdir / "haproxy.cfg"
    cfg.write_text(f"""
global
    stats socket {sock} mode 600 level admin
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
frontend fe_main
    bind 127.0.0.1:{front}
    default_backend be_app
backend be_app
    option httpchk GET /readyz
    http-check expect status 200
    default-server check inter 200ms fastinter 100ms downinter 200ms fall 2 rise 2
    server app1 127.0.0.1:{app.server_address[1]}
    server app2 127.0.0.1:{dead}
""")
    config = workdir / "ctl.json"
    config.write_text(json.dumps({"socket": str(sock), "backend": "be_app"}))
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sock.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no admin socket"
        yield {"config": str(config), "front": front}
    finally:
        proc.terminate()
        proc.wait(10)
        _App.release.set()
        app.shutdown()


def ctl_run(haproxy, *args):
    return run("--config", haproxy["config"], *args)


def status(haproxy):
    res = ctl_run(haproxy, "status", "--json")
    assert res.returncode == 0, res.stderr
    return {s["name"]: s for s in json.loads(res.stdout)["servers"]}


def test_real_status_and_wait_up(haproxy):
    res = ctl_run(haproxy, "wait-up", "app1", "--timeout", "10")
    assert res.returncode == 0, res.stderr
    assert "be_app/app1: UP" in res.stdout
    servers = status(haproxy)
    assert set(servers) == {"app1", "app2"}
    assert (servers["app1"]["admin"], servers["app1"]["status"], servers["app1"]["check"]) == ("ready", "UP", "L7OK/200")
    text = ctl_run(haproxy, "status").stdout
    assert "backend be_app" in text and "app2" in text


def test_real_wait_up_times_out_naming_the_last_state(haproxy):
    res = ctl_run(haproxy, "wait-up", "app2", "--timeout", "1")
    assert res.returncode == 4
    assert "timed out after 1s waiting for be_app/app2 to be UP" in res.stderr
    assert "status DOWN" in res.stderr


def test_real_unknown_server_names_the_known_ones(haproxy):
    res = ctl_run(haproxy, "drain", "app9")
    assert res.returncode == 1
    assert "backend be_app has no server 'app9' (its servers: app1, app2)" in res.stderr
    res = ctl_run(haproxy, "wait-drained", "app9", "--missing-ok")
    assert res.returncode == 0
    assert "not in this HAProxy" in res.stdout


def test_real_unknown_backend(haproxy):
    res = ctl_run(haproxy, "--backend", "be_nope", "status")
    assert res.returncode == 1
    assert "HAProxy has no backend 'be_nope'" in res.stderr


def _session_in_flight(haproxy, result):
    """A slow GET through HAProxy held by the stand-in app until _App.release is set
    (its answer goes into result["answer"]); returns the client thread once app1
    counts the session."""
    _App.release.clear()

    def slow_request():
        with socket.create_connection(("127.0.0.1", haproxy["front"]), timeout=30) as s:
            s.sendall(b"GET /slow HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            result["answer"] = s.recv(1024)

    client = threading.Thread(target=slow_request)
    client.start()
    try:
        deadline = time.monotonic() + 10
        while status(haproxy)["app1"]["sessions"] != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status(haproxy)["app1"]["sessions"] == 1
    except BaseException:
        _App.release.set()
        client.join(30)
        raise
    return client


def test_real_drain_waits_for_the_session_in_flight_then_ready(haproxy):
    assert ctl_run(haproxy, "wait-up", "app1", "--timeout", "10").returncode == 0
    result = {}
    client = _session_in_flight(haproxy, result)
    try:

        res = ctl_run(haproxy, "drain", "app1")
        assert (res.returncode, res.stdout.strip()) == (0, "be_app/app1: ready -> drain")
        assert ctl_run(haproxy, "drain", "app1").stdout.strip() == "be_app/app1: already drain"
        assert status(haproxy)["app1"]["status"] == "DRAIN"

        res = ctl_run(haproxy, "wait-drained", "app1", "--timeout", "1")
        assert res.returncode == 4
        assert "waiting for be_app/app1 to be drained" in res.stderr and "sessions 1" in res.stderr
    finally:
        _App.release.set()
        client.join(30)
    # The request that was in flight when the server was drained completed.
    assert result["answer"].split(b"\r\n")[0].endswith(b" 200 OK"), result
    res = ctl_run(haproxy, "wait-drained", "app1", "--timeout", "10")
    assert res.returncode == 0, res.stderr

    res = ctl_run(haproxy, "ready", "app1")
    assert (res.returncode, res.stdout.strip()) == (0, "be_app/app1: drain -> ready")
    assert ctl_run(haproxy, "wait-up", "app1", "--timeout", "10").returncode == 0


def test_real_maint_then_ready(haproxy):
    assert ctl_run(haproxy, "ready", "app1").returncode == 0
    res = ctl_run(haproxy, "maint", "app1")
    assert (res.returncode, res.stdout.strip()) == (0, "be_app/app1: ready -> maint")
    assert (status(haproxy)["app1"]["admin"], status(haproxy)["app1"]["status"]) == ("maint", "MAINT")
    res = ctl_run(haproxy, "wait-up", "app1", "--timeout", "0.5")
    assert res.returncode == 4 and "admin maint" in res.stderr
    assert ctl_run(haproxy, "ready", "app1").stdout.strip() == "be_app/app1: maint -> ready"
    assert ctl_run(haproxy, "wait-up", "app1", "--timeout", "10").returncode == 0


def test_real_api_passes_other_commands_through(haproxy):
    res = ctl_run(haproxy, "api", "show", "servers", "state", "be_app")
    assert res.returncode == 0, res.stderr
    assert [row["srv_name"] for row in ctl.parse_servers_state(res.stdout)] == ["app1", "app2"]
    assert ctl_run(haproxy, "api", "show", "info").stdout.startswith("Name: HAProxy")


def test_real_drain_keep_last_leaves_the_only_server_in_rotation(haproxy):
    # app1 is UP, app2 DOWN (nothing listens): app1 is the only server that serves.
    assert ctl_run(haproxy, "wait-up", "app1", "--timeout", "10").returncode == 0
    res = ctl_run(haproxy, "drain", "--keep-last", "app1")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ("be_app/app1: the only server in rotation (others: app2 ready/DOWN): "
                                  + ctl.KEPT)
    assert status(haproxy)["app1"]["admin"] == "ready"
    # A server out of rotation anyway is drained as asked, and without the flag app1 is too.
    res = ctl_run(haproxy, "drain", "--keep-last", "app2")
    assert (res.returncode, res.stdout.strip()) == (0, "be_app/app2: ready -> drain")
    res = ctl_run(haproxy, "drain", "app1")
    assert (res.returncode, res.stdout.strip()) == (0, "be_app/app1: ready -> drain")
    for name in ("app1", "app2"):
        assert ctl_run(haproxy, "ready", name).returncode == 0
    assert ctl_run(haproxy, "wait-up", "app1", "--timeout", "10").returncode == 0


def test_drain_keep_last_drains_while_another_server_serves():
    # Both in rotation: app1 drains; then app2 is the last one in rotation and stays.
    servers = {"app1": ctl.Server("app1", "ready", "UP", "L7OK/200", 0, 0, 0, 1, ""),
               "app2": ctl.Server("app2", "ready", "UP", "L7OK/200", 0, 0, 0, 1, "")}

    class Api(ctl.RuntimeApi):
        def servers(self):
            return servers

        def set_state(self, name, state):
            servers[name].admin = state

    args = ctl.build_parser().parse_args(["--backend", "be_app", "--socket", "x", "drain", "--keep-last", "app1"])
    assert ctl.cmd_set_state(Api("x", "be_app"), args) == 0
    assert servers["app1"].admin == "drain"
    # app1 drained, app2 is now the last one in rotation: kept.
    args = ctl.build_parser().parse_args(["--backend", "be_app", "--socket", "x", "drain", "--keep-last", "app2"])
    assert ctl.cmd_set_state(Api("x", "be_app"), args) == 0
    assert servers["app2"].admin == "ready"


def test_real_wait_drained_on_a_server_in_rotation_returns_at_once(haproxy):
    assert ctl_run(haproxy, "wait-up", "app1", "--timeout", "10").returncode == 0
    res = ctl_run(haproxy, "wait-drained", "app1", "--timeout", "1")
    assert res.returncode == 0, res.stderr
    assert "be_app/app1: in rotation, not drained: nothing to wait for" in res.stdout


# ---------------------------------------------------------------- drain --wait, ready --wait (one call each)
def test_real_drain_wait_returns_when_the_session_in_flight_ends(haproxy):
    assert ctl_run(haproxy, "wait-up", "app1", "--timeout", "10").returncode == 0
    result = {}
    client = _session_in_flight(haproxy, result)
    try:
        proc = subprocess.Popen([sys.executable, str(SCRIPT), "--config", haproxy["config"], "drain", "--wait",
                                 "--timeout", "20", "--interval", "0.1", "app1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Drained at once, and still waiting while the request is in flight.
        deadline = time.monotonic() + 10
        while status(haproxy)["app1"]["admin"] != "drain" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status(haproxy)["app1"]["status"] == "DRAIN"
        time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()
    finally:
        released = time.monotonic()
        _App.release.set()
        client.join(30)
    out, err = proc.communicate(timeout=30)
    waited = time.monotonic() - released
    print(f"drain --wait returned {waited:.2f}s after the last session ended")
    assert proc.returncode == 0, err
    assert out.splitlines() == ["be_app/app1: ready -> drain",
                                "be_app/app1: drained (0 sessions) (admin drain, status DRAIN, check L7OK/200, "
                                "sessions 0)"], out
    assert result["answer"].split(b"\r\n")[0].endswith(b" 200 OK"), result
    assert waited < 5


def test_real_drain_wait_times_out_while_a_session_stays(haproxy):
    assert ctl_run(haproxy, "ready", "--wait", "app1", "--timeout", "10").returncode == 0
    _App.release.clear()
    client = threading.Thread(target=lambda: socket.create_connection(("127.0.0.1", haproxy["front"]), timeout=30)
                              .sendall(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n"))
    try:
        client.start()
        deadline = time.monotonic() + 10
        while status(haproxy)["app1"]["sessions"] != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        res = ctl_run(haproxy, "drain", "--wait", "--timeout", "1", "app1")
        assert res.returncode == 4, res
        assert res.stdout.strip() == "be_app/app1: ready -> drain"
        assert "timed out after 1s waiting for be_app/app1 to be drained (0 sessions)" in res.stderr
    finally:
        _App.release.set()
        client.join(30)
    assert ctl_run(haproxy, "ready", "--wait", "app1", "--timeout", "10").returncode == 0


def test_real_ready_wait_returns_once_up(haproxy):
    assert ctl_run(haproxy, "maint", "app1").returncode == 0
    t0 = time.monotonic()
    res = ctl_run(haproxy, "ready", "--wait", "--timeout", "10", "app1")
    print(f"ready --wait out of maintenance: UP after {time.monotonic() - t0:.2f}s")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "be_app/app1: maint -> ready"
    assert lines[1].startswith("be_app/app1: UP (admin ready, status UP")
    # Out of maintenance HAProxy counts it UP at once, at the lowest health ("UP 1/2") until a check passes.
    assert status(haproxy)["app1"]["status"].split(" ")[0] == "UP"
    # Already ready and UP: nothing changes, and the wait returns at once.
    res = ctl_run(haproxy, "ready", "--wait", "app1")
    assert res.returncode == 0 and res.stdout.splitlines()[0] == "be_app/app1: already ready"


def test_real_ready_wait_times_out_on_a_server_that_stays_down(haproxy):
    res = ctl_run(haproxy, "ready", "--wait", "--timeout", "1", "app2")
    assert res.returncode == 4, res
    assert "timed out after 1s waiting for be_app/app2 to be UP" in res.stderr and "status DOWN" in res.stderr


def test_real_drain_wait_keep_last_and_missing_return_at_once(haproxy):
    assert ctl_run(haproxy, "ready", "--wait", "app1", "--timeout", "10").returncode == 0
    # app2 is DOWN: app1 is the only server in rotation, kept, and nothing to wait for.
    res = ctl_run(haproxy, "drain", "--keep-last", "--wait", "--timeout", "1", "app1")
    assert res.returncode == 0, res.stderr
    assert ctl.KEPT in res.stdout and "in rotation, not drained: nothing to wait for" in res.stdout
    res = ctl_run(haproxy, "drain", "--wait", "--missing-ok", "app9")
    assert res.returncode == 0 and "not in this HAProxy" in res.stdout
    res = ctl_run(haproxy, "ready", "--wait", "--missing-ok", "app9")
    assert res.returncode == 0 and "not in this HAProxy" in res.stdout


def test_status_watch_streams_one_line_per_read_until_the_reader_goes(haproxy):
    """status --watch: one process, one compact JSON line per read (what the rollout
    drills' rotation watch reads instead of a new process per sample); a drain shows up
    in the stream; the end of its standard input (a pipe: the reader went away) ends it
    with exit 0, and so does a closed stdout."""
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--config", haproxy["config"], "status", "--watch", "0.1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for _ in range(3):
            lines.append(json.loads(proc.stdout.readline()))
        assert [s["name"] for s in lines[0]["servers"]] == list(status(haproxy))
        assert lines[0]["time"] < lines[1]["time"] < lines[2]["time"]
        assert ctl_run(haproxy, "drain", "app1").returncode == 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = {s["name"]: s for s in json.loads(proc.stdout.readline())["servers"]}["app1"]
            if row["admin"] == "drain":
                break
        assert row["admin"] == "drain"
    finally:
        assert ctl_run(haproxy, "ready", "app1").returncode == 0
        proc.stdin.close()
        assert proc.wait(10) == 0, proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--config", haproxy["config"], "status", "--watch", "0.1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert json.loads(proc.stdout.readline())["servers"]
    proc.stdout.close()
    assert proc.wait(10) == 0
    assert proc.stderr.read() == ""
    proc.stderr.close()
    proc.stdin.close()
