"""PostgreSQL primary: TLS from the internal CA, roles and privileges, pg_hba."""
import importlib.util
import pathlib

import pytest

# The one map of distribution release -> PostgreSQL version (the role's filter).
_spec = importlib.util.spec_from_file_location(
    "ssai_facts", pathlib.Path(__file__).resolve().parents[3] / "plugins" / "filter" / "ssai_facts.py")
ssai_facts = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ssai_facts)
IP = "172.30.91.31"


@pytest.fixture(scope="module")
def version(db1):
    """The PostgreSQL major version the role installs on this distribution."""
    return ssai_facts.postgresql_version_of_os_release(db1.file("/etc/os-release").content_string)


def psql(host, sql, db="postgres"):
    return host.check_output(f"runuser -u postgres -- psql -XAtq -d {db} -c \"{sql}\"")


def test_ca_installed(db1):
    assert db1.file("/usr/local/share/ca-certificates/socialsphere-internal-ca.crt").exists
    assert db1.file("/etc/ssl/certs/socialsphere-internal-ca.pem").exists


def test_listens_on_address_and_localhost_only(db1):
    assert db1.socket(f"tcp://{IP}:5432").is_listening
    assert db1.socket("tcp://127.0.0.1:5432").is_listening
    assert not db1.socket("tcp://0.0.0.0:5432").is_listening


def test_settings(db1, version):
    assert psql(db1, "SHOW ssl") == "on"
    assert psql(db1, "SHOW ssl_min_protocol_version") == "TLSv1.2"
    assert psql(db1, "SHOW password_encryption") == "scram-sha-256"
    assert psql(db1, "SHOW wal_log_hints") == "on"
    assert psql(db1, "SHOW server_version_num")[:2] == version


def test_server_key_private(db1, version):
    key = db1.file(f"/etc/postgresql/{version}/main/ssl/server.key")
    assert key.user == "postgres" and key.mode == 0o600


def test_verify_full_tls_login_and_app_role_is_dml_only(db1):
    # verify-full against the IP SAN, as the app connects; the owner creates a table,
    # the app role can use it but cannot create one
    base = (f"PGSSLMODE=verify-full PGSSLROOTCERT=/etc/ssl/certs/socialsphere-internal-ca.pem "
            f"psql -XAtq 'host={IP} dbname=socialsphere'")
    db1.check_output(f"PGPASSWORD=molecule-owner-pw {base} -U socialsphere_owner "
                     "-c 'CREATE TABLE IF NOT EXISTS t_probe (id serial primary key, v text)'")
    out = db1.check_output(f"PGPASSWORD=molecule-app-pw-login-a {base} -U socialsphere_app_a "
                           "-c \"INSERT INTO t_probe (v) VALUES ('x') RETURNING 1\" -c 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'")
    assert out.splitlines()[-1] == "t"
    ddl = db1.run(f"PGPASSWORD=molecule-app-pw-login-a {base} -U socialsphere_app_a -c 'CREATE TABLE t_nope (id int)'")
    assert ddl.rc != 0 and "permission denied" in ddl.stderr


def test_the_app_group_role_cannot_log_in_and_the_idle_login_is_disabled(db1):
    # socialsphere_app holds the privileges (NOLOGIN); socialsphere_app_b waits for a rotation
    roles = psql(db1, "SELECT rolname || ':' || rolcanlogin || ':' || (rolpassword IS NOT NULL) FROM pg_authid "
                      "WHERE rolname LIKE 'socialsphere_app%' ORDER BY 1").splitlines()
    assert roles == ["socialsphere_app:false:false", "socialsphere_app_a:true:true", "socialsphere_app_b:false:false"]
    members = psql(db1, "SELECT string_agg(m.rolname, ',' ORDER BY m.rolname) FROM pg_auth_members am "
                        "JOIN pg_roles g ON g.oid = am.roleid JOIN pg_roles m ON m.oid = am.member "
                        "WHERE g.rolname = 'socialsphere_app'")
    assert members == "socialsphere_app_a,socialsphere_app_b"


def test_pg_hba_rejects_unknown(db1, version):
    hba = db1.file(f"/etc/postgresql/{version}/main/pg_hba.conf").content_string
    assert "trust" not in hba and " md5" not in hba
