"""Hosts of the scenario, reached with docker:// (the inventory's ansible_host is an IP)."""
import os

import pytest
import testinfra

DISTRO = os.environ.get("MOLECULE_DISTRO", "ubuntu2404")


@pytest.fixture(scope="module")
def db1():
    return testinfra.get_host(f"docker://pg-db1-{DISTRO}", sudo=False)
