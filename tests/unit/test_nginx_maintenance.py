"""The edge's maintenance page (roles/nginx) for real on this machine:

- nginx.conf.j2 and the page's templates rendered by Ansible with the role's defaults
  (paths moved into a temporary directory), checked with `nginx -t`, then served by a
  real Nginx on 127.0.0.1 in front of a stand-in HAProxy: with the flag file absent every
  request reaches the upstream; created, the same Nginx (no reload) answers 503 with
  Retry-After, the HTML page, or the JSON error under /api/, while /readyz still reaches
  the upstream, a 503 of the upstream itself passes unchanged, and port 80 still serves
  the ACME HTTP-01 challenge; removed, traffic flows again;
- playbooks/maintenance.yml (fab maintenance on|off) with the role's tasks_from:
  maintenance: a bad value is refused before any change, on and off are idempotent,
  and a host whose nginx.conf does not test the flag refuses to turn it on.

Fails when no nginx binary is installed (.ci/run installs it)."""
import http.client
import http.server
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest
import yaml

from ansible_run import REPO, local_env, run_playbook

FIXTURE = REPO / "tests" / "unit" / "fixtures" / "inventory_ok"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(tmp_path, **extra):
    """Render the role's nginx.conf and maintenance pages through Ansible into tmp_path."""
    role = tmp_path / "roles" / "nginx"
    for sub in ("defaults", "vars", "templates"):
        shutil.copytree(REPO / "roles" / "nginx" / sub, role / sub)
    (role / "tasks").mkdir()
    out = tmp_path / "www"
    (role / "tasks" / "main.yml").write_text(yaml.safe_dump([
        {"name": "Render nginx.conf", "ansible.builtin.template": {
            "src": "nginx.conf.j2", "dest": str(tmp_path / "nginx.conf"), "mode": "0644"}},
        {"name": "Create the page directory", "ansible.builtin.file": {
            "path": "{{ nginx_maintenance_root }}", "state": "directory", "mode": "0755"}},
        {"name": "Render the pages", "ansible.builtin.template": {
            "src": "maintenance.{{ item }}.j2", "dest": "{{ nginx_maintenance_root }}/maintenance.{{ item }}",
            "mode": "0644"}, "loop": ["html", "json"]},
    ]))
    playbook = tmp_path / "render.yml"
    playbook.write_text(yaml.safe_dump([{"name": "Render", "hosts": "localhost", "gather_facts": False,
                                         "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                                         "roles": ["nginx"]}]))
    variables = {
        "nginx_server_name": "socialsphere.test", "nginx_listen_ipv6": False,
        "nginx_tls_dir": str(tmp_path / "tls"), "nginx_static_root": str(out / "static"),
        "nginx_acme_webroot": str(out / "acme"), "nginx_access_log": str(tmp_path / "access.log"),
        "nginx_maintenance_flag": str(tmp_path / "flag" / "on"), "nginx_maintenance_root": str(out / "maintenance"),
        "nginx_maintenance_message": "Back at 10:00 (\"soon\") & <b>not</b> later",
        **extra,
    }
    rc, log = run_playbook("localhost,", str(playbook), "-c", "local", "-e", json.dumps(variables), timeout=120,
                           env=local_env(ANSIBLE_ROLES_PATH=str(tmp_path / "roles")))
    assert rc == 0, log
    return variables, (tmp_path / "nginx.conf").read_text()


def runnable(tmp_path, text, http_port, https_port):
    """The rendered configuration on this machine's ports, pid and logs, not the edge's."""
    text = re.sub(r"listen 80 default_server;", f"listen 127.0.0.1:{http_port} default_server;", text)
    text = re.sub(r"listen 443 ssl http2 default_server;", f"listen 127.0.0.1:{https_port} ssl default_server;", text)
    text = text.replace("pid /run/nginx.pid;", f"pid {tmp_path}/nginx.pid;")
    # pytest's temporary directories are private to their owner: workers run as it (the
    # edge's www-data reads /var/lib/nginx-maintenance and the pages, 0755/0644).
    text = text.replace("user www-data;", "user root;" if os.geteuid() == 0 else "")
    text = text.replace("error_log /var/log/nginx/error.log;", f"error_log {tmp_path}/error.log;")
    text = re.sub(r"^.*syslog:server=unix:/dev/log.*$", "", text, flags=re.M)
    assert "syslog" not in text and "/run/nginx.pid" not in text
    path = tmp_path / "run.conf"
    path.write_text(text)
    return path


class Upstream(http.server.ThreadingHTTPServer):
    """A stand-in HAProxy: 200 `upstream <path>`, or 503 for /unavailable."""

    def __init__(self, port):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.do_GET()

            do_DELETE = do_POST  # noqa: N815

            def do_GET(self):  # noqa: N802
                status = 503 if self.path == "/unavailable" else 200
                body = f"upstream {self.path}".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()


def nginx_binary():
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not nginx:
        pytest.fail("nginx is not installed: `apt-get install nginx` (.ci/run installs it)")
    return nginx


@pytest.fixture
def edge(tmp_path):
    """A real Nginx with the rendered configuration, in front of a stand-in HAProxy."""
    nginx = nginx_binary()
    upstream_port, http_port, https_port = free_port(), free_port(), free_port()
    variables, text = render(tmp_path, nginx_upstream_port=upstream_port)
    tls = tmp_path / "tls"
    tls.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(tls / "privkey.pem"), "-out", str(tls / "fullchain.pem"), "-days", "1",
                    "-subj", "/CN=socialsphere.test"], check=True, capture_output=True)
    (tmp_path / "flag").mkdir()
    acme = tmp_path / "www" / "acme" / ".well-known" / "acme-challenge"
    acme.mkdir(parents=True)
    (acme / "token123").write_text("token123.thumbprint")
    conf = runnable(tmp_path, text, http_port, https_port)
    check = subprocess.run([nginx, "-t", "-q", "-c", str(conf)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    server = Upstream(upstream_port)
    proc = subprocess.Popen([nginx, "-c", str(conf), "-g", "daemon off;"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", https_port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "nginx did not listen"
            time.sleep(0.1)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    def get(path, port=https_port, secure=True, method="GET", body=None):
        conn = (http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5) if secure
                else http.client.HTTPConnection("127.0.0.1", port, timeout=5))
        conn.request(method, path, body=body, headers={"Host": "socialsphere.test"})
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body

    yield {"get": get, "flag": tmp_path / "flag" / "on", "http_port": http_port, "variables": variables,
           "conf": conf, "pid": proc.pid}
    proc.terminate()
    proc.wait(timeout=10)
    server.shutdown()


def test_the_flag_file_switches_the_page_without_a_reload(edge):
    get, flag = edge["get"], edge["flag"]
    assert get("/dashboard")[0] == 200 and get("/dashboard")[2] == b"upstream /dashboard"
    assert get("/api/v1/plans")[2] == b"upstream /api/v1/plans"

    flag.write_text("on\n")
    status, headers, body = get("/dashboard")
    assert status == 503
    assert headers["retry-after"] == "120"
    assert headers["content-type"].startswith("text/html")
    assert headers["cache-control"] == "no-store"
    assert headers["strict-transport-security"].startswith("max-age=")
    assert b"<h1>Down for maintenance</h1>" in body
    assert b"Back at 10:00 (&#34;soon&#34;) &amp; &lt;b&gt;not&lt;/b&gt; later" in body
    status, headers, body = get("/api/v1/posts?page=2")
    assert status == 503
    assert headers["content-type"].startswith("application/json")
    assert headers["retry-after"] == "120"
    assert json.loads(body) == {"error": "maintenance", "message": "Back at 10:00 (\"soon\") & <b>not</b> later"}
    assert get("/static/manifest.json")[0] == 503
    # A write gets the same answer (not 405 from serving a file to a POST).
    status, headers, body = get("/api/v1/posts", method="POST", body=b'{"text": "x"}')
    assert (status, json.loads(body)["error"]) == (503, "maintenance")
    assert get("/login", method="POST", body=b"x")[0] == 503
    assert get("/api/v1/posts/1", method="DELETE")[0] == 503
    # The page's own location is internal: not reachable from outside.
    assert get("/.socialsphere-maintenance")[0] == 404
    # The monitoring probes still see the app behind the edge.
    assert get("/readyz")[:3:2] == (200, b"upstream /readyz")
    assert get("/healthz")[:3:2] == (200, b"upstream /healthz")
    # Port 80: the ACME HTTP-01 challenge is served, everything else still redirects.
    status, _, body = get("/.well-known/acme-challenge/token123", port=edge["http_port"], secure=False)
    assert (status, body) == (200, b"token123.thumbprint")
    assert get("/dashboard", port=edge["http_port"], secure=False)[0] == 301

    flag.unlink()
    assert get("/dashboard")[:3:2] == (200, b"upstream /dashboard")
    assert get("/api/v1/plans")[0] == 200
    assert get("/api/v1/posts", method="POST", body=b"{}")[:3:2] == (200, b"upstream /api/v1/posts")


def test_outside_maintenance_an_upstream_503_is_not_the_page(edge):
    status, headers, body = edge["get"]("/unavailable")
    assert (status, body) == (503, b"upstream /unavailable")
    assert "retry-after" not in headers


# ---------------------------------------------------------------- playbooks/maintenance.yml
def maintenance(tmp_path, *extra, conf=None):
    """playbooks/maintenance.yml on the fixture inventory's two edge hosts (both this machine)."""
    if conf is None:
        conf = tmp_path / "nginx.conf"
        conf.write_text(f"            if (-f {tmp_path / 'flag' / 'on'}) {{\n")
    variables = {"ansible_become": False, "nginx_maintenance_flag": str(tmp_path / "flag" / "on"),
                 "__nginx_conf": str(conf)}
    return run_playbook(FIXTURE / "hosts.yml", "maintenance.yml", "-e", json.dumps(variables), *extra, timeout=300,
                        env=local_env())


def changed(out):
    recap = out.split("PLAY RECAP")[-1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+:.*?changed=(\d+)", recap, re.M)}


def edges_changed(out):
    """Changed tasks of the two fixture edge hosts together."""
    return changed(out)["edge1"] + changed(out)["edge2"]


@pytest.mark.parametrize("value", ["", "yes", "1", "maintenance"])
def test_a_bad_value_is_refused_before_any_change(tmp_path, value):
    rc, out = maintenance(tmp_path, "-e", f"maintenance={value}")
    assert rc != 0
    flat = " ".join(out.split())
    assert f"maintenance={value}: pass -e maintenance=on or -e maintenance=off (fab maintenance on|off). " \
           "Nothing was changed." in flat, out[-2000:]
    assert not (tmp_path / "flag").exists()


def test_the_value_is_required(tmp_path):
    rc, out = maintenance(tmp_path)
    assert rc != 0
    assert "maintenance=(not set): pass -e maintenance=on" in " ".join(out.split()), out[-2000:]


def test_on_and_off_are_idempotent(tmp_path):
    flag = tmp_path / "flag" / "on"
    rc, out = maintenance(tmp_path, "-e", "maintenance=on")
    assert rc == 0, out[-3000:]
    assert flag.is_file()
    # Both fixture edge hosts are this machine with one flag file: which of them creates
    # (or removes) it is a race between Ansible's forks, so count the two together.
    assert edges_changed(out) >= 1
    rc, out = maintenance(tmp_path, "-e", "maintenance=on")
    assert rc == 0, out[-3000:]
    assert changed(out) == {"edge1": 0, "edge2": 0, "localhost": 0}
    assert flag.is_file()
    # -e @file reads YAML: off is the boolean false there.
    (tmp_path / "off.yml").write_text("maintenance: off\n")
    rc, out = maintenance(tmp_path, "-e", f"@{tmp_path / 'off.yml'}")
    assert rc == 0, out[-3000:]
    assert not flag.exists()
    assert edges_changed(out) >= 1
    rc, out = maintenance(tmp_path, "-e", "maintenance=off")
    assert rc == 0, out[-3000:]
    assert changed(out) == {"edge1": 0, "edge2": 0, "localhost": 0}


def test_a_host_whose_nginx_ignores_the_flag_refuses_to_turn_it_on(tmp_path):
    conf = tmp_path / "old-nginx.conf"
    conf.write_text("http { }\n")
    rc, out = maintenance(tmp_path, "-e", "maintenance=on", conf=conf)
    assert rc != 0
    assert f"edge1: {conf} does not test {tmp_path / 'flag' / 'on'}, so the maintenance page would not be served: " \
           "converge the edge first (ansible-playbook playbooks/edge.yml). Nothing was changed." in " ".join(out.split())
    assert not (tmp_path / "flag" / "on").exists()
    # Turning it off needs no such check.
    rc, out = maintenance(tmp_path, "-e", "maintenance=off", conf=conf)
    assert rc == 0, out[-3000:]
