#!/usr/bin/env bash
# Create .venv and install Tessera into it (editable, compiling _native/ once), then keep the
# native modules current at the cost of one `find` per call. Sourced by run.sh and test.sh;
# needs only python3 (>= 3.10) and a C compiler, both on a fresh machine of this project's kind.
#
# - Install stamp (.venv/.tessera-install-HASH): pyproject.toml and setup.py.
#   Missing -> `pip install -e`, which compiles every native module: the one compile of a
#   first run. Its objects are then seeded into build/ so later rebuilds are incremental.
# - Extras stamp (.venv/.tessera-extras-HASH-EXTRA): the other script's extra (run.sh has
#   none, test.sh "test") installed on top from the package's metadata, with no rebuild.
# - Native stamp (.venv/.tessera-native): path, size and mtime of every native source.
#   Changed -> `setup.py build_ext --inplace`, which recompiles only the changed modules.
#   Unchanged -> nothing runs (no Cython or setuptools start-up on every call).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
EXTRAS="${1:-}"
PY="${PYTHON:-python3}"
VENV_PY=.venv/bin/python
NATIVE_STAMP=.venv/.tessera-native

native_sources_stamp() {
  # Sources only: the .c files Cython generates from .pyx are outputs, not inputs.
  {
    find _native \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.h' \
      -o -path '_native/lmdb/*' \) -type f -printf '%p %s %T@\n' | LC_ALL=C sort
    stat -c '%n %s %Y' setup.py
    "$VENV_PY" -c 'import sys; print(sys.version)'
  } | sha256sum | cut -c1-16
}

seed_build_dir() {
  # Copy the in-place modules pip just built into the build/ directory build_ext checks,
  # so its first rebuild compiles only what changed instead of everything.
  "$VENV_PY" - <<'PY'
import shutil
from pathlib import Path

from setuptools import Distribution

build = Distribution().get_command_obj("build")
build.finalize_options()
target = Path(build.build_platlib) / "engine"
target.mkdir(parents=True, exist_ok=True)
for module in Path("engine").glob("_*.so"):
    shutil.copy2(module, target / module.name)
PY
}

if [ ! -x "$VENV_PY" ]; then
  echo "creating .venv (first run)" >&2
  "$PY" -m venv .venv
  "$VENV_PY" -m pip install -q --upgrade pip
fi
build_hash="$(cat pyproject.toml setup.py | sha256sum | cut -c1-16)"
install_stamp=".venv/.tessera-install-$build_hash"          # the package, built and installed
extras_stamp=".venv/.tessera-extras-$build_hash-${EXTRAS:-none}"  # and this extra's deps
if [ -f "$install_stamp" ] && [ ! -f "$extras_stamp" ]; then
  # Installed already (by the other script): only this extra's dependencies are missing.
  # Take them from the installed metadata instead of `pip install -e .[extra]`, which
  # would rebuild every native module for nothing.
  echo "installing the '${EXTRAS}' dependencies" >&2
  "$VENV_PY" - "$EXTRAS" <<'PY' > .venv/.tessera-extra-requirements
import sys
from importlib.metadata import requires

extra = sys.argv[1]
for requirement in requires("tessera") or []:
    spec, _, marker = requirement.partition(";")
    if marker and f'extra == "{extra}"' in marker.replace("'", '"'):
        print(spec.strip())
PY
  if [ -s .venv/.tessera-extra-requirements ]; then
    "$VENV_PY" -m pip install -r .venv/.tessera-extra-requirements >&2
  fi
  touch "$extras_stamp"
fi
if [ ! -f "$install_stamp" ]; then
  echo "building native modules (first run, a few minutes) and installing dependencies" >&2
  # The build requirements go into .venv too, so later incremental rebuilds can run.
  "$VENV_PY" -m pip install "setuptools>=68" wheel "Cython>=3.0" >&2
  "$VENV_PY" -m pip install --no-build-isolation -e ".${EXTRAS:+[$EXTRAS]}" >&2
  seed_build_dir
  native_sources_stamp > "$NATIVE_STAMP"
  touch "$install_stamp" "$extras_stamp"
  echo "native modules built" >&2
elif [ "$(cat "$NATIVE_STAMP" 2>/dev/null)" != "$(native_sources_stamp)" ]; then
  echo "rebuilding the native modules whose sources changed" >&2
  "$VENV_PY" setup.py -q build_ext --inplace >&2
  native_sources_stamp > "$NATIVE_STAMP"
fi
