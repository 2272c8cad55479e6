"""roles/postgresql/templates/pg_hba.conf.j2 rendered by Ansible with the role's
defaults: an isolated host (inventory group `isolated`, playbooks/isolate-host.yml) has
no line, and the lines keep the inventory's order from one run to the next. Found on
the lab: the template once left the isolated hosts out with `difference`, a set whose
order changes with Python's hash seed, so every site.yml rewrote pg_hba.conf and
reloaded PostgreSQL (test_00_idempotence: changed=2 on each database host)."""
import yaml

from ansible_run import render_role_template

HOSTS = {"app": ["app1", "app2", "app3", "app4", "app5"], "db": ["db1", "db2", "db3"],
         "backup": ["backup1", "backup2"]}


def render(tmp_path, seed, isolated):
    number = iter(range(10, 250))
    groups = {g: {"hosts": {h: {"ansible_host": f"10.0.0.{next(number)}"} for h in hosts}}
              for g, hosts in HOSTS.items()}
    groups["isolated"] = {"hosts": {h: {} for h in isolated}}
    groups["control"] = {"hosts": {"localhost": {"ansible_connection": "local",
                                                 "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}}
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": groups}}))
    return render_role_template(tmp_path, "postgresql", "pg_hba.conf.j2", inventory=str(inventory),
                                PYTHONHASHSEED=str(seed)).read_text()


def addresses(text):
    return [line.split()[3] for line in text.splitlines() if line.startswith("hostssl")]


def test_isolated_hosts_have_no_line_and_the_order_does_not_change(tmp_path):
    isolated = ["app3", "db2", "backup1"]
    runs = [render(tmp_path, seed, isolated) for seed in (1, 2, 3)]
    assert runs[0] == runs[1] == runs[2]
    seen = addresses(runs[0])
    # app1, app2, app4, app5 (10, 11, 13, 14); backup2 (19); db1, db3 twice each (15, 17)
    assert seen == ["10.0.0.10/32", "10.0.0.11/32", "10.0.0.13/32", "10.0.0.14/32", "10.0.0.19/32",
                    "10.0.0.15/32", "10.0.0.15/32", "10.0.0.17/32", "10.0.0.17/32"], runs[0]


def test_without_isolated_hosts_every_host_has_its_lines(tmp_path):
    seen = addresses(render(tmp_path, 0, []))
    assert len(seen) == 5 + 2 + 2 * 3, seen
