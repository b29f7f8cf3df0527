#!/usr/bin/env bash
# The main job: install what is needed, then run Tessera on its embedded defaults.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec .venv/bin/tessera "${@:-demo}"
