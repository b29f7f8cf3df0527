#!/usr/bin/env bash
# The main job: install what is needed, then run `tessera serve` (the DynamoDB-compatible
# endpoint) on its embedded defaults: ./data, file://./backups, 127.0.0.1:8000.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec .venv/bin/tessera "${@:-serve}"
