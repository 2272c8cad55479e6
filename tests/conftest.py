"""Shared pytest settings for the infrastructure tests."""
import os
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent
os.environ.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
