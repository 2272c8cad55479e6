#!/usr/bin/env bash
# Run Lynis (from the distribution archive) on every lab host and print the
# hardening index per host. Needs the lab (lab/labctl up) and site.yml applied.
#   tests/bench/lynis.sh                 all hosts of inventories/lab/hosts.yml
#   tests/bench/lynis.sh edge1 db1       some hosts
#   LYNIS_MIN=80 tests/bench/lynis.sh    exit 1 if a host scores below LYNIS_MIN
# Env: LAB_INVENTORY (default inventories/lab/hosts.yml), LYNIS_REPORT_DIR
# (default .lab/lynis: each host's report and suggestions are kept there).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
export PATH="$repo/.venv/bin:$PATH" ANSIBLE_CONFIG="$repo/ansible.cfg" ANSIBLE_NOCOLOR=1
inventory="${LAB_INVENTORY:-inventories/lab/hosts.yml}"
outdir="${LYNIS_REPORT_DIR:-$repo/.lab/lynis}"
min="${LYNIS_MIN:-0}"
pattern="${*:-all}"
pattern="${pattern// /:}"
mkdir -p "$outdir"

[[ -f "$inventory" ]] || { echo "no lab inventory at $inventory: run lab/labctl up" >&2; exit 2; }

# Install Lynis from the distribution archive (idempotent).
ansible "$pattern" -i "$inventory" -b -m ansible.builtin.apt -a "name=lynis state=present" -o >/dev/null

# Audit in parallel; keep the report and the log on the host, fetch the report.
ansible "$pattern" -i "$inventory" -b -m ansible.builtin.command \
  -a "lynis audit system --quick --no-colors --cronjob --report-file /var/log/lynis-report.dat" >/dev/null
ansible "$pattern" -i "$inventory" -b -m ansible.builtin.fetch \
  -a "src=/var/log/lynis-report.dat dest=$outdir/{{ inventory_hostname }}.dat flat=true" -o >/dev/null

status=0
printf '%-10s %s\n' HOST "HARDENING INDEX"
for f in "$outdir"/*.dat; do
  host="$(basename "$f" .dat)"
  if [[ "$pattern" != all ]] && [[ ":$pattern:" != *":$host:"* ]]; then continue; fi
  idx="$(sed -n 's/^hardening_index=//p' "$f")"
  grep '^suggestion\[\]=' "$f" | cut -d'|' -f1,2 | sed 's/^suggestion\[\]=//' >"$outdir/$host.suggestions"
  printf '%-10s %s\n' "$host" "${idx:-?}"
  if [[ -z "$idx" || "$idx" -lt "$min" ]]; then status=1; fi
done
echo "reports and suggestions: $outdir"
exit "$status"
