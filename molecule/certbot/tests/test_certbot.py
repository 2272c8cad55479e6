"""Certbot role: a real certificate from Pebble via HTTP-01 webroot, served by Nginx."""

CURL = "curl -s --resolve socialsphere.test:443:127.0.0.1"


def pebble_roots(host):
    """Pebble's issuing root + intermediate (new on every Pebble start)."""
    root = host.check_output("curl -fsS --cacert /etc/pebble/ca.pem https://127.0.0.1:15000/roots/0")
    inter = host.check_output("curl -fsS --cacert /etc/pebble/ca.pem https://127.0.0.1:15000/intermediates/0")
    host.run_test(f"printf '%s\\n%s\\n' '{root}' '{inter}' > /tmp/pebble-chain.pem")
    return "/tmp/pebble-chain.pem"


def serial(host):
    return host.check_output(
        "echo | openssl s_client -connect 127.0.0.1:443 -servername socialsphere.test 2>/dev/null"
        " | openssl x509 -noout -serial")


def test_certificate_issued_and_linked(host):
    assert host.file("/etc/letsencrypt/renewal/socialsphere.test.conf").exists
    link = host.file("/etc/ssl/socialsphere/fullchain.pem")
    assert link.is_symlink
    assert link.linked_to.startswith("/etc/letsencrypt/archive/socialsphere.test/")


def test_nginx_serves_pebble_chain(host):
    bundle = pebble_roots(host)
    host.run_test(f"{CURL} --cacert {bundle} -o /dev/null https://socialsphere.test/static/x.0123abcd.js -w '%{{http_code}}'")


def test_renewal_config(host):
    conf = host.file("/etc/letsencrypt/renewal/socialsphere.test.conf").content_string
    assert "webroot" in conf and "https://127.0.0.1:14000/dir" in conf
    assert host.service("certbot.timer").is_enabled
    env = host.check_output("systemctl show -p Environment certbot.service")
    assert "REQUESTS_CA_BUNDLE=/etc/letsencrypt/acme-ca-bundle.pem" in env
    assert host.file("/etc/letsencrypt/renewal-hooks/deploy/50-reload-nginx").mode == 0o755


def test_forced_renewal_reloads_nginx_with_new_serial(host):
    before = serial(host)
    host.run_test("REQUESTS_CA_BUNDLE=/etc/letsencrypt/acme-ca-bundle.pem certbot renew --force-renewal --no-random-sleep-on-renew")
    after = serial(host)
    assert before != after
