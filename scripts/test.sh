#!/usr/bin/env bash
# The test job: install Tessera with its test dependencies, lint, run the test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh" test
cd "$ROOT"
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
