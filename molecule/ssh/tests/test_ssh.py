"""Testinfra checks for the ssh role."""

SSH = ("ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
       "-o ConnectTimeout=10 -i /root/operator_key")


def sshd_t(host):
    out = host.run("sshd -T -C user=deploy,host=localhost,addr=127.0.0.1").stdout.lower()
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def test_config_valid(host):
    assert host.run("sshd -t").rc == 0
    f = host.file("/etc/ssh/sshd_config")
    assert f.mode == 0o600 and f.user == "root"


def test_effective_settings(host):
    cfg = sshd_t(host)
    assert cfg["permitrootlogin"] == "no"
    assert cfg["passwordauthentication"] == "no"
    assert cfg["kbdinteractiveauthentication"] == "no"
    assert cfg["allowgroups"] == "deploy"
    assert cfg["maxauthtries"] == "3"
    assert cfg["logingracetime"] == "30"
    assert cfg["clientaliveinterval"] == "300"
    assert cfg["banner"] == "/etc/ssh/sshd-banner"
    assert "cbc" not in cfg["ciphers"] and "sha1" not in cfg["macs"]


def test_operator_not_locked_out(host):
    """A NEW connection as the operator works after converge and idempotence."""
    r = host.run(SSH + " deploy@127.0.0.1 id -un")
    assert r.rc == 0, r.stderr
    assert r.stdout.strip() == "deploy"


def test_root_refused(host):
    host.run("install -d -m 0700 /root/.ssh && cp /home/deploy/.ssh/authorized_keys /root/.ssh/authorized_keys")
    try:
        r = host.run(SSH + " root@127.0.0.1 true")
        assert r.rc != 0
    finally:
        host.run("rm -f /root/.ssh/authorized_keys")


def test_password_auth_not_offered(host):
    r = host.run("ssh -v -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                 "-o PubkeyAuthentication=no nobody@127.0.0.1 true")
    assert r.rc != 0
    assert "password" not in r.stderr.split("Authentications that can continue:")[-1].splitlines()[0]


def test_socket_activation_kept(host):
    if host.system_info.distribution == "ubuntu":
        r = host.run("systemctl is-enabled ssh.socket")
        assert r.stdout.strip() == "enabled"
        assert host.run("systemctl is-active ssh.socket").stdout.strip() == "active"
    else:
        assert host.service("ssh").is_running
