#!/usr/bin/env bash
# Runs every benchmark; each prints its figures. Record the results in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null 2>&1 || { echo "wrk is needed: apt-get install wrk"; exit 1; }; }
.venv/bin/python bench/rest_crud.py --workers 1
.venv/bin/python bench/rest_crud.py --workers 2
if [ -f bench/validate_speed.py ]; then .venv/bin/python bench/validate_speed.py; fi
