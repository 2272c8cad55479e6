"""Lab services: Pebble over HTTPS trusted via the lab CA, mock DNS, SMTP sink."""
import json


def test_services_running(host):
    for svc in ("pebble", "pebble-challtestsrv", "smtp-sink"):
        s = host.service(svc)
        assert s.is_running, svc
        assert s.is_enabled, svc


def test_pebble_directory_verified_by_lab_ca(host):
    out = host.check_output(
        "curl -fsS --cacert /etc/pebble/ca.pem https://127.0.0.1:14000/dir")
    directory = json.loads(out)
    assert "newAccount" in directory and "newOrder" in directory


def test_pebble_va_nosleep(host):
    env = host.check_output("systemctl show -p Environment pebble")
    assert "PEBBLE_VA_NOSLEEP=1" in env


DNS_QUERY = r"""
import socket, struct
name = "socialsphere.lab"
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(q, ("127.0.0.1", 8053))
r = s.recv(4096)
def skip_name(i):
    while True:
        n = r[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        i += n + 1
_id, flags, qd, an, _ns, _ar = struct.unpack(">HHHHHH", r[:12])
i = 12
for _ in range(qd):
    i = skip_name(i) + 4
answers = []
for _ in range(an):
    i = skip_name(i)
    rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", r[i:i + 10])
    i += 10
    if rtype == 1:
        answers.append(socket.inet_ntoa(r[i:i + rdlen]))
    i += rdlen
print(flags & 0xF, ",".join(answers))
"""


def test_mock_dns_answers_with_vip(host):
    """An A query for the lab domain: no error (rcode 0), and the VIP is the only answer."""
    out = host.check_output(f"python3 - <<'EOF'\n{DNS_QUERY}\nEOF")
    assert out.split() == ["0", "192.0.2.10"], out


def test_smtp_sink_stores_message(host):
    script = (
        "import smtplib;"
        "s=smtplib.SMTP('127.0.0.1',1025,timeout=5);"
        "s.sendmail('a@socialsphere.lab',['b@socialsphere.lab'],"
        "'Subject: molecule-probe\\r\\n\\r\\nhello');s.quit()"
    )
    host.check_output(f'python3 -c "{script}"')
    files = host.check_output("ls /var/lib/smtp-sink/Maildir/new").split()
    assert files
    assert any("molecule-probe" in host.file(f"/var/lib/smtp-sink/Maildir/new/{f}").content_string
               for f in files)
