"""Edge: HTTPS through the VIP reaches the app, the chain is Pebble's, HTTP
redirects to HTTPS (except the ACME path), HSTS and security headers, request id."""
import http.client
import json

from labkit.edge import READ_PATH, domain, served_certificate, vip


def test_https_through_vip_reaches_app(lab_inventory, edge):
    status, body = edge.get("/readyz")
    assert status == 200, body[:200]
    status, _ = edge.get(READ_PATH)
    assert status == 200


def test_certificate_is_pebbles_for_the_domain(lab_inventory, edge):
    cert = served_certificate(edge)
    names = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
    assert domain(lab_inventory) in names
    issuer = dict(x[0] for x in cert["issuer"])
    assert "Pebble" in issuer.get("commonName", ""), issuer


def test_http_redirects_to_https(lab_inventory):
    conn = http.client.HTTPConnection(vip(lab_inventory), 80, timeout=5)
    conn.request("GET", "/login?next=/app", headers={"Host": domain(lab_inventory)})
    resp = conn.getresponse()
    assert resp.status == 301
    assert resp.getheader("Location") == f"https://{domain(lab_inventory)}/login?next=/app"
    conn.close()


def test_acme_path_is_not_redirected(lab_inventory):
    conn = http.client.HTTPConnection(vip(lab_inventory), 80, timeout=5)
    conn.request("GET", "/.well-known/acme-challenge/does-not-exist", headers={"Host": domain(lab_inventory)})
    resp = conn.getresponse()
    assert resp.status == 404
    conn.close()


def test_hsts_security_headers_and_request_id(lab_inventory, edge):
    resp = edge.request("/readyz")
    assert resp.headers.get_all("Strict-Transport-Security") == ["max-age=63072000"]
    assert "default-src 'self'" in resp.getheader("Content-Security-Policy", "")
    assert resp.getheader("X-Content-Type-Options") == "nosniff"
    assert len(resp.getheader("X-Request-ID", "")) >= 8


def test_hsts_is_sent_exactly_once(lab_inventory, edge):
    """Nginx owns HSTS and the other security headers it sets: one of each on
    proxied app responses (any status) and on what Nginx serves itself, whatever
    the app release sends."""
    for path in ("/readyz", READ_PATH, "/api/v1/does-not-exist", "/static/not-hashed.css"):
        resp = edge.request(path)
        # Nginx's own Server header without a version; the app's (gunicorn) never passes.
        assert resp.headers.get_all("Server") == ["nginx"], (path, resp.headers.get_all("Server"))
        values = resp.headers.get_all("Strict-Transport-Security") or []
        assert values == ["max-age=63072000"], (path, resp.status, values)
        for name in ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"):
            assert len(resp.headers.get_all(name) or []) == 1, (path, name, resp.headers.get_all(name))


def _gzip(edge, path, method="GET", body=None):
    """(status, Content-Encoding, body length) of a request that accepts gzip."""
    headers = {"Accept-Encoding": "gzip"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    resp = edge.request(path, method, body, headers)
    return resp.status, resp.getheader("Content-Encoding"), len(resp.body)


def test_api_responses_are_never_compressed_pages_and_assets_are(lab_inventory, edge):
    """BREACH: an API response (tokens, personal data next to data the request
    controls) is never compressed, whatever its size and type; the HTML pages and
    the static assets are."""
    # A large JSON document (about 50 KiB), compressed before the fix.
    status, encoding, size = _gzip(edge, "/api/v1/openapi.json")
    assert status == 200 and size > 4096, (status, size)
    assert encoding is None, f"/api/v1/openapi.json was sent {encoding}"
    login = b'{"email": "breach-probe@example.com", "password": "' + b"x" * 400 + b'"}'
    status, encoding, _ = _gzip(edge, "/api/v1/auth/login", "POST", login)
    assert 400 <= status < 500 and encoding is None, (status, encoding)
    status, encoding, _ = _gzip(edge, "/login")
    assert status == 200 and encoding == "gzip", (status, encoding)
    status, manifest = edge.get("/static/manifest.json")
    assert status == 200
    asset = json.loads(manifest)["assets"]["css/style.css"]
    status, encoding, _ = _gzip(edge, f"/static/{asset}")
    assert status == 200 and encoding == "gzip", (asset, status, encoding)
