#!/usr/bin/env bash
# Set up the venv of the chosen PaddlePaddle stack if needed (PSSL_STACK=paddle3,
# the default, or paddle2; PYTHON; see scripts/setup_env.sh and docs/install.md),
# then run the embedded default job: the controlled PSSL benchmark at default
# size (CPU, no download; about 1,900 CPU s: about 18 min on 2 idle cores, estimated, see docs/benchmark.md).
# Extra arguments go to tools/benchmark_pssl.py (e.g. --resume, -c configs/benchmark/full.yml).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$(bash "$ROOT/scripts/setup_env.sh" | tail -n 1)"
cd "$ROOT"
exec "$PY" tools/benchmark_pssl.py --out output/benchmark "$@"
