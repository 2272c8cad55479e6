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


def test_mock_dns_answers_with_vip(host):
    script = (
        "import socket,struct;"
        "q=b'\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00'"
        "+b''.join(bytes([len(p)])+p.encode() for p in 'socialsphere.lab'.split('.'))"
        "+b'\\x00\\x00\\x01\\x00\\x01';"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(3);"
        "s.sendto(q,('127.0.0.1',8053));r=s.recv(512);"
        "print(socket.inet_ntoa(r[-4:]))"
    )
    assert host.check_output(f'python3 -c "{script}"').strip() == "192.0.2.10"


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
