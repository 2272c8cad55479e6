#!/usr/bin/env bash
# Rolling release under load, measured: constant read load through the lab's
# edge VIP (HTTPS, Pebble's root trusted) while `fab deploy` rolls a new release
# over every app host; prints requests, failures and latency, and the time the
# rollout took. Traffic goes only to the lab VIP; bounded by DURATION_MAX.
#
#   tests/bench/rolling-release.sh                # new release = checkout re-versioned (.bench<time>)
#   VERSION=1.0.0+gabc12345 tests/bench/rolling-release.sh
#   RPS=60 THREADS=6 DURATION_MAX=600 tests/bench/rolling-release.sh
#   LAB_INVENTORY=inventories/lab/hosts-<lab>.yml tests/bench/rolling-release.sh   # another lab
#
# Needs the lab up and deployed (make lab). Exit status 1 when a request failed.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
export PATH="$repo/.venv/bin:$PATH"
export SSAI_E2E_LOAD_RPS="${RPS:-60}" SSAI_E2E_LOAD_THREADS="${THREADS:-6}" SSAI_E2E_LOAD_MAX_SECONDS="${DURATION_MAX:-600}"
echo "# before: $(uptime)"
export SSAI_VAULT_PASSWORD_FILE="${SSAI_VAULT_PASSWORD_FILE:-$repo/.lab/vault-pass}"

exec python3 - "${VERSION:-}" <<'PY'
import os, sys, time
sys.path[:0] = ["tests"]
from labkit.edge import Edge
from labkit.inventory import lab_inventory_data
from labkit.load import LoadGenerator
from labkit.release import build_release, fab

inv = lab_inventory_data()
version = sys.argv[1] or build_release("bench" + time.strftime("%H%M%S"))
edge = Edge.from_inventory(inv)
print(f"rolling release {version} under load through {edge.address} ({edge.domain})", flush=True)
with LoadGenerator(edge) as load:
    time.sleep(5)
    t0 = time.monotonic()
    res = fab("deploy", "--version", version)
    rollout = time.monotonic() - t0
    time.sleep(5)
print(res.stdout[-3000:])
if res.returncode:
    print(res.stderr[-3000:], file=sys.stderr)
print(f"rollout: {rollout:.1f}s, fab exit {res.returncode}")
print(f"load: {load.result.summary()}")
print(f"# after: {os.popen('uptime').read().strip()}")
sys.exit(1 if res.returncode or load.result.failed else 0)
PY
