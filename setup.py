"""Build the Cython sources in ``_native/`` into extension modules of the ``engine`` package.

Each ``_native/NAME.pyx`` becomes ``engine._NAME`` (private; ``engine`` re-exports a plain
Python API). ``pip install -e .`` runs this on a fresh machine.
"""

from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent

#: Extra C sources and flags per module. ``logicalsum`` and ``rangecopy`` link the
#: vendored LMDB (_native/lmdb/README.md) with hidden symbols, so it never meets py-lmdb's
#: copy; its warnings are upstream's and silenced (-w).
VENDORED_LMDB = {
    "sources": ["_native/lmdb/mdb.c", "_native/lmdb/midl.c"],
    "include_dirs": ["_native/lmdb"],
    "extra_compile_args": ["-fvisibility=hidden", "-w"],
}
NATIVE_EXTRAS = {"logicalsum": VENDORED_LMDB, "rangecopy": VENDORED_LMDB}

#: The C helpers (``_native/*.h``, each included with ``cdef extern from "name.h"``) and the
#: Cython parts (``.pxd`` declarations, ``.pxi`` pieces of one module). Every module depends
#: on all of them (a superset, simpler than tracking who includes what), so editing one
#: rebuilds whatever might include it, and the sdist carries them.
NATIVE_HEADERS = sorted(
    str(path.relative_to(HERE))
    for pattern in ("*.h", "*.pxd", "*.pxi")
    for path in (HERE / "_native").glob(pattern)
)

extensions = [
    Extension(
        f"engine._{pyx.stem}",
        [str(pyx.relative_to(HERE)), *NATIVE_EXTRAS.get(pyx.stem, {}).get("sources", [])],
        include_dirs=["_native", *NATIVE_EXTRAS.get(pyx.stem, {}).get("include_dirs", [])],
        depends=NATIVE_HEADERS,
        extra_compile_args=["-O3", *NATIVE_EXTRAS.get(pyx.stem, {}).get("extra_compile_args", [])],
    )
    for pyx in sorted((HERE / "_native").glob("*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    )
)
