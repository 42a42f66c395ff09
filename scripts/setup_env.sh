#!/usr/bin/env bash
# Create the venv of one PaddlePaddle stack and install its measured
# requirements; re-runs are no-ops unless a requirements file or the Python
# changed. Prints the venv's python path on the last line.
#   PSSL_STACK=paddle3  PaddlePaddle 3.3.1, Python 3.11-3.13, .venv-paddle3/ (default:
#                       faster label generator, same trainer speed, see docs/install.md)
#   PSSL_STACK=paddle2  PaddlePaddle 2.6.2, Python 3.11-3.12, .venv/
# PSSL_VENV overrides the venv folder, PYTHON the interpreter that makes it.
# Without PYTHON: the venv's own Python if it has one, else the first of
# python3.11, python3.12, python3.13, python3 that runs and that the stack
# supports (3.11 first: every published table was measured there). The one
# chosen, and why, is said in one line on stderr when the venv is made.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${PSSL_STACK:-paddle3}"
case "$STACK" in
  paddle2) DEFAULT_VENV="$ROOT/.venv"; SUPPORTED="3.11 3.12" ;;
  paddle3) DEFAULT_VENV="$ROOT/.venv-paddle3"; SUPPORTED="3.11 3.12 3.13" ;;
  *) echo "error: PSSL_STACK=$STACK: expected paddle2 or paddle3" >&2; exit 2 ;;
esac
REQ="$ROOT/requirements-$STACK.txt"
VENV="${PSSL_VENV:-$DEFAULT_VENV}"

py_version() {  # "3.11" for an interpreter that runs, nothing otherwise (pyenv shims may not)
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}
supported() { [[ " $SUPPORTED " == *" $1 "* ]]; }

PY="${PYTHON:-}"
if [ -n "$PY" ]; then
  PYV="$(py_version "$PY")"
  [ -n "$PYV" ] || { echo "error: PYTHON=$PY: does not run" >&2; exit 2; }
  supported "$PYV" || { echo "error: PYTHON=$PY: Python $PYV; PSSL_STACK=$STACK supports ${SUPPORTED// /, }" >&2; exit 2; }
  WHY="PYTHON=$PY"
elif [ -x "$VENV/bin/python" ] && supported "$(py_version "$VENV/bin/python")"; then
  PY="$VENV/bin/python"; PYV="$(py_version "$PY")"; WHY="the Python $VENV was made with"
else
  for candidate in python3.11 python3.12 python3.13 python3; do
    PYV="$(py_version "$candidate")"
    if [ -n "$PYV" ] && supported "$PYV"; then PY="$candidate"; break; fi
  done
  if [ -z "$PY" ]; then
    hint="or PSSL_STACK=paddle3, which also runs on 3.13"
    [ "$STACK" = paddle3 ] && hint="or set PYTHON to one"
    versions="${SUPPORTED% *}"; versions="${versions// /, } or ${SUPPORTED##* }"
    echo "error: PSSL_STACK=$STACK needs Python $versions; none found on PATH: install python3.11 ($hint)" >&2
    exit 1
  fi
  case "$PYV" in
    3.11) WHY="$PY, the set every published table was measured on" ;;
    *) WHY="$PY: no python3.11 found; the pins for $PYV are in docs/install.md" ;;
  esac
fi

STAMP="$VENV/.pssl-installed"
WANT="$( (cat "$REQ" "$ROOT/requirements.txt" "$ROOT/requirements-nodeps.txt" "$ROOT/setup.py"; echo "python $PYV") \
  | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$VENV/bin/python" ]; then
  echo "$VENV/bin/python"; exit 0
fi
echo "setup_env: $STACK on Python $PYV ($WHY); setting up $VENV (a few minutes the first time)" >&2
if [ -x "$VENV/bin/python" ] && [ "$(py_version "$VENV/bin/python")" != "$PYV" ]; then
  PYBASE="$(py_version "$VENV/bin/python")"
  echo "setup_env: $VENV was made with Python $PYBASE; remaking it with $PYV" >&2
  "$PY" -m venv --clear "$VENV"
elif [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
"$VPY" -m pip install -q --upgrade pip >&2
if [ "${PYV#3.}" -ge 13 ]; then
  # pydensecrf2's sdist builds with its pinned Cython 0.29.36, which does not
  # compile on 3.13: build it with Cython 3 from the venv instead.
  "$VPY" -m pip install -q "Cython>=3.0,<3.3" setuptools wheel >&2
  "$VPY" -m pip install -q --no-build-isolation "$(grep -oE '^pydensecrf2==[^ ;#]+' "$ROOT/requirements.txt")" >&2
fi
"$VPY" -m pip install -q -r "$REQ" >&2
# each of these pins a release that cannot be installed with the rest (see the
# file); their real needs are in requirements.txt
"$VPY" -m pip install -q --no-deps -r "$ROOT/requirements-nodeps.txt" >&2
"$VPY" -m pip install -q --no-deps -e "$ROOT" >&2
echo "$WANT" > "$STAMP"
echo "$VPY"
