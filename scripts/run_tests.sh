#!/usr/bin/env bash
# Set up the venv of the chosen PaddlePaddle stack if needed (PSSL_STACK=paddle3,
# the default, or paddle2; PYTHON; see scripts/setup_env.sh and docs/install.md),
# then run the test suite (CPU, no network).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$(bash "$ROOT/scripts/setup_env.sh" | tail -n 1)"
cd "$ROOT"
exec "$PY" -m pytest -q -p no:cacheprovider tests "$@"
