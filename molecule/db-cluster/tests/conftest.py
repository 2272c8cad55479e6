"""Hosts of the db-cluster scenario, reached with docker:// (ansible_host is an IP)."""
import os

import pytest
import testinfra

DISTRO = os.environ.get("MOLECULE_DISTRO", "ubuntu2404")


def _host(name):
    return testinfra.get_host(f"docker://dbc-{name}-{DISTRO}")


@pytest.fixture(scope="module")
def db1():
    return _host("db1")


@pytest.fixture(scope="module")
def db2():
    return _host("db2")


@pytest.fixture(scope="module")
def backup1():
    return _host("backup1")
