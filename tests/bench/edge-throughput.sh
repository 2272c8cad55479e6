#!/usr/bin/env bash
# Edge-path throughput vs. one Gunicorn, in the lab, on this machine.
#   tests/bench/edge-throughput.sh [path] [seconds] [connections]
# Runs wrk (keep-alive, --latency) twice against a representative read endpoint:
#   1. through the whole edge path: VIP -> Nginx (TLS) -> HAProxy -> Gunicorn (all app hosts)
#   2. straight to one Gunicorn: http://<first app host>:8000
# and prints req/s, p50 and p99 for both and the ratios edge/direct.
# Traffic goes only to lab addresses (the VIP and an app host), bounded in time.
# The lab gateway (this machine) is exempt from HAProxy's per-IP request/connection
# limits (inventories/lab/group_vars/edge/vars.yml), so the edge run is not 429'd.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
path="${1:-/api/v1/plans}"
seconds="${2:-15}"
conns="${3:-32}"
threads="${BENCH_THREADS:-2}"
inventory="${LAB_INVENTORY:-$repo/inventories/lab/hosts.yml}"

command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 2; }
((seconds <= 120)) || { echo "at most 120 s per run" >&2; exit 2; }

vip=$(sed -n 's/^ *lab_vip: *//p' "$inventory" | head -1)
app=$(awk '/^    app:/{f=1} f && /ansible_host:/{print $2; exit}' "$inventory")
domain=$(sed -n 's/^socialsphere_domain: *//p' "$repo/inventories/lab/group_vars/all/vars.yml")
[[ -n "$vip" && -n "$app" && -n "$domain" ]] || { echo "cannot read the lab inventory ($inventory)" >&2; exit 2; }

run() {  # label url [extra wrk args]
  local label=$1 url=$2; shift 2
  local out rps p50 p99
  out=$(wrk -t"$threads" -c"$conns" -d"${seconds}s" --latency "$@" "$url")
  rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
  p50=$(awk '$1=="50%"{print $2}' <<<"$out")
  p99=$(awk '$1=="99%"{print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx or 3xx responses:/{print $NF}' <<<"$out")
  errors=$(awk '/Socket errors:/{print}' <<<"$out")
  printf '%-8s %-45s %10s req/s  p50 %8s  p99 %8s  non-2xx %s %s\n' \
    "$label" "$url" "$rps" "$p50" "$p99" "${non2xx:-0}" "$errors"
  echo "$rps $p50 $p99"
}
to_ms() { awk -v v="$1" 'BEGIN{ if (v ~ /us$/) {sub(/us$/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v} else if (v ~ /s$/) {sub(/s$/,"",v); print v*1000} else print v }'; }

echo "# edge-throughput: wrk -t$threads -c$conns -d${seconds}s --latency, path $path, $(date -u +%FT%TZ)"
edge=$(run edge "https://$vip$path" -H "Host: $domain")
direct=$(run direct "http://$app:8000$path")
echo "$edge" | head -1; echo "$direct" | head -1
read -r e_rps e_p50 e_p99 <<<"$(echo "$edge" | tail -1)"
read -r d_rps d_p50 d_p99 <<<"$(echo "$direct" | tail -1)"
awk -v er="$e_rps" -v dr="$d_rps" -v e50="$(to_ms "$e_p50")" -v d50="$(to_ms "$d_p50")" \
    -v e99="$(to_ms "$e_p99")" -v d99="$(to_ms "$d_p99")" 'BEGIN{
  printf "ratio edge/direct: throughput %.2f, p50 %.2fx (%.2f vs %.2f ms), p99 %.2fx (%.2f vs %.2f ms)\n",
    er/dr, e50/d50, e50, d50, e99/d99, e99, d99 }'
