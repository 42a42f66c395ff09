#!/usr/bin/env bash
# Set up the venv of the chosen PaddlePaddle stack if needed (PSSL_STACK=paddle2|
# paddle3, see scripts/setup_env.sh), then run the test suite (CPU, no network).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$(bash "$ROOT/scripts/setup_env.sh" | tail -n 1)"
cd "$ROOT"
exec "$PY" -m pytest -q -p no:cacheprovider tests "$@"
