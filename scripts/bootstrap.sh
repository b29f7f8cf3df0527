#!/usr/bin/env bash
# Create .venv and install Tessera into it (editable, compiling _native/), once per change
# of the build inputs. Sourced by run.sh and test.sh; needs only python3 (>= 3.10) and a C
# compiler, both on a fresh machine of this project's kind.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
EXTRAS="${1:-}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
stamp_input="$(cat pyproject.toml setup.py; echo "$EXTRAS")"
stamp=".venv/.tessera-install-$(printf '%s' "$stamp_input" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  # The build requirements go into .venv too, so the incremental rebuild below can run.
  .venv/bin/python -m pip install -q "setuptools>=68" wheel "Cython>=3.0"
  .venv/bin/python -m pip install -q --no-build-isolation -e ".${EXTRAS:+[$EXTRAS]}"
  touch "$stamp"
fi
# Recompile changed Cython sources (incremental; a no-op when nothing changed).
.venv/bin/python setup.py -q build_ext --inplace >/dev/null
