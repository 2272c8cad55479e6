"""HAProxy role: config valid, health checks, runtime API, state kept over reload, 429s."""
import time

SOCK = "/run/haproxy/admin.sock"


def api(host, cmd):
    return host.check_output(f'echo "{cmd}" | socat stdio unix-connect:{SOCK}')


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
    api(host, "set server be_app/app1 state drain")
    host.run_test("systemctl reload haproxy")
    time.sleep(3)
    state = api(host, "show servers state be_app")
    # srv_admin_state bit 0x08 = drain set through the runtime API (DRAIN)
    line = [ln for ln in state.splitlines() if " app1 " in ln][0].split()
    assert int(line[6]) & 0x08, state
    api(host, "set server be_app/app1 state ready")


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
