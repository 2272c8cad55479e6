"""roles/internal_ca/tasks/issue_cert.yml: a run keeps a certificate that is
still right (same key, names and CA, not due) and re-issues it when any of
these changed. One playbook run on this machine (local connection, a scratch
CA under a temporary directory; run as root, as CI does: the certificate
directory is root-owned)."""
import json
import pathlib

import pytest

from ansible_run import run_playbook

PLAYBOOK = pathlib.Path(__file__).parent / "playbooks" / "internal_ca_issue.yml"


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("internal_ca")
    # The role's package task reads the host's package facts; here the
    # library comes with Ansible itself.
    extra = json.dumps({"scratch_dir": str(scratch), "__internal_ca_issue_packages": []})
    rc, out = run_playbook("localhost,", PLAYBOOK, "-c", "local", "-e", extra, timeout=300)
    assert rc == 0, out
    recorded = json.loads((scratch / "steps.json").read_text())
    return {s["step"]: s for s in recorded}


def test_first_run_issues_a_certificate_for_the_key_and_names(steps):
    first = steps["first"]
    assert first["cert_key"] == first["key"]
    assert sorted(first["sans"]) == ["DNS:test.example", "IP:192.0.2.10"]
    assert first["aki"] == first["ca_ski"] and first["issuer"] == first["ca_subject"]
    assert first["mode"] == "0644"


def test_a_run_with_nothing_changed_keeps_the_certificate(steps):
    assert steps["again"]["serial"] == steps["first"]["serial"]
    # ... without signing a new one on the control node (the point of the check)
    assert steps["first"]["signed"] and not steps["again"]["signed"]


def test_other_names_re_issue_it(steps):
    assert steps["sans"]["serial"] != steps["renew"]["serial"]
    assert "DNS:extra.example" in steps["sans"]["sans"]


def test_a_drifted_mode_is_fixed_without_re_issuing(steps):
    assert steps["mode"]["mode"] == "0644"
    assert steps["mode"]["serial"] == steps["again"]["serial"] and not steps["mode"]["signed"]


def test_a_new_key_gets_a_certificate_for_it(steps):
    assert steps["key"]["key"] != steps["mode"]["key"]
    assert steps["key"]["serial"] != steps["mode"]["serial"]
    assert steps["key"]["cert_key"] == steps["key"]["key"]


def test_a_new_ca_re_issues_it(steps):
    assert steps["ca"]["ca_ski"] != steps["key"]["ca_ski"]
    assert steps["ca"]["aki"] == steps["ca"]["ca_ski"]
    assert steps["ca"]["serial"] != steps["key"]["serial"]


def test_a_certificate_inside_the_renewal_margin_is_renewed(steps):
    assert steps["renew"]["serial"] != steps["ca"]["serial"]
    assert steps["renew"]["cert_key"] == steps["renew"]["key"]
