#!/usr/bin/env bash
# Set up this machine, generate a corpus of battle logs and ingest it into
# PostgreSQL with two worker processes; prints the run's summary.
# CORPUS_SIZE (default 2000) sets how many logs to generate.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
corpus=var/corpus
if [ ! -d "$corpus" ]; then
    .venv/bin/tzr-corpus "$corpus" --count "${CORPUS_SIZE:-2000}" --seed 1
fi
.venv/bin/tzr-ingest --workers 2 "$corpus"
