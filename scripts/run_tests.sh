#!/usr/bin/env bash
# Set up the venv of the chosen PaddlePaddle stack if needed (PSSL_STACK=paddle3,
# the default, or paddle2; PYTHON; see scripts/setup_env.sh and docs/install.md),
# then run the test suite (CPU, no network), or the test files and pytest options
# given (bash scripts/run_tests.sh tests/test_docs.py -x).
# The suite writes several GB of models and checkpoints under its temporary
# folder: that folder is removed when the run ends, unless PSSL_KEEP_TEST_TMP=1
# (or you pass your own --basetemp).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$(bash "$ROOT/scripts/setup_env.sh" | tail -n 1)"
cd "$ROOT"
extra=()
if [[ " $* " != *" --basetemp"* ]]; then
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/pssl-tests.XXXXXX")"
  if [ "${PSSL_KEEP_TEST_TMP:-0}" != 1 ]; then
    trap 'rm -rf "$tmp"' EXIT
  else
    echo "run_tests: keeping the tests' files in $tmp" >&2
  fi
  extra=(--basetemp "$tmp/t")
fi
"$PY" -m pytest -q -p no:cacheprovider "${extra[@]}" "$@"   # no path given: tests/ (pytest.ini)
