#!/usr/bin/env bash
# Create the venv of one PaddlePaddle stack (Python 3.11) and install its
# measured requirements; re-runs are no-ops unless a requirements file changed.
# Prints the venv's python path on the last line.
#   PSSL_STACK=paddle2  PaddlePaddle 2.6.2, requirements-paddle2.txt, .venv/ (default)
#   PSSL_STACK=paddle3  PaddlePaddle 3.3.1, requirements-paddle3.txt, .venv-paddle3/
# PSSL_VENV overrides the venv folder, PYTHON the interpreter that makes it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${PSSL_STACK:-paddle2}"
case "$STACK" in
  paddle2) DEFAULT_VENV="$ROOT/.venv" ;;
  paddle3) DEFAULT_VENV="$ROOT/.venv-paddle3" ;;
  *) echo "error: PSSL_STACK=$STACK: expected paddle2 or paddle3" >&2; exit 2 ;;
esac
REQ="$ROOT/requirements-$STACK.txt"
VENV="${PSSL_VENV:-$DEFAULT_VENV}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PY="$candidate"; break; fi
  done
fi
[ -n "$PY" ] || { echo "error: no python3 found; install Python 3.11" >&2; exit 1; }

STAMP="$VENV/.pssl-installed"
WANT="$(cat "$REQ" "$ROOT/requirements.txt" "$ROOT/requirements-nodeps.txt" "$ROOT/setup.py" | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$VENV/bin/python" ]; then
  echo "$VENV/bin/python"; exit 0
fi
echo "setting up $VENV ($STACK) with $("$PY" --version 2>&1) (a few minutes the first time)" >&2
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >&2
"$VENV/bin/python" -m pip install -q -r "$REQ" >&2
# interpretdl 0.8.0 pins scikit-learn<=0.24 (no Python 3.11 wheel): its real
# needs are in requirements.txt, so install it without dependencies.
"$VENV/bin/python" -m pip install -q --no-deps -r "$ROOT/requirements-nodeps.txt" >&2
"$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT" >&2
echo "$WANT" > "$STAMP"
echo "$VENV/bin/python"
