"""Loading the CM-BERT / MMSA feature pickles without running what they hold.

A pickle is a program: `pickle.load` imports and calls whatever globals the file names, so a
tampered `aligned_50.pkl` could run any command. `SafeUnpickler` resolves only the globals that
numpy arrays, dtypes and scalars need (under numpy 1.x spellings `numpy.core.*` and 2.x
`numpy._core.*`) and refuses any other before it is called; plain containers (dict, list, tuple,
str, numbers) are pickle opcodes and need no global.
"""

import codecs
import pickle
from pathlib import Path

import numpy as np

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

# Both module spellings map to the objects of the installed numpy, so a pickle written by numpy
# 1.x loads under 2.x (and back) without touching the deprecated `numpy.core` alias.
_ALLOWED = {}
for _package in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_package}.multiarray", "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED[(f"{_package}.multiarray", "scalar")] = _multiarray.scalar
    _ALLOWED[(f"{_package}.numeric", "_frombuffer")] = _numeric._frombuffer  # protocol 5
_ALLOWED[("numpy", "ndarray")] = np.ndarray
_ALLOWED[("numpy", "dtype")] = np.dtype
_ALLOWED[("_codecs", "encode")] = codecs.encode  # array bytes in protocol <= 2


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global outside the numpy allow-list; nothing of it was executed."""


class SafeUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that only reconstructs numpy arrays and plain containers.

    Args:
        file: binary file object to read from.
        path (`str`): file name used in error messages.
    """

    def __init__(self, file, path: str):
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.path}: refused to load global '{module}.{name}'; only numpy arrays and plain "
                "containers are allowed (a pickle can run arbitrary code: check where this file came from)"
            ) from None


def safe_load(path: str | Path):
    """Unpickles `path` with `SafeUnpickler`; `UnsafePickleError` on any other global."""
    with open(path, "rb") as f:
        return SafeUnpickler(f, str(path)).load()


__all__ = ["SafeUnpickler", "UnsafePickleError", "safe_load"]
