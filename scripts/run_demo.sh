#!/usr/bin/env bash
# Set up .venv if needed, then run the embedded default job (CPU, no download).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$(bash "$ROOT/scripts/setup_env.sh" | tail -n 1)"
cd "$ROOT"
exec "$PY" tools/demo.py "$@"
