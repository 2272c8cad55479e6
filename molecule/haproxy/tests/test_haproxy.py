"""HAProxy role: config valid, health checks, runtime API and its client
(ssai-haproxy), state kept over reload, 429s."""
import json
import time

SOCK = "/run/haproxy/admin.sock"
CTL = "/usr/local/sbin/ssai-haproxy"


def api(host, cmd):
    return host.check_output(f'echo "{cmd}" | socat stdio unix-connect:{SOCK}')


def ctl_servers(host):
    return {s["name"]: s for s in json.loads(host.check_output(f"{CTL} status --json"))["servers"]}


def test_config_valid(host):
    host.run_test("haproxy -c -f /etc/haproxy/haproxy.cfg")
    cfg = host.file("/etc/haproxy/haproxy.cfg")
    assert cfg.mode == 0o640 and cfg.group == "haproxy"


def test_listens_loopback_only(host):
    assert host.socket("tcp://127.0.0.1:8080").is_listening
    assert not host.socket("tcp://0.0.0.0:8080").is_listening


def test_admin_socket(host):
    sock = host.file(SOCK)
    assert sock.is_socket and sock.mode == 0o660 and sock.group == "haproxy"


def test_ctl_installed_with_the_roles_backend_and_socket(host):
    ctl = host.file(CTL)
    assert ctl.user == "root" and ctl.mode == 0o755
    config = host.file("/etc/haproxy/ssai-haproxy.json")
    assert config.user == "root" and config.mode == 0o644
    assert json.loads(config.content_string) == {"backend": "be_app", "socket": SOCK}
    # A file of the role, not a string in YAML: it must at least parse on the host's Python.
    host.run_test(f"python3 -m py_compile {CTL}")


def test_ctl_waits_for_up_and_reports_status(host):
    out = host.check_output(f"{CTL} wait-up app1 --timeout 30")
    assert out.startswith("be_app/app1: UP"), out
    app1 = ctl_servers(host)["app1"]
    assert (app1["admin"], app1["status"], app1["check"]) == ("ready", "UP", "L7OK/200"), app1
    assert "app1" in host.check_output(f"{CTL} status")


def test_ctl_drain_wait_drained_ready(host):
    host.check_output(f"{CTL} wait-up app1 --timeout 30")
    assert host.check_output(f"{CTL} drain app1") == "be_app/app1: ready -> drain"
    assert host.check_output(f"{CTL} drain app1") == "be_app/app1: already drain"
    assert ctl_servers(host)["app1"]["status"] == "DRAIN"
    host.run_test(f"{CTL} wait-drained app1 --timeout 10")
    # The runtime API itself agrees: srv_admin_state bit 0x08 (drain).
    line = [ln for ln in api(host, "show servers state be_app").splitlines() if " app1 " in ln][0].split()
    assert int(line[6]) & 0x08
    assert host.check_output(f"{CTL} ready app1") == "be_app/app1: drain -> ready"
    host.run_test(f"{CTL} wait-up app1 --timeout 30")


def test_ctl_unknown_server_and_timeout(host):
    res = host.run(f"{CTL} drain app9")
    assert res.rc == 1 and "no server 'app9' (its servers: app1)" in res.stderr, res.stderr
    assert host.run(f"{CTL} drain app9 --missing-ok").rc == 0
    host.run_test(f"{CTL} maint app1")
    res = host.run(f"{CTL} wait-up app1 --timeout 1")
    assert res.rc == 4 and "waiting for be_app/app1 to be UP" in res.stderr and "admin maint" in res.stderr
    host.run_test(f"{CTL} ready app1")
    host.run_test(f"{CTL} wait-up app1 --timeout 30")


def test_proxies_and_request_id(host):
    out = host.check_output("curl -fsS -D - -o /dev/null http://127.0.0.1:8080/index.html")
    assert "x-request-id:" in out.lower()
    out = host.check_output(
        "curl -fsS -D - -o /dev/null -H 'X-Request-ID: abcdef123456' http://127.0.0.1:8080/")
    assert "abcdef123456" in out


def test_server_up_by_health_check(host):
    for _ in range(20):
        if "UP" in api(host, "show stat").split("be_app,app1,")[1].split("\n")[0]:
            break
        time.sleep(1)
    assert ",UP," in api(host, "show stat")


def test_drain_survives_reload(host):
    host.run_test(f"{CTL} drain app1")
    host.run_test("systemctl reload haproxy")
    time.sleep(3)
    state = api(host, "show servers state be_app")
    # srv_admin_state bit 0x08 = drain set through the runtime API (DRAIN)
    line = [ln for ln in state.splitlines() if " app1 " in ln][0].split()
    assert int(line[6]) & 0x08, state
    host.run_test(f"{CTL} ready app1")
    host.run_test(f"{CTL} wait-up app1 --timeout 30")


def test_prometheus_and_stats_auth(host):
    out = host.check_output("curl -fsS http://127.0.0.1:8405/metrics")
    assert "haproxy_process_" in out
    assert host.run("curl -fsS -o /dev/null http://127.0.0.1:8405/stats").rc != 0
    host.run_test("curl -fsS -o /dev/null -u admin:molecule-stats-pass http://127.0.0.1:8405/stats")


def test_login_rate_limit_429(host):
    codes = host.check_output(
        "for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{http_code} ' "
        "-X POST -H 'X-Real-IP: 198.51.100.7' http://127.0.0.1:8080/api/v1/auth/login; done")
    assert "429" in codes.split(), codes
    # another client is still served
    other = host.check_output(
        "curl -s -o /dev/null -w '%{http_code}' -H 'X-Real-IP: 198.51.100.8' "
        "http://127.0.0.1:8080/index.html")
    assert other == "200"
