"""Nginx role: TLS, redirect, HSTS, headers, static, JSON log, ACME path, proxy."""
import json

CURL = "curl -sk --resolve socialsphere.test:443:127.0.0.1 --resolve socialsphere.test:80:127.0.0.1"


def test_config_valid(host):
    host.run_test("nginx -t")


def test_listens_everywhere(host):
    assert host.socket("tcp://0.0.0.0:80").is_listening
    assert host.socket("tcp://0.0.0.0:443").is_listening


def test_redirect_to_https(host):
    out = host.check_output(f"{CURL} -o /dev/null -w '%{{http_code}} %{{redirect_url}}' http://socialsphere.test/x?y=1")
    assert out == "301 https://socialsphere.test/x?y=1"


def test_acme_challenge_not_redirected(host):
    host.run_test("echo token123 > /var/www/acme/.well-known/acme-challenge/t1")
    out = host.check_output(f"{CURL} http://socialsphere.test/.well-known/acme-challenge/t1")
    assert out.strip() == "token123"


def test_https_proxy_headers(host):
    out = host.check_output(f"{CURL} -D - https://socialsphere.test/")
    low = out.lower()
    assert "from-upstream" in out
    assert "strict-transport-security: max-age=63072000" in low
    assert "content-security-policy: default-src 'self'" in low
    assert "x-content-type-options: nosniff" in low


def test_tls_versions(host):
    assert host.run(f"{CURL} --tls-max 1.1 -o /dev/null https://socialsphere.test/").rc != 0
    host.run_test(f"{CURL} --tlsv1.2 --tls-max 1.2 -o /dev/null https://socialsphere.test/")
    host.run_test(f"{CURL} --tlsv1.3 -o /dev/null https://socialsphere.test/")


def test_static_hashed_immutable_gzip(host):
    out = host.check_output(f"{CURL} -D - -o /dev/null -H 'Accept-Encoding: gzip' https://socialsphere.test/static/js/app.0123abcd.js")
    low = out.lower()
    assert " 200" in low.splitlines()[0]
    assert "cache-control: public, max-age=31536000, immutable" in low
    assert "content-type: text/javascript" in low
    assert "strict-transport-security" in low
    code = host.check_output(f"{CURL} -o /dev/null -w '%{{http_code}}' https://socialsphere.test/static/js/app.js")
    assert code == "404"


def test_json_access_log(host):
    host.run_test(f"{CURL} -o /dev/null -H 'X-Request-ID: test-req-0001' https://socialsphere.test/")
    lines = host.file("/var/log/nginx/socialsphere.access.log").content_string.strip().splitlines()
    rec = json.loads(lines[-1])
    for key in ("time", "remote_addr", "request_method", "request_uri", "status",
                "body_bytes_sent", "request_time", "upstream_response_time",
                "request_id", "http_user_agent"):
        assert key in rec
    assert rec["request_id"] == "test-req-0001"


def test_maintenance_page_follows_the_flag_file(host):
    """The role leaves the flag alone (converge and idempotence ran with the page off);
    the file switches the page without a reload; /readyz still reaches the upstream."""
    flag = "/var/lib/nginx-maintenance/on"
    assert host.file("/var/lib/nginx-maintenance").is_directory
    assert not host.file(flag).exists
    host.run_test(f"touch {flag}")
    try:
        out = host.check_output(f"{CURL} -D - https://socialsphere.test/api/v1/plans")
        assert out.startswith("HTTP/2 503") or out.startswith("HTTP/1.1 503"), out
        assert "retry-after: 120" in out.lower()
        assert json.loads(out.split("\r\n\r\n", 1)[1])["error"] == "maintenance"
        assert "Down for maintenance" in host.check_output(f"{CURL} https://socialsphere.test/")
        code = host.check_output(f"{CURL} -o /dev/null -w '%{{http_code}}' https://socialsphere.test/readyz")
        assert code != "503"  # the stand-in upstream answers (404: it has no such file)
    finally:
        host.run_test(f"rm -f {flag}")
    assert "from-upstream" in host.check_output(f"{CURL} https://socialsphere.test/")
