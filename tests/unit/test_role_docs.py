"""scripts/role-docs: the README variable table comes from meta/argument_specs.yml.

Each test builds a throw-away role under tmp_path and runs the real script on it
(`--roles-dir`), as `make lint` runs it on roles/.
"""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "role-docs"
BEGIN = "<!-- BEGIN role-docs: generated from meta/argument_specs.yml by scripts/role-docs; do not edit -->"
END = "<!-- END role-docs -->"

SPEC = """\
---
argument_specs:
  main:
    short_description: A role for the tests
    options:
      demo_port:
        type: int
        default: 8080
        description: Port of the demo.
      demo_mode:
        type: str
        default: fast
        choices: [fast, safe]
        description: "How it runs: `fast` or `safe`."
      demo_hosts:
        type: list
        elements: str
        default: >-
          {{ groups['demo'] | default([])
             | map('extract', hostvars, 'ansible_host') | list }}
        description: Hosts <to reach> | all of them.
      demo_token:
        type: str
        required: true
        no_log: true
        description: Token, from the vault.
      demo_users:
        type: list
        elements: dict
        default: []
        description: Users.
        options:
          name:
            type: str
            required: true
            description: User name.
  extra:
    short_description: Another entry point
    options:
      demo_port:
        type: int
        default: 8080
        description: Port of the demo.
      demo_only_here:
        type: bool
        description: Used by the extra entry point only.
"""

DEFAULTS = """\
---
# The demo's port and mode.
demo_port: 8080
demo_mode: fast
demo_hosts: >-
  {{ groups['demo'] | default([])
     | map('extract', hostvars, 'ansible_host') | list }}
demo_users: []
"""

README = f"""\
# demo

What the role does.

## Role Variables

{BEGIN}
(old table)
{END}

## Example

Kept as it is.
"""

EXPECTED_BLOCK = BEGIN + "\n\n" + textwrap.dedent("""\
    Entry point `main` (the role's default): A role for the tests

    | variable | type | default | required | choices | description |
    |---|---|---|---|---|---|
    | `demo_port` | int | `8080` | no |  | Port of the demo. |
    | `demo_mode` | str | `fast` | no | `fast`, `safe` | How it runs: `fast` or `safe`. |
    | `demo_hosts` | list of str | `"{{ groups['demo'] \\| default([]) \\| map('extract', hostvars, 'ansible_host') \\| list }}"` | no |  | Hosts &lt;to reach> \\| all of them. |
    | `demo_token` | str |  | yes |  | Token, from the vault. |
    | `demo_users` | list of dict | `[]` | no |  | Users. |
    | `demo_users[].name` | str |  | yes |  | User name. |

    Entry point `extra` (`tasks_from: extra`): Another entry point

    Its variables, documented under `main` above: `demo_port`.

    | variable | type | default | required | choices | description |
    |---|---|---|---|---|---|
    | `demo_only_here` | bool |  | no |  | Used by the extra entry point only. |

    """) + END


def make_role(root, name="demo", spec=SPEC, defaults=DEFAULTS, readme=README):
    role = root / name
    (role / "meta").mkdir(parents=True)
    (role / "defaults").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(spec)
    (role / "defaults" / "main.yml").write_text(defaults)
    (role / "README.md").write_text(readme)
    return role


def role_docs(roles_dir, *args):
    return subprocess.run([sys.executable, str(SCRIPT), "--roles-dir", str(roles_dir), *args],
                          capture_output=True, text=True, check=False, timeout=60)


@pytest.fixture
def roles(tmp_path):
    root = tmp_path / "roles"
    root.mkdir()
    return root


def test_writes_the_table_between_the_markers_and_keeps_the_prose(roles):
    role = make_role(roles)
    proc = role_docs(roles)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    readme = (role / "README.md").read_text()
    assert readme == README.replace(f"{BEGIN}\n(old table)\n{END}", EXPECTED_BLOCK)
    # Deterministic: a second run changes nothing and the check passes.
    assert role_docs(roles).stdout == ""
    check = role_docs(roles, "--check")
    assert check.returncode == 0, check.stdout + check.stderr


def test_check_names_a_stale_readme_and_changes_nothing(roles):
    role = make_role(roles)
    proc = role_docs(roles, "--check")
    assert proc.returncode == 1
    assert f"{role / 'README.md'}: stale Role Variables; run `scripts/role-docs` to regenerate it" in proc.stdout
    assert (role / "README.md").read_text() == README


def test_a_readme_without_markers_gets_the_section_appended(roles):
    role = make_role(roles, readme="# demo\n\nProse.\n")
    assert role_docs(roles).returncode == 0
    text = (role / "README.md").read_text()
    assert text.startswith("# demo\n\nProse.\n\n## Role Variables\n\n" + BEGIN)
    assert text.endswith(END + "\n")


def test_a_default_missing_from_the_spec_is_reported(roles):
    make_role(roles, defaults=DEFAULTS + "demo_secret_knob: 3\n# Internal, never a role variable:\n__demo_internal: 1\n")
    role_docs(roles)
    proc = role_docs(roles, "--check")
    assert proc.returncode == 1
    assert ("demo: demo_secret_knob is in defaults/main.yml but not in "
            f"{roles / 'demo' / 'meta' / 'argument_specs.yml'} (entry point main): add it to the spec") in proc.stdout
    assert "__demo_internal" not in proc.stdout
    # The README is not stale: the problem is the spec's.
    assert "stale" not in proc.stdout


def test_a_spec_option_missing_from_the_defaults_is_reported(roles):
    make_role(roles, defaults=DEFAULTS.replace("demo_mode: fast\n", ""))
    proc = role_docs(roles, "--check")
    assert proc.returncode == 1
    assert "demo: demo_mode is in " in proc.stdout
    assert "(entry point main) but not in defaults/main.yml" in proc.stdout
    # demo_token is required, so it needs no default.
    assert "demo_token" not in proc.stdout


def test_a_default_that_differs_from_the_spec_is_reported(roles):
    make_role(roles, defaults=DEFAULTS.replace("demo_port: 8080", "demo_port: 8081"))
    proc = role_docs(roles)
    assert proc.returncode == 1
    assert "demo: demo_port default differs:" in proc.stdout
    assert "says 8080, defaults/main.yml says 8081" in proc.stdout


def test_an_entry_point_that_redefines_a_main_option_is_reported(roles):
    make_role(roles, spec=SPEC.replace("        description: Port of the demo.\n      demo_only_here",
                                       "        description: Another text.\n      demo_only_here"))
    proc = role_docs(roles, "--check")
    assert proc.returncode == 1
    assert "demo: demo_port in entry point extra differs from entry point main" in proc.stdout


def test_the_repository_roles_are_documented_from_their_specs():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True,
                          check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_jinja_in_a_description_is_reported(roles):
    # ansible-core templates the spec when it validates the arguments: this would
    # fail the role wherever vault_demo_token is undefined.
    make_role(roles, spec=SPEC.replace("Token, from the vault.", '"Token: `{{ vault_demo_token }}`."'))
    proc = role_docs(roles, "--check")
    assert proc.returncode == 1
    assert "demo: the description of demo_token in " in proc.stdout
    assert "holds Jinja delimiters" in proc.stdout
