#!/usr/bin/env bash
# Failover drill with figures: a writer commits continuously through the app's
# multi-host URL; the primary is killed (SIGKILL); playbooks/db-failover.yml
# promotes the replica; the old primary rejoins (db-rejoin.yml); db.yml runs
# again (must report changed=0). Prints RTO and lost acknowledged writes.
#   tests/bench/db-failover.sh [async|sync|both]     (default both)
# Target: DB_E2E_INVENTORY (default inventories/lab/hosts.yml; the Molecule
# db-cluster inventory works too), DB_E2E_VAULT (default .lab/vault-pass).
# Traffic goes only to the inventory's database addresses; bounded to ~4 min per mode.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
modes="${1:-both}"
[[ "$modes" == both ]] && modes="async sync"
[[ -x app/.venv/bin/python ]] || { echo "app/.venv is missing (make -C app venv): the writer needs SQLAlchemy + psycopg2" >&2; exit 2; }
for mode in $modes; do
  case "$mode" in async|sync) ;; *) echo "usage: $0 [async|sync|both]" >&2; exit 2 ;; esac
done
# Drills are chained: each rejoin already applies the next drill's replication
# mode, so only the first drill converges db.yml beforehand.
.venv/bin/python - $modes <<'PY'
import sys
sys.path.insert(0, "tests/e2e")
import db_support

modes = sys.argv[1:]
cluster = db_support.Cluster()
for i, mode in enumerate(modes):
    nxt = modes[i + 1] if i + 1 < len(modes) else mode
    f = db_support.failover_drill(cluster, sync=(mode == "sync"), converge_first=(i == 0),
                                  rejoin_sync=(nxt == "sync"))
    print(f"RESULT mode={f['mode']} rto_from_kill={f['rto_from_kill_s']}s "
          f"rto_from_playbook_start={f['rto_from_playbook_start_s']}s failover_playbook={f['failover_playbook_s']}s "
          f"acknowledged={f['acknowledged_writes']} failed_attempts={f['failed_attempts']} "
          f"lost_acknowledged={f['lost_acknowledged_writes']} rejoin={f['rejoin_method']} in {f['rejoin_playbook_s']}s "
          f"second_run_changed={f.get('second_run_changed')}", flush=True)
PY
