#!/usr/bin/env bash
# Edge-path throughput vs. one Gunicorn, in the lab, on this machine.
#   tests/bench/edge-throughput.sh [path] [seconds] [connections]
#   RUNS=3 BENCH_THREADS=2 LAB_INVENTORY=inventories/lab/hosts-<lab>.yml tests/bench/edge-throughput.sh
# Runs wrk (keep-alive, --latency) RUNS times (default 3) against a representative
# read endpoint, alternating:
#   edge:   through the whole edge path: VIP -> Nginx (TLS) -> HAProxy -> Gunicorn (all app hosts)
#   direct: straight to one Gunicorn: http://<first app host>:8000
# and prints req/s, p50 and p99 of every run, their medians and the ratios
# edge/direct of the medians, with the load average before and after.
# Traffic goes only to lab addresses (the VIP and an app host), bounded in time.
# The lab gateway (this machine) is exempt from HAProxy's per-IP request/connection
# limits (inventories/lab/group_vars/edge/vars.yml), so the edge run is not 429'd.
# Gunicorn only admits the edge hosts (ufw): for the direct runs the script adds a
# rule admitting this machine (the lab gateway) on that app host and deletes it on exit.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
path="${1:-/api/v1/plans}"
seconds="${2:-15}"
conns="${3:-32}"
threads="${BENCH_THREADS:-2}"
runs="${RUNS:-3}"
inventory="${LAB_INVENTORY:-$repo/inventories/lab/hosts.yml}"

command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 2; }
((seconds <= 120)) || { echo "at most 120 s per run" >&2; exit 2; }
((runs >= 1 && runs <= 9)) || { echo "RUNS must be 1..9" >&2; exit 2; }

vip=$(sed -n 's/^ *lab_vip: *//p' "$inventory" | head -1)
gateway=$(sed -n 's/^ *lab_gateway: *//p' "$inventory" | head -1)
lab=$(sed -n 's/^ *lab_name: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$inventory" | head -1)
app_host=$(awk '/^    app:/{f=1} f && /^        [a-z0-9]+:$/{sub(":","",$1); print $1; exit}' "$inventory")
app=$(awk '/^    app:/{f=1} f && /ansible_host:/{print $2; exit}' "$inventory")
domain=$(sed -n 's/^socialsphere_domain: *//p' "$repo/inventories/lab/group_vars/all/vars.yml")
[[ -n "$vip" && -n "$gateway" && -n "$lab" && -n "$app_host" && -n "$app" && -n "$domain" ]] ||
  { echo "cannot read the lab inventory ($inventory)" >&2; exit 2; }

container="$lab-$app_host"
rule=(allow proto tcp from "$gateway" to "$app" port 8000 comment edge-throughput-bench)
docker exec "$container" ufw insert 1 "${rule[@]}" >/dev/null
trap 'docker exec "$container" ufw delete "${rule[@]}" >/dev/null' EXIT

to_ms() { awk -v v="$1" 'BEGIN{ if (v ~ /us$/) {sub(/us$/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v} else if (v ~ /s$/) {sub(/s$/,"",v); print v*1000} else print v }'; }
median() { sort -g | awk '{a[NR]=$1} END{ if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }

declare -A results
run() {  # label run# url [extra wrk args]
  local label=$1 n=$2 url=$3; shift 3
  local out rps p50 p99 non2xx errors
  out=$(wrk -t"$threads" -c"$conns" -d"${seconds}s" --latency "$@" "$url")
  rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
  p50=$(awk '$1=="50%"{print $2}' <<<"$out")
  p99=$(awk '$1=="99%"{print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx or 3xx responses:/{print $NF}' <<<"$out")
  errors=$(awk '/Socket errors:/{print}' <<<"$out")
  printf '%-6s run %d %-40s %9s req/s  p50 %8s  p99 %8s  non-2xx %s %s\n' \
    "$label" "$n" "$url" "$rps" "$p50" "$p99" "${non2xx:-0}" "$errors"
  results[$label.rps]+="$rps "
  results[$label.p50]+="$(to_ms "$p50") "
  results[$label.p99]+="$(to_ms "$p99") "
}

echo "# edge-throughput: wrk -t$threads -c$conns -d${seconds}s --latency, path $path, $runs runs, $(date -u +%FT%TZ)"
echo "# before: $(uptime)"
for ((n = 1; n <= runs; n++)); do
  run edge "$n" "https://$vip$path" -H "Host: $domain"
  run direct "$n" "http://$app:8000$path"
done
echo "# after:  $(uptime)"
declare -A med
for k in edge.rps edge.p50 edge.p99 direct.rps direct.p50 direct.p99; do
  med[$k]=$(tr ' ' '\n' <<<"${results[$k]}" | sed '/^$/d' | median)
done
printf 'median edge:   %s req/s  p50 %s ms  p99 %s ms\n' "${med[edge.rps]}" "${med[edge.p50]}" "${med[edge.p99]}"
printf 'median direct: %s req/s  p50 %s ms  p99 %s ms\n' "${med[direct.rps]}" "${med[direct.p50]}" "${med[direct.p99]}"
awk -v er="${med[edge.rps]}" -v dr="${med[direct.rps]}" -v e50="${med[edge.p50]}" -v d50="${med[direct.p50]}" \
    -v e99="${med[edge.p99]}" -v d99="${med[direct.p99]}" 'BEGIN{
  printf "ratio edge/direct (medians): throughput %.2f, p50 %.2fx, p99 %.2fx\n", er/dr, e50/d50, e99/d99 }'
