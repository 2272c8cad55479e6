"""Lab helpers of the end-to-end tests (tests/e2e), the lab's host checks (tests/lab) and
the benches (tests/bench): the one place that knows how to reach the lab that `make lab`
built (or any inventory with the same groups).

    inventory  which inventory (LAB_INVENTORY), its vault, `ansible-inventory --list`,
               playbook runs against it (tests/ansible_run.py: one runner, one recap parser)
    hosts      commands on lab hosts (docker exec, or ssh like Ansible), labctl, a host destroyed
    edge       the client of the edge path (VIP, TLS with Pebble's root), the VIP holder
    haproxy    the edge HAProxies' app servers (ssai-haproxy), a watch of their statuses
    load       the GET load generator and the pacing loop it shares with userload
    userload   users' traffic (accounts, sessions, reads and writes, lost writes)
    rotation   each app host's time out of rotation during a rollout
    db         the database tier (Cluster), its backups, the failover and switchover drills
    writer     the continuous database writer of the drills (tests/bench/db_writer.py)
    release    an artifact of this checkout, `fab` against the lab, an app host's release
    monitoring Prometheus and Alertmanager of the monitoring host, asked from that host

Importable as `labkit` wherever tests/ is on sys.path (tests/conftest.py puts it there;
the benches insert it). Traffic goes only to the lab's own addresses.
"""
import pathlib
import sys

# plugins/filter/ssai_facts.py: the deployment's shared facts (labkit.db reads the
# PostgreSQL version map there), importable wherever labkit is (tests/conftest.py adds it
# for pytest; the benches only put tests/ on sys.path).
_FILTERS = str(pathlib.Path(__file__).resolve().parents[2] / "plugins" / "filter")
if _FILTERS not in sys.path:
    sys.path.append(_FILTERS)
