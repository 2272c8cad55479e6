#!/usr/bin/env bash
# Run Lynis (from the distribution archive) on every lab host and print the
# hardening index per host. Needs the lab (lab/labctl up) and site.yml applied.
#   tests/bench/lynis.sh                 all hosts of inventories/lab/hosts.yml
#   tests/bench/lynis.sh edge1 db1       some hosts
#   LYNIS_MIN=80 tests/bench/lynis.sh    exit 1 if a host scores below LYNIS_MIN
# Env: LAB_INVENTORY (default inventories/lab/hosts.yml), LAB_VAULT_PASS
# (default .lab/vault-pass: the lab's group_vars read the vault), LYNIS_REPORT_DIR
# (default .lab/lynis: each host's report, log, suggestions and the points it
# lost per test are kept there).
#
# Hosts that are containers are audited with tests/bench/lynis-container.prf
# on top of the default profile: it skips only the checks that look at the
# Docker host's kernel (kernel-global sysctls, USB, audit, MAC); the file says
# why for each. Other hosts get the default profile alone.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
export PATH="$repo/.venv/bin:$PATH" ANSIBLE_CONFIG="$repo/ansible.cfg" ANSIBLE_NOCOLOR=1
inventory="${LAB_INVENTORY:-inventories/lab/hosts.yml}"
outdir="${LYNIS_REPORT_DIR:-$repo/.lab/lynis}"
min="${LYNIS_MIN:-0}"
pattern="${*:-all}"
pattern="${pattern// /:}"
profile=/etc/lynis/socialsphere-container.prf
mkdir -p "$outdir"

[[ -f "$inventory" ]] || { echo "no lab inventory at $inventory: run lab/labctl up" >&2; exit 2; }
vault_pass="${LAB_VAULT_PASS:-$repo/.lab/vault-pass}"
vault_args=()
[[ -f "$vault_pass" ]] && vault_args=(--vault-password-file "$vault_pass")
on_hosts() { ansible "$pattern" -i "$inventory" "${vault_args[@]}" -b "$@" >/dev/null; }

# Lynis from the distribution archive, and the container profile (used only
# where systemd-detect-virt says the host is a container).
on_hosts -m ansible.builtin.apt -a "name=lynis state=present"
on_hosts -m ansible.builtin.copy -a "src=$repo/tests/bench/lynis-container.prf dest=$profile owner=root group=root mode=0600"

# Audit in parallel; keep the report and the log on the host, fetch both.
on_hosts -m ansible.builtin.shell -a "profile=''; if systemd-detect-virt --quiet --container; then profile='--profile $profile'; fi;
  lynis audit system --quick --no-colors --cronjob \$profile --report-file /var/log/lynis-report.dat --logfile /var/log/lynis.log"
for f in lynis-report.dat lynis.log; do
  on_hosts -m ansible.builtin.fetch -a "src=/var/log/$f dest=$outdir/{{ inventory_hostname }}.${f##*.} flat=true"
done

status=0
printf '%-10s %-8s %s\n' HOST INDEX "POINTS (scored/possible)"
for f in "$outdir"/*.dat; do
  host="$(basename "$f" .dat)"
  if [[ "$pattern" != all ]] && [[ ":$pattern:" != *":$host:"* ]]; then continue; fi
  idx="$(sed -n 's/^hardening_index=//p' "$f")"
  grep '^suggestion\[\]=' "$f" | cut -d'|' -f1,2 | sed 's/^suggestion\[\]=//' >"$outdir/$host.suggestions"
  # Points lost per test (from Lynis' own log), largest first.
  awk '/Performing test ID/ { t = $0; sub(/.*test ID /, "", t); sub(/ .*/, "", t) }
       match($0, /partial number of hardening points \([0-9]+ of [0-9]+\)/) {
         split(substr($0, RSTART, RLENGTH), a, /[( ]/); lost[t] += a[9] - a[7] }
       match($0, /Currently having [0-9]+ points \(out of [0-9]+\)/) {
         split(substr($0, RSTART, RLENGTH), b, /[( )]/); pts = b[3] "/" b[8] }
       END { for (t in lost) printf "%3d %s\n", lost[t], t | "sort -rn"; close("sort -rn"); print pts > "/dev/stderr" }' \
    "$outdir/$host.log" >"$outdir/$host.lost" 2>"$outdir/$host.points"
  printf '%-10s %-8s %s\n' "$host" "${idx:-?}" "$(cat "$outdir/$host.points")"
  if [[ -z "$idx" || "$idx" -lt "$min" ]]; then status=1; fi
done
echo "reports, logs, suggestions and lost points per test (<host>.lost): $outdir"
exit "$status"
