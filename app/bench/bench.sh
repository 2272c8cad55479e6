#!/usr/bin/env bash
# Benchmark GET/POST /api/v1/posts under Gunicorn + PostgreSQL on 127.0.0.1 (see bench.py).
# Usage: app/bench/bench.sh [--duration 10] [--connections 32] [--configs sync:5,gthread:2x4]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
py="${here}/.venv/bin/python"
[ -x "$py" ] || { echo "run 'make -C app venv' first" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 2; }
exec "$py" "${here}/bench/bench.py" "$@"
