#!/usr/bin/env bash
# Failover drill with figures: a writer commits continuously through the app's
# multi-host URL; the primary is killed (SIGKILL); playbooks/db-failover.yml
# promotes the replica; the old primary rejoins (db-rejoin.yml); db.yml runs
# again (must report changed=0). Prints RTO and lost acknowledged writes per
# run and, with several runs, the medians per mode.
#   tests/bench/db-failover.sh [async|sync|both] [RUNS]     (default: both 1)
# Target: LAB_INVENTORY (default inventories/lab/hosts.yml; the Molecule
# db-cluster inventory works too), LAB_VAULT_PASS (default .lab/vault-pass):
# tests/labkit/inventory.py reads them.
# DB_E2E_LOG_DIR keeps every playbook's output (add
# ANSIBLE_CALLBACKS_ENABLED=profile_tasks for per-task times).
# Traffic goes only to the inventory's database addresses; the writer stops by
# itself after 10 min at most per drill (it is stopped as soon as the drill ends).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
modes="${1:-both}"
runs="${2:-1}"
[[ "$modes" == both ]] && modes="async sync"
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [async|sync|both] [RUNS]" >&2; exit 2; }
[[ -x app/.venv/bin/python ]] || { echo "app/.venv is missing (make -C app venv): the writer needs SQLAlchemy + psycopg2" >&2; exit 2; }
for mode in $modes; do
  case "$mode" in async|sync) ;; *) echo "usage: $0 [async|sync|both] [RUNS]" >&2; exit 2 ;; esac
done
# Drills are chained: each rejoin already applies the next drill's replication
# mode, so only the first drill converges db.yml beforehand.
.venv/bin/python - "$runs" $modes <<'PY'
import statistics
import subprocess
import sys
sys.path[:0] = ["tests"]
from labkit import db

runs, modes = int(sys.argv[1]), sys.argv[2:]
plan = [m for m in modes for _ in range(runs)]
cluster = db.Cluster()
results = {}
for i, mode in enumerate(plan):
    nxt = plan[i + 1] if i + 1 < len(plan) else mode
    f = db.failover_drill(cluster, sync=(mode == "sync"), converge_first=(i == 0),
                          rejoin_sync=(nxt == "sync"))
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    results.setdefault(mode, []).append(f)
    print(f"RESULT mode={f['mode']} rto_from_kill={f['rto_from_kill_s']}s "
          f"rto_from_playbook_start={f['rto_from_playbook_start_s']}s failover_playbook={f['failover_playbook_s']}s "
          f"acknowledged={f['acknowledged_writes']} failed_attempts={f['failed_attempts']} "
          f"lost_acknowledged={f['lost_acknowledged_writes']} rejoin={f['rejoin_method']} in {f['rejoin_playbook_s']}s "
          f"second_run_changed={f.get('second_run_changed')} | {load}", flush=True)
for mode, fs in results.items():
    med = {k: statistics.median(f[k] for f in fs)
           for k in ("rto_from_kill_s", "rto_from_playbook_start_s", "failover_playbook_s", "lost_acknowledged_writes")}
    print(f"MEDIAN mode={mode} runs={len(fs)} " + " ".join(f"{k}={v}" for k, v in med.items())
          + f" max_lost={max(f['lost_acknowledged_writes'] for f in fs)}", flush=True)
PY
