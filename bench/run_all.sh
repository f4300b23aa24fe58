#!/usr/bin/env bash
# Runs the benchmarks; each prints its figures. Record the results in docs/benchmarks.md with date and machine.
# The search-at-scale run loads ~2.8 million resources (about 30-60 min and ~16 GB of disk); set
# SCALE_PATIENTS to change its size (10000 is the issue's figure).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || apt-get install -y wrk >/dev/null 2>&1 || { echo "wrk is needed: apt-get install wrk"; exit 1; }
.venv/bin/python bench/validate_speed.py
.venv/bin/python bench/index_speed.py
.venv/bin/python bench/rest_crud.py --workers 1
.venv/bin/python bench/rest_crud.py --workers 2
.venv/bin/python bench/search_scale.py --patients "${SCALE_PATIENTS:-10000}" --extra-patients "${SCALE_EXTRA:-100000}" \
    --data-dir "${SCALE_DIR:-/tmp/infirmary-scale}"
.venv/bin/python bench/ingest.py --patients "${INGEST_PATIENTS:-1000}" --clients 1 4 --workers 2 --profile
.venv/bin/python bench/everything.py
.venv/bin/python bench/auth_overhead.py
.venv/bin/python bench/auth_store.py
.venv/bin/python bench/subscriptions.py
.venv/bin/python bench/scheduling.py --data-dir "${SCHED_DIR:-/tmp/infirmary-scheduling}"
.venv/bin/python bench/hl7_oru.py --messages 2000 --connections 1 8
.venv/bin/python bench/hl7_inprocess.py --messages 500 --shape lab
.venv/bin/python bench/hl7_inprocess.py --messages 500 --shape small --in-flight 1
.venv/bin/python bench/commit_floor.py --messages 600
# bench/bulk_export.py URL runs against a running server (e.g. a store kept by bench/ingest.py --keep)
