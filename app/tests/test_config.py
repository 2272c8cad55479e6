import json
import re
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2
from sqlalchemy.engine import make_url

from socialsphere import ConfigError, create_app
from socialsphere.config import PRODUCTION_REQUIRED, VARIABLES, normalize_database_url

APP_DIR = Path(__file__).resolve().parent.parent

PROD_ENV = {
    "SOCIALSPHERE_ENV": "production",
    "SOCIALSPHERE_DATABASE_URL": "postgresql+psycopg2://app:pw@/socialsphere?host=db1:5432,db2:5432&target_session_attrs=read-write",
    "SOCIALSPHERE_SECRET_KEY": "s" * 40,
    "SOCIALSPHERE_JWT_KEYS": json.dumps({"2026a": "j" * 40}),
    "SOCIALSPHERE_JWT_ACTIVE_KID": "2026a",
    "SOCIALSPHERE_TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    "SOCIALSPHERE_BASE_URL": "https://socialsphere.example",
}


@pytest.fixture
def prod_env(monkeypatch, tmp_path):
    for key, value in PROD_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SOCIALSPHERE_INSTANCE_PATH", str(tmp_path))
    return monkeypatch


def test_production_starts_with_all_secrets(prod_env):
    app = create_app()
    assert app.config["ENV_NAME"] == "production"
    assert app.config["SECURE_COOKIES"] is True
    assert app.config["WEBHOOK_ALLOW_PRIVATE"] is False
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"]["pool_pre_ping"] is True


@pytest.mark.parametrize("missing", PRODUCTION_REQUIRED)
def test_production_refuses_to_start_without_secret(prod_env, missing):
    prod_env.delenv(missing, raising=False)
    with pytest.raises(ConfigError, match=missing):
        create_app()


@pytest.mark.parametrize("name,value", [
    ("SOCIALSPHERE_SECRET_KEY", "short"),
    ("SOCIALSPHERE_JWT_KEYS", "not json"),
    ("SOCIALSPHERE_JWT_KEYS", json.dumps({"k": "short"})),
    ("SOCIALSPHERE_JWT_ACTIVE_KID", "other"),
    ("SOCIALSPHERE_TOKEN_ENCRYPTION_KEY", "not-a-fernet-key"),
    ("SOCIALSPHERE_BASE_URL", "http://insecure.example"),
    ("SOCIALSPHERE_ENV", "staging"),
    ("SOCIALSPHERE_SMTP_PORT", "abc"),
    ("SOCIALSPHERE_SMTP_STARTTLS", "maybe"),
    ("SOCIALSPHERE_AI_PROVIDER", "skynet"),
    ("SOCIALSPHERE_AI_TIMEOUT", "-1"),
])
def test_invalid_values_named(prod_env, name, value):
    prod_env.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        create_app()


def test_openai_requires_base_url(prod_env):
    prod_env.setenv("SOCIALSPHERE_AI_PROVIDER", "openai")
    with pytest.raises(ConfigError, match="SOCIALSPHERE_AI_BASE_URL"):
        create_app()


def test_development_generates_and_keeps_secrets(monkeypatch, tmp_path):
    monkeypatch.setenv("SOCIALSPHERE_ENV", "development")
    monkeypatch.setenv("SOCIALSPHERE_INSTANCE_PATH", str(tmp_path))
    a = create_app()
    b = create_app()
    assert a.config["SECRET_KEY"] == b.config["SECRET_KEY"]
    assert a.config["SQLALCHEMY_DATABASE_URI"] == "sqlite:///" + str(tmp_path / "socialsphere.db")
    assert (tmp_path / "dev-secrets.json").stat().st_mode & 0o777 == 0o600


def test_multihost_url_passes_through_to_libpq():
    url = normalize_database_url(
        "postgresql+psycopg2://app:p%40ss@/socialsphere?host=db1:5432,db2:5433"
        "&target_session_attrs=read-write&sslmode=verify-full&sslrootcert=/etc/socialsphere/ca.pem")
    _args, kwargs = PGDialect_psycopg2().create_connect_args(make_url(url))
    assert kwargs["host"] == "db1,db2"
    assert kwargs["port"] == "5432,5433"
    assert kwargs["target_session_attrs"] == "read-write"
    assert kwargs["sslmode"] == "verify-full"
    assert kwargs["sslrootcert"] == "/etc/socialsphere/ca.pem"
    assert kwargs["password"] == "p@ss" and kwargs["user"] == "app" and kwargs["dbname"] == "socialsphere"


def test_single_host_and_repeated_host_urls_unchanged():
    for url in ["postgresql+psycopg2://u:p@db1:5432/x?sslmode=require",
                "postgresql+psycopg2://u:p@/x?host=db1:5432&host=db2:5432", "sqlite:///x.db"]:
        assert normalize_database_url(url) == url


def test_every_variable_documented():
    env_example = (APP_DIR / ".env.example").read_text()
    readme = (APP_DIR / "README.md").read_text()
    for name in VARIABLES:
        assert re.search(rf"^#?\s*{name}=", env_example, re.M), f"{name} missing from .env.example"
        assert f"`{name}`" in readme, f"{name} missing from README.md table"
    documented = set(re.findall(r"^#?\s*((?:SOCIALSPHERE_|PROMETHEUS_)[A-Z0-9_]+)=", env_example, re.M))
    assert documented <= set(VARIABLES) | {"SOCIALSPHERE_INSTANCE_PATH", "SOCIALSPHERE_ADMIN_PASSWORD",
                                           "SOCIALSPHERE_DEMO_PASSWORD"}
