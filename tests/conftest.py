"""Shared pytest settings for the infrastructure tests."""
import os
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
os.environ.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
# tests/ansible_run.py is the shared helper of tests/unit, tests/lab and tests/e2e.
sys.path.insert(0, str(pathlib.Path(__file__).parent))
