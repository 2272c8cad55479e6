"""playbooks/rotate-ca.yml and roles/internal_ca tasks_from rotate: the internal CA
rotated in three phases; no container needed.

- The phase checks (playbooks/tasks/rotate-ca-checks.yml) run on made-up control-node
  CAs and host states, all cases in one run: phase order, a host that does not trust
  the new CA, a service not restarted with the current CA file, a certificate of the
  old CA left at retire.
- The control-node steps run for real on a scratch CA directory: the trust bundle the
  role installs holds both CAs from add to retire, identical across switch (so switch
  restarts nothing for the bundle), then the new CA only; the old key leaves the CA
  directory into a dated 0700 directory; each step run again changes nothing.
- The request play of the real playbook refuses an unknown phase and --limit.
"""
import hashlib
import json
import pathlib
import shutil

import pytest
from cryptography import x509

from ansible_run import case_plan, case_refusal, local_env, run_check_cases, run_playbook

UNIT = pathlib.Path(__file__).parent
CHECKS_PLAYBOOK = UNIT / "playbooks" / "rotate_ca_checks.yml"
ROTATE_PLAYBOOK = UNIT / "playbooks" / "internal_ca_rotate.yml"
FIXTURE = UNIT / "fixtures" / "inventory_ok"

OLD = {"pem": "-----BEGIN CERTIFICATE-----\nOLD+/=\n-----END CERTIFICATE-----", "ski": "aa:01", "name": "CA"}
NEW = {"pem": "-----BEGIN CERTIFICATE-----\nNEW+/=\n-----END CERTIFICATE-----", "ski": "bb:02", "name": "CA 2026"}


def bundle(*cas):
    return "\n".join(sorted(ca["pem"] for ca in cas)) + "\n"


def host(cas, certs_from, notified=None):
    """A host whose CA file holds `cas`, whose certificates were issued by `certs_from`
    and whose services were last notified of the bundle `notified` (default: the file)."""
    text = bundle(*cas)
    sha = hashlib.sha256((notified if notified is not None else text).encode()).hexdigest()
    return {"bundle": text, "certs": {"postgresql": {"path": "/x.crt", "aki": certs_from["ski"],
                                                     "issuer": certs_from["name"], "trust_sha256": sha}}}


def state(current, next_=None, previous=None):
    return {"current": current, "next": next_, "previous": previous}


def case(phase, st, hosts):
    return {"phase": phase, "state": st, "hosts": hosts}


CASES = {
    "add": case("add", state(OLD), {"db1": host([OLD], OLD), "mon1": host([OLD], OLD)}),
    "add again": case("add", state(OLD, NEW), {"db1": host([OLD, NEW], OLD), "mon1": host([OLD, NEW], OLD)}),
    "add while switched": case("add", state(NEW, previous=OLD), {"db1": host([OLD, NEW], NEW)}),
    "all while added": case("all", state(OLD, NEW), {"db1": host([OLD, NEW], OLD)}),
    "all": case("all", state(OLD), {"db1": host([OLD], OLD)}),
    "no CA": case("add", state(None), {}),
    "switch": case("switch", state(OLD, NEW), {"db1": host([OLD, NEW], OLD), "mon1": host([OLD, NEW], OLD)}),
    "switch again": case("switch", state(NEW, previous=OLD), {"db1": host([OLD, NEW], NEW)}),
    "switch before add": case("switch", state(OLD), {"db1": host([OLD], OLD)}),
    "switch with a host not trusting": case("switch", state(OLD, NEW), {"db1": host([OLD, NEW], OLD),
                                                                      "mon1": host([OLD], OLD)}),
    "switch with a service not restarted": case("switch", state(OLD, NEW),
                                                {"db1": host([OLD, NEW], OLD, notified=bundle(OLD))}),
    "retire": case("retire", state(NEW, previous=OLD), {"db1": host([OLD, NEW], NEW), "mon1": host([OLD, NEW], NEW)}),
    "retire again": case("retire", state(NEW), {"db1": host([NEW], NEW)}),
    "retire before switch": case("retire", state(OLD, NEW), {"db1": host([OLD, NEW], OLD)}),
    "retire with an old certificate": case("retire", state(NEW, previous=OLD),
                                           {"db1": host([OLD, NEW], NEW), "backup1": host([OLD, NEW], OLD)}),
}


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    return run_check_cases(tmp_path_factory.mktemp("rotate_ca_checks"), CHECKS_PLAYBOOK, CASES)


def test_add_creates_the_next_ca_once(checked):
    assert case_plan(checked, "add") == {"phase": "add", "create": True, "switch": False, "retire": False, "certs": 2}
    assert case_plan(checked, "add again")["create"] is False


def test_add_and_all_refuse_a_rotation_in_progress(checked):
    assert "run -e rotate_ca_phase=retire first" in case_refusal(checked, "add while switched")
    assert "finish that rotation with -e rotate_ca_phase=switch" in case_refusal(checked, "all while added")
    assert case_plan(checked, "all") == {"phase": "all", "create": True, "switch": True, "retire": True, "certs": 1}


def test_no_ca_in_effect_is_refused(checked):
    assert "No CA in effect" in case_refusal(checked, "no CA")


def test_switch_needs_the_new_ca_trusted_everywhere(checked):
    assert case_plan(checked, "switch")["switch"] is True
    assert case_plan(checked, "switch again")["switch"] is False
    assert "run -e rotate_ca_phase=add" in case_refusal(checked, "switch before add")
    msg = case_refusal(checked, "switch with a host not trusting")
    assert "the CA file of mon1 does not hold the new CA (CA 2026)" in msg and "db1" not in msg


def test_switch_refuses_a_service_not_restarted_with_the_current_ca_file(checked):
    assert "services of db1 (postgresql) were not restarted" in case_refusal(checked, "switch with a service not restarted")


def test_retire_refuses_while_a_certificate_of_the_old_ca_is_deployed(checked):
    assert case_plan(checked, "retire")["retire"] is True
    assert case_plan(checked, "retire again")["retire"] is False
    assert "run -e rotate_ca_phase=switch before retire" in case_refusal(checked, "retire before switch")
    msg = case_refusal(checked, "retire with an old certificate")
    assert "backup1 postgresql (issuer CA)" in msg and "db1" not in msg


# ---------------------------------------------------------------- the control-node steps
@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("internal_ca_rotate")
    rc, out = run_playbook("localhost,", ROTATE_PLAYBOOK, "-c", "local", "-e",
                           json.dumps({"scratch_dir": str(scratch)}), timeout=300)
    assert rc == 0, out[-4000:]
    return {s["step"]: s for s in json.loads((scratch / "steps.json").read_text())}


def certs(text):
    """The number of certificates of a PEM bundle, each parsed (a bundle that does not parse fails)."""
    assert "\\n" not in text and text.endswith("-----END CERTIFICATE-----\n"), text[-200:]
    parsed = x509.load_pem_x509_certificates(text.encode())
    assert len(parsed) == text.count("-----BEGIN CERTIFICATE-----")
    return len(parsed)


def test_add_trusts_both_cas_and_keeps_the_old_one_in_effect(steps):
    assert certs(steps["first"]["bundle"]) == 1
    assert certs(steps["add"]["bundle"]) == 2 and steps["first"]["bundle"].strip() in steps["add"]["bundle"]
    assert steps["add"]["current_ski"] == steps["first"]["current_ski"]
    assert "ca/next/ca.key" in steps["add"]["files"] and steps["add"]["modes"]["ca/next"] == "0700"
    assert steps["add"]["current_name"] == "SocialSphere Internal CA"


def test_switch_makes_the_new_ca_the_one_in_effect_with_the_same_bundle(steps):
    assert steps["switch"]["current_ski"] != steps["add"]["current_ski"]
    assert steps["switch"]["current_name"].startswith("SocialSphere Internal CA 2")
    assert steps["switch"]["bundle"] == steps["add"]["bundle"]
    assert "ca/previous/ca.key" in steps["switch"]["files"] and not any("next" in f for f in steps["switch"]["files"])


def test_retire_moves_the_old_key_out_and_trusts_the_new_ca_only(steps):
    retired = steps["retire"]
    assert certs(retired["bundle"]) == 1 and retired["bundle"].strip() in steps["switch"]["bundle"]
    assert retired["bundle"] != steps["first"]["bundle"]
    assert not any(f.startswith("ca/previous") for f in retired["files"])
    kept = [f for f in retired["files"] if f.startswith("ca-retired/") and f.endswith("/ca.key")]
    assert len(kept) == 1, retired["files"]
    assert retired["modes"][str(pathlib.PurePath(kept[0]).parent)] == "0700"


@pytest.mark.parametrize("phase", ["add", "switch", "retire"])
def test_a_phase_run_again_changes_nothing(steps, phase):
    again = steps[f"{phase} again"]
    assert again["bundle"] == steps[phase]["bundle"]
    assert again["files"] == steps[phase]["files"] and again["mtimes"] == steps[phase]["mtimes"]


# ---------------------------------------------------------------- the request play
@pytest.fixture
def inventory(tmp_path):
    dest = tmp_path / "inventory"
    shutil.copytree(FIXTURE, dest)
    return dest


@pytest.mark.parametrize("extra, message", [
    ([], "rotate-ca.yml needs -e rotate_ca_phase=add|switch|retire"),
    (["-e", "rotate_ca_phase=rollback"], "(got 'rollback')"),
    (["-e", "rotate_ca_phase=add", "--limit", "db1"], "run it without --limit (left out: app1, app2"),
    (["-e", "rotate_ca_phase=add", "-e", "internal_ca_retire_delete=maybe"], "internal_ca_retire_delete must be"),
])
def test_a_bad_request_is_refused_with_its_reason(inventory, extra, message):
    rc, out = run_playbook(inventory / "hosts.yml", "rotate-ca.yml", *extra, timeout=300, env=local_env())
    assert rc != 0 and message in out, out[-3000:]
