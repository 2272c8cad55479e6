#!/usr/bin/env bash
# Where a site.yml run spends its time: runs a playbook (default
# playbooks/site.yml) against an inventory (default the lab) with Ansible's
# task- and role-timing callbacks (ansible.posix.profile_tasks and
# profile_roles, shipped with the ansible package) and prints the wall time,
# the recap totals, the slowest tasks and the slowest roles.
#   tests/bench/converge-profile.sh [PLAYBOOK] [RUNS]      (or: make profile)
# LAB_INVENTORY (default inventories/lab/hosts.yml), LAB_VAULT_PASS (default
# .lab/vault-pass): the tests' variables (tests/labkit/inventory.py); PROFILE_TOP
# (default 25 tasks), PROFILE_LOG_DIR (default a new directory under /tmp; every
# run's full output is kept there).
# With RUNS > 1 the playbook runs that many times and the median wall time is
# printed too (the first run of a fresh lab converges; the later ones are no-ops).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
export PATH="$repo/.venv/bin:$PATH" ANSIBLE_CONFIG="$repo/ansible.cfg"   # make venv
playbook="${1:-playbooks/site.yml}"
runs="${2:-1}"
inventory="${LAB_INVENTORY:-inventories/lab/hosts.yml}"
vault="${LAB_VAULT_PASS:-.lab/vault-pass}"
top="${PROFILE_TOP:-25}"
logdir="${PROFILE_LOG_DIR:-$(mktemp -d /tmp/converge-profile.XXXXXX)}"
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [PLAYBOOK] [RUNS]" >&2; exit 2; }
[[ -f "$playbook" ]] || { echo "no playbook $playbook" >&2; exit 2; }
[[ -f "$inventory" ]] || { echo "no inventory $inventory (make lab-up writes the lab's)" >&2; exit 2; }
mkdir -p "$logdir"

export ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks,ansible.posix.profile_roles
export ANSIBLE_PROFILE_TASKS_TASK_OUTPUT_LIMIT="$top"
export ANSIBLE_PROFILE_TASKS_SORT_ORDER=descending
export ANSIBLE_FORCE_COLOR=0

times=()
status=0
for i in $(seq 1 "$runs"); do
  log="$logdir/run-$i.log"
  start=$(date +%s.%N)
  rc=0
  ansible-playbook -i "$inventory" --vault-password-file "$vault" "$playbook" >"$log" 2>&1 || rc=$?
  end=$(date +%s.%N)
  wall=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }')
  times+=("$wall")
  plays=$(grep -c '^PLAY \[' "$log" || true)
  facts=$(grep -c '^TASK \[Gathering Facts\]' "$log" || true)
  tasks=$(grep -c '^TASK \[' "$log" || true)
  echo "== run $i: $playbook, rc=$rc, wall ${wall}s, $plays plays, $tasks task headers, fact gathering in $facts plays (log: $log)"
  echo "-- recap"
  sed -n '/^PLAY RECAP/,/^$/p' "$log" | sed 1d | sed '/^$/d'
  awk '/^PLAY RECAP/ { r = 1; next } r && /ok=/ {
         for (f = 1; f <= NF; f++) { split($f, kv, "="); if (kv[1] == "changed") c += kv[2]; if (kv[1] == "failed") x += kv[2] } }
       END { printf "-- total changed=%d failed=%d\n", c, x }' "$log"
  # Both callbacks print a table after the recap: a "TASKS RECAP" or "ROLES RECAP"
  # banner, a time stamp, a line of "=", then one "name ---- 1.23s" line per entry.
  # profile_tasks stamps each task with the run's elapsed time (h:mm:ss.ss
  # before the stars): a play lasts from its first stamp to the next play's.
  echo "-- slowest plays"
  awk 'function secs(t,  p) { split(t, p, ":"); return p[1] * 3600 + p[2] * 60 + p[3] }
       /^PLAY \[/ { name = $0; sub(/^PLAY \[/, "", name); sub(/\] \**$/, "", name); want = 1; next }
       /^PLAY RECAP/ { want = 2 }
       / [0-9]+:[0-9][0-9]:[0-9][0-9]\.[0-9]+ \*+ *$/ {
         now = secs($(NF - 1))
         if (n) dur[n] = now - start[n]
         if (want == 1) { n++; names[n] = name; start[n] = now; want = 0 }
         if (want == 2) exit
       }
       END { for (i = 1; i <= n; i++) printf "%8.1fs  %s\n", dur[i], names[i] }' "$log" \
    | sort -rn | head -n 12
  echo "-- slowest roles (profile_roles: time per role, all hosts together)"
  awk '/^ROLES RECAP/ { r = 1; next } r && /^=+ *$/ { t = 1; next }
       t && (/^~/ || !NF) { exit } t { print }' "$log" | head -n 20
  echo "-- slowest $top tasks (profile_tasks)"
  awk '/^TASKS RECAP/ { r = 1; next } r && /^=+ *$/ { t = 1; next }
       t && !NF { exit } t { print }' "$log" | head -n "$top"
  [[ $rc -eq 0 ]] || status=$rc
done
if (( runs > 1 )); then
  printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END {
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
    printf "== median wall time of %d runs: %.1fs (min %.1fs, max %.1fs)\n", NR, m, a[1], a[NR] }'
fi
exit "$status"
