"""Loading the CM-BERT / MMSA feature pickles without running what they hold.

A pickle is a program: `pickle.load` imports and calls whatever globals the file names, so a
tampered `aligned_50.pkl` could run any command. `SafeUnpickler` resolves only the numpy
functions that rebuild arrays, dtypes and scalars (under numpy 1.x spellings `numpy.core.*` and
2.x `numpy._core.*`), and each is a checking wrapper: numpy trusts the dtype state and byte
counts a pickle gives it, so a forged dtype can make it read file bytes as object pointers, and
shared references can make a few hundred bytes expand to 10^12 elements. Plain containers (dict,
list, tuple, str, numbers) are pickle opcodes and need no global. Everything is checked before
numpy sees it; what a check refuses raises `UnsafePickleError` naming the file.
"""

import pickle
import reprlib
from pathlib import Path

import numpy as np

from dataset_script.errors import DataError

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

# Plain numbers and strings, plus object arrays: numpy pickles those as a list of separately
# pickled elements (each one goes through `find_class` and the final walk), never as raw bytes,
# and MMSA stores `id` / `raw_text` that way. The danger with object arrays is a dtype whose
# object flags were rewritten by `__setstate__` (numpy would then copy raw file bytes in as
# pointers), which `_check_dtype_state` refuses. Structured, subarray, datetime, complex and
# void dtypes are never needed.
_KINDS = "biufUSO"
_NEEDS_INIT = 0x08  # numpy versions differ on whether `U` sets it; it only asks for zeroed memory
# Error messages quote values from the file: shortened, but long enough to show a whole dtype state.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxtuple, _REPR.maxstring, _REPR.maxother = 3, 10, 60, 60
_repr = _REPR.repr
# Real files nest dict > dict > object array > array; anything deeper is not a feature pickle.
MAX_DEPTH = 8


class UnsafePickleError(DataError, pickle.UnpicklingError):
    """The pickle asks for more than numpy arrays and plain containers need; refused before it was built."""


class SafeUnpickler(pickle._Unpickler):
    """`pickle.Unpickler` that only reconstructs numpy arrays of plain dtypes and plain containers.

    The pure-Python unpickler, because its `BUILD` opcode (`__setstate__`) can be checked: dtypes and
    arrays take their real content from it. Array bytes (object-array elements counted as one each)
    may not add up to more than the file holds, nor may the loaded object once shared references are
    expanded; containers nest at most `MAX_DEPTH` deep.

    Args:
        file: binary file object to read from.
        path (`str`): file name used in error messages.
        size (`int`): the file's size in bytes.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, path: str, size: int):
        super().__init__(file)
        self.path, self.size = path, size
        self._bytes_left = size
        self._dtypes = {}  # id -> dtype made by `_dtype`, kept alive so ids stay unique
        self._unbuilt = {}  # id -> array from `_reconstruct` awaiting its one BUILD
        self._allowed = {("numpy", "ndarray"): self._ndarray, ("numpy", "dtype"): self._dtype, ("_codecs", "encode"): self._encode}
        for package in ("numpy.core", "numpy._core"):
            self._allowed[(f"{package}.multiarray", "_reconstruct")] = self._reconstruct
            self._allowed[(f"{package}.multiarray", "scalar")] = self._scalar
            self._allowed[(f"{package}.numeric", "_frombuffer")] = self._frombuffer  # protocol 5
        for builtins in ("__builtin__", "builtins"):  # protocol <= 2 writes b"" (an empty array's data) as bytes()
            self._allowed[(builtins, "bytes")] = self._empty_bytes

    def refuse(self, what: str) -> UnsafePickleError:
        return UnsafePickleError(f"{self.path}: refused {what} (a pickle can run arbitrary code: check where this file came from)")

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise self.refuse(f"to load global '{module}.{name}'; only numpy arrays and plain containers are allowed") from None

    def load(self):
        data = super().load()
        self._check_tree(data)
        return data

    def _take(self, nbytes: int, what: str) -> None:
        self._bytes_left -= nbytes
        if self._bytes_left < 0:
            raise self.refuse(f"{what}: its arrays declare more bytes than the {self.size} bytes the file holds")

    def _dtype(self, spec, align=False, copy=True):
        """`numpy.dtype(spec, False, True)` for a plain numeric or string spec, as numpy pickles it."""
        dtype = np.dtype(spec) if isinstance(spec, str) and spec.isascii() else None
        if dtype is None or dtype.kind not in _KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise self.refuse(f"dtype {_repr(spec)}; only bool, integer, float, string and object dtypes are allowed")
        if (align, copy) != (False, True):  # copy=False would hand out (and let BUILD rewrite) numpy's shared dtype
            raise self.refuse(f"dtype arguments (align={_repr(align)}, copy={_repr(copy)})")
        dtype = np.dtype(spec, False, True)
        self._dtypes[id(dtype)] = dtype
        return dtype

    def _check_dtype_state(self, dtype: np.dtype, state) -> None:
        """The state must be numpy's own for this dtype in either byte order: no forged flags, sizes or fields."""
        if isinstance(state, tuple) and len(state) == 8 and type(state[7]) is int:
            for order in "<>":
                expected = dtype.newbyteorder(order).__reduce__()[2]
                if state[:7] == expected[:7] and state[7] | _NEEDS_INIT == expected[7] | _NEEDS_INIT:
                    return
        raise self.refuse(f"dtype state {_repr(state)} for {_repr(dtype.str)}; it is not numpy's own for that dtype")

    def _known_dtype(self, dtype) -> np.dtype:
        if not isinstance(dtype, np.dtype) or self._dtypes.get(id(dtype)) is not dtype:
            raise self.refuse(f"array dtype {_repr(dtype)}; it must be a dtype the pickle built with numpy.dtype")
        return dtype

    def _ndarray(self, *args):
        """What `numpy.ndarray` resolves to: `_reconstruct`'s first argument, never to be called from the pickle."""
        raise self.refuse("to call numpy.ndarray (it could allocate any shape)")

    def _reconstruct(self, subtype, shape, dtype):
        """The empty array that numpy's pickles make before filling it with BUILD."""
        if subtype != self._ndarray or shape != (0,) or dtype not in (b"b", "b"):
            raise self.refuse(f"array reconstruction ({_repr(subtype)}, {_repr(shape)}, {_repr(dtype)}); numpy writes (ndarray, (0,), b'b')")
        array = _multiarray._reconstruct(np.ndarray, (0,), b"b")
        self._unbuilt[id(array)] = array
        return array

    def _check_array_state(self, state) -> None:
        """(version 1, shape, dtype, fortran order, data): a list of elements for object arrays, else exact bytes."""
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1 and isinstance(state[3], int)):
            raise self.refuse(f"array state of {type(state).__name__}; numpy writes (1, shape, dtype, is_fortran, data)")
        _, shape, dtype, _, data = state
        count = self._count(shape)
        dtype = self._known_dtype(dtype)
        if dtype.hasobject:
            if type(data) is not list or len(data) != count:
                raise self.refuse(f"object array data of {type(data).__name__}; numpy writes a list of its {count} elements")
            self._take(count, f"an object array of shape {_repr(shape)}")
        else:
            if type(data) is not bytes or len(data) != count * dtype.itemsize:
                raise self.refuse(f"array data of {type(data).__name__}; expected {count * dtype.itemsize} bytes for shape {_repr(shape)} of {dtype.str}")
            self._take(len(data), f"an array of shape {_repr(shape)}")

    def _count(self, shape) -> int:
        if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
            raise self.refuse(f"array shape {_repr(shape)}")
        count = 1
        for n in shape:
            count *= n
        if count > self.size:  # checked apart from the bytes: items of size 0 take no bytes but are still iterated
            raise self.refuse(f"an array of shape {_repr(shape)}: more elements than the {self.size} bytes the file holds")
        return count

    def _frombuffer(self, buffer, dtype, shape, order):
        """Protocol 5 arrays: the bytes follow in the file, read-only as `bytes` or writable as `bytearray`."""
        dtype = self._known_dtype(dtype)
        count = self._count(shape)
        if dtype.hasobject or type(buffer) not in (bytes, bytearray) or len(buffer) != count * dtype.itemsize or order not in ("C", "F"):
            raise self.refuse(f"buffer array of {dtype.str}, shape {_repr(shape)}, order {_repr(order)} from a {type(buffer).__name__}")
        self._take(len(buffer), f"an array of shape {_repr(shape)}")
        return _numeric._frombuffer(buffer, dtype, shape, order)

    def _scalar(self, dtype, data=None):
        """A numpy scalar: `itemsize` bytes, or for the object dtype the pickled object itself."""
        dtype = self._known_dtype(dtype)
        if not dtype.hasobject and (type(data) is not bytes or len(data) != dtype.itemsize):
            raise self.refuse(f"scalar data for {dtype.str}; expected {dtype.itemsize} bytes")
        self._take(dtype.itemsize, f"a scalar of {dtype.str}")
        return _multiarray.scalar(dtype, data)

    def _encode(self, text, encoding="utf-8", errors="strict"):
        """`_codecs.encode(text, "latin1")`: how protocol <= 2 pickles store array bytes, and nothing else."""
        if type(text) is not str or encoding not in ("latin1", "latin-1") or errors != "strict":
            raise self.refuse(f"_codecs.encode({type(text).__name__}, {_repr(encoding)}); numpy only writes the 'latin1' encoding of a str")
        return text.encode("latin1")

    def _empty_bytes(self, *args):
        if args:  # bytes(n) would allocate n bytes the file does not hold
            raise self.refuse(f"bytes{_repr(args)}; only bytes() is allowed")
        return b""

    def load_build(self):
        """BUILD (`__setstate__`) only on a dtype or a fresh array made here, with numpy's own kind of state."""
        state, inst = self.stack[-1], self.stack[-2]
        if isinstance(inst, np.dtype):
            self._check_dtype_state(self._known_dtype(inst), state)
        elif self._unbuilt.pop(id(inst), None) is inst:  # at most once: rebuilding frees memory views still use
            self._check_array_state(state)
        else:
            raise self.refuse(f"to set the state of a {type(inst).__name__}")
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build

    # Items go only into lists and dicts: into an array (`ndarray.__setitem__`) numpy would expand whatever
    # shared nested lists they hold. Dict keys are atoms: hashing a tuple hashes its items, and shared nested
    # tuples would never finish; for the same reason there are no sets (feature pickles hold none).
    def _check_target(self, target, kind: type) -> None:
        if type(target) is not kind:
            raise self.refuse(f"to add items to a {type(target).__name__}")

    def _check_keys(self, keys) -> None:
        for key in keys:
            if key is not None and not isinstance(key, (str, bytes, int, float, np.generic)):
                raise self.refuse(f"a dict key of type {type(key).__name__}")

    def load_append(self):
        self._check_target(self.stack[-2], list)
        super().load_append()

    def load_appends(self):  # the target is below the MARK
        self._check_target(self.metastack[-1][-1], list)
        super().load_appends()

    def load_setitem(self):
        self._check_target(self.stack[-3], dict)
        self._check_keys([self.stack[-2]])
        super().load_setitem()

    def load_setitems(self):
        self._check_target(self.metastack[-1][-1], dict)
        self._check_keys(self.stack[::2])
        super().load_setitems()

    def load_dict(self):  # protocol 0's MARK key value ... DICT
        self._check_keys(self.stack[::2])
        super().load_dict()

    def load_set(self):
        raise self.refuse("a set; feature pickles hold none")

    dispatch[pickle.APPEND[0]] = load_append
    dispatch[pickle.APPENDS[0]] = load_appends
    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.DICT[0]] = load_dict
    dispatch[pickle.EMPTY_SET[0]] = dispatch[pickle.ADDITEMS[0]] = dispatch[pickle.FROZENSET[0]] = load_set

    def _check_tree(self, data) -> None:
        """Every container item counts once per path to it; a real file holds at least one byte per item."""
        budget, stack = self.size - 1, [(data, 0)]
        while stack:
            item, depth = stack.pop()
            if item is None or isinstance(item, (bool, int, float, str, bytes, bytearray, np.generic)):
                continue
            if isinstance(item, np.ndarray):
                if not item.dtype.hasobject:
                    continue
                children = item.ravel()
            elif isinstance(item, dict):
                children = [*item.keys(), *item.values()]
            elif isinstance(item, (list, tuple)):
                children = item
            else:
                raise self.refuse(f"a loaded {type(item).__name__}; only numpy arrays and plain containers are allowed")
            if depth == MAX_DEPTH:
                raise self.refuse(f"containers nested deeper than {MAX_DEPTH}")
            budget -= len(children)
            if budget < 0:
                raise self.refuse(f"a pickle of more items than its {self.size} bytes hold (shared references expand it)")
            stack.extend((child, depth + 1) for child in children)


def safe_load(path: str | Path):
    """Unpickles `path` with `SafeUnpickler`; `UnsafePickleError` for anything beyond plain numpy arrays and containers."""
    with open(path, "rb") as f:
        return SafeUnpickler(f, str(path), Path(path).stat().st_size).load()


__all__ = ["SafeUnpickler", "UnsafePickleError", "safe_load"]
