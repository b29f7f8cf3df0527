"""Build the Cython sources in ``_native/`` into extension modules of the ``engine`` package.

Each ``_native/NAME.pyx`` becomes ``engine._NAME`` (private; ``engine`` re-exports a plain
Python API). ``pip install -e .`` runs this on a fresh machine.
"""

from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent

extensions = [
    Extension(
        f"engine._{pyx.stem}",
        [str(pyx.relative_to(HERE))],
        extra_compile_args=["-O3"],
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
