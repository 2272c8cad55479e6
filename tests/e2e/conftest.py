"""Fixtures shared by the end-to-end tests; they all share the one lab that
`make lab` built. The helpers they use are the tests/labkit package (this directory
holds test modules only)."""
import pytest

from labkit.edge import Edge
from labkit.inventory import INVENTORY, VAULT_PASS, lab_inventory_data


@pytest.fixture(scope="session")
def lab_inventory():
    if not INVENTORY.exists() or not VAULT_PASS.exists():
        pytest.fail(f"the lab is not up ({INVENTORY} missing): run `make lab` first")
    return lab_inventory_data()


@pytest.fixture(scope="module")
def edge(lab_inventory):
    """The client of the edge path (VIP, TLS verified against Pebble's root)."""
    return Edge.from_inventory(lab_inventory)
