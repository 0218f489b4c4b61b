"""Loading the pickle inside an insightface `.bin` without trusting it.

Two gates, both before any object a file describes is used:

1. `scan`: every opcode is read with `pickletools.genops` (which only parses, builds nothing) and
   the pickle machine's stack is simulated. Only the opcodes that lists, tuples, bytes, str,
   bools, ints, None and the allow-listed globals need are accepted (no dict, set, float, object
   construction or extension code); nesting deeper than `MAX_DEPTH` (a .bin is 3 deep), more
   than `MAX_LISTS` lists, more than `MAX_OPS` opcodes, more than `MAX_STACK` objects on the
   stack at once, a memo index of `MAX_OPS` or more (the C unpickler sizes its memo table to the
   largest index: one 5-byte `LONG_BINPUT` could ask for gigabytes) and a list changed after it
   was placed in another (the only way to build a structure deeper than the simulation sees) are
   refused. So is every global outside the allow-list. What the load then builds is the bytes and
   str payloads the file holds (at most twice its size, as a protocol-2 bytes object is rebuilt
   from a str) plus at most one small object per opcode; a bytes object referenced many times
   through the memo stays one object (readers must not copy it per reference: rgsyn.data.faces).
2. `_AllowListUnpickler` imports nothing: the few globals found in real files (`_codecs.encode`
   and `bytes()` for bytes in protocol-2 pickles written by Python 3, numpy's bool scalar and
   `dtype` for an `issame` of `numpy.bool_`) are mapped onto small local stand-ins that only
   rebuild bytes and bools.
"""
from __future__ import annotations

import io
import pickle
import pickletools

from rgsyn.errors import DataError

MAX_DEPTH = 16             # nesting of lists/tuples/marks; a .bin is (list of bytes, list of bools): 3
MAX_LISTS = 16             # a .bin holds 2 lists
MAX_OPS = 1_000_000        # opcodes; a .bin takes 2.5 to 11.5 per image (by encoding), and the largest
                           # insightface set (cfp_fp, 14,000 images) ~160,000. Bounds the scan's time
                           # (~3 us an opcode), the memo and the number of objects the load builds.
MAX_STACK = 10_000         # objects on the stack at once; pickle appends in batches of 1,000
SHORT_STR = 64             # str values longer than this are never a module or global name


class _Refused(pickle.UnpicklingError):
    pass


def _latin1_encode(text, encoding="latin1", errors="strict"):
    """`_codecs.encode(text, 'latin1')`: how Python 3 writes bytes in a protocol < 3 pickle."""
    if not isinstance(text, str) or str(encoding).replace("-", "").lower() != "latin1":
        raise _Refused(f"refusing _codecs.encode({type(text).__name__}, {encoding!r}); only "
                       "latin1-encoded text (pickled bytes) is allowed")
    return text.encode("latin1")


def _empty_bytes(*args):
    """`bytes()` / `bytearray()` with no argument: Python 3 writes b'' this way in protocol 2."""
    if args:
        raise _Refused("refusing bytes() with arguments; only the empty bytes object is allowed")
    return b""


class _DType:
    """Stand-in for `numpy.dtype(name, align, copy)`; the pickled state (byte order etc.) is
    irrelevant for a bool and ignored. Names arrive as bytes from Python 2 pickles."""

    def __init__(self, name, *args):
        self.name = name.decode("latin1") if isinstance(name, bytes) else str(name)

    def __setstate__(self, state):
        pass


def _numpy_scalar(dtype, data=None):
    """Stand-in for numpy's `multiarray.scalar(dtype, raw bytes)`: only a bool (`b1`) becomes a
    Python bool; any other dtype is refused (issame never needs one)."""
    if not isinstance(dtype, _DType) or dtype.name not in ("b1", "?", "bool"):
        name = getattr(dtype, "name", type(dtype).__name__)
        raise _Refused(f"refusing a numpy scalar of dtype {name!r}; only bool scalars are allowed")
    if isinstance(data, str):        # Python 3 protocol 0/1 text form
        data = data.encode("latin1")
    if not isinstance(data, (bytes, bytearray)) or len(data) != 1:
        raise _Refused("refusing a numpy bool scalar whose data is not one byte")
    return data[0] != 0


# (module, name) -> local stand-in: the whole allow-list of globals a `.bin` may name
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "bytes"): _empty_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytearray"): _empty_bytes,
    ("__builtin__", "bytearray"): _empty_bytes,
    ("numpy", "dtype"): _DType,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
}


def _allowed(module: str, name: str):
    try:
        return _ALLOWED_GLOBALS[(module, name)]
    except KeyError:
        raise _Refused(f"refusing to load {module}.{name}") from None


class _AllowListUnpickler(pickle.Unpickler):
    """Imports nothing: each global must be on `_ALLOWED_GLOBALS` and resolves to its stand-in."""

    def find_class(self, module, name):
        return _allowed(module, name)


# ------------------------------------------------------------------------- the opcode scan
# The simulated stack holds, per object: an int (the nesting depth of a finished object), a str
# (a short string's value: STACK_GLOBAL takes module and name from the stack), a `_List` (a list
# still open to APPEND), a `_Global`, or `_MARK`. Ints and strs keep the scan's memory at one
# pointer per opcode.
_MARK = object()


class _List:
    __slots__ = ("depth", "closed")

    def __init__(self, depth: int = 1):
        self.depth, self.closed = depth, False


class _Global:
    __slots__ = ()


_GLOBAL = _Global()
_LEAVES = {"NONE", "NEWTRUE", "NEWFALSE", "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1",
           "SHORT_BINBYTES", "BINBYTES", "BINBYTES8", "BYTEARRAY8", "STRING", "BINSTRING",
           "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "EMPTY_TUPLE"}
_TEXT = {"UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}
_PUTS = {"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"}
_GETS = {"GET", "BINGET", "LONG_BINGET"}
_TUPLE_N = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}


def _depth(x) -> int:
    return x if isinstance(x, int) else x.depth if isinstance(x, _List) else 1


class _Scan:
    """The stack machine of `pickle`, tracking only nesting depth, open lists and the memo."""

    def __init__(self):
        self.stack: list = []
        self.memo: list = []         # by index; None where nothing was memoized
        self.marks = 0
        self.lists = 0

    def pop(self):
        if not self.stack or self.stack[-1] is _MARK:
            raise _Refused("malformed pickle: an opcode takes an object from an empty stack")
        x = self.stack.pop()
        if isinstance(x, _List):
            x.closed = True          # now inside another object: it must not grow any more
        return x

    def pop_mark(self) -> list:
        if not self.marks:
            raise _Refused("malformed pickle: an opcode needs a MARK that was never set")
        items = []
        while self.stack[-1] is not _MARK:
            items.append(self.pop())
        self.stack.pop()
        self.marks -= 1
        return items

    def push(self, x) -> None:
        if _depth(x) > MAX_DEPTH:
            raise _Refused(f"refusing objects nested deeper than {MAX_DEPTH} levels (a .bin is 3 deep)")
        if len(self.stack) >= MAX_STACK:
            raise _Refused(f"refusing more than {MAX_STACK} objects on the pickle stack at once")
        self.stack.append(x)

    def open_list(self):
        if not self.stack or not isinstance(self.stack[-1], _List) or self.stack[-1].closed:
            raise _Refused("refusing an APPEND to something that is not a list being built")
        return self.stack[-1]

    def step(self, name: str, arg) -> None:
        if name in _LEAVES:
            self.push(arg if name in _TEXT and len(arg) <= SHORT_STR else 1)
        elif name in _PUTS:
            index = len(self.memo) if name == "MEMOIZE" else arg
            if not 0 <= index < MAX_OPS:
                raise _Refused(f"refusing memo index {index}: a pickle of at most {MAX_OPS} opcodes "
                               "numbers its memo below that (pickle writes 0, 1, 2, ...)")
            if not self.stack or self.stack[-1] is _MARK:
                raise _Refused("malformed pickle: memoizing from an empty stack")
            if index >= len(self.memo):
                self.memo.extend([None] * (index + 1 - len(self.memo)))
            self.memo[index] = self.stack[-1]
        elif name in _GETS:
            if not (0 <= arg < len(self.memo) and self.memo[arg] is not None):
                raise _Refused(f"malformed pickle: memo index {arg} was never written")
            self.push(self.memo[arg])
        elif name == "MARK":
            self.marks += 1
            if self.marks > MAX_DEPTH:
                raise _Refused(f"refusing objects nested deeper than {MAX_DEPTH} levels (a .bin is 3 deep)")
            self.stack.append(_MARK)
        else:
            self.container(name, arg)

    def container(self, name: str, arg) -> None:
        if name in ("EMPTY_LIST", "LIST"):
            self.lists += 1
            if self.lists > MAX_LISTS:
                raise _Refused(f"refusing more than {MAX_LISTS} lists (a .bin holds 2)")
            items = self.pop_mark() if name == "LIST" else []
            self.push(_List(1 + max(map(_depth, items), default=0)))
        elif name in ("APPEND", "APPENDS"):
            items = [self.pop()] if name == "APPEND" else self.pop_mark()
            target = self.open_list()
            target.depth = max(target.depth, 1 + max(map(_depth, items), default=0))
            if target.depth > MAX_DEPTH:
                raise _Refused(f"refusing objects nested deeper than {MAX_DEPTH} levels (a .bin is 3 deep)")
        elif name == "TUPLE" or name in _TUPLE_N:
            items = self.pop_mark() if name == "TUPLE" else [self.pop() for _ in range(_TUPLE_N[name])]
            self.push(1 + max(map(_depth, items), default=0))
        elif name in ("GLOBAL", "STACK_GLOBAL"):
            if name == "GLOBAL":
                module, _, attr = arg.partition(" ")
            else:
                attr, module = self.pop(), self.pop()
                if not (isinstance(module, str) and isinstance(attr, str)):
                    raise _Refused("refusing a global whose module or name is not a short string")
            _allowed(module, attr)
            self.push(_GLOBAL)
        elif name in ("REDUCE", "BUILD"):
            args, target = self.pop(), self.pop()
            if name == "REDUCE" and target is not _GLOBAL:
                raise _Refused("refusing a call of something that is not an allow-listed global")
            self.push(1)     # the stand-ins return flat objects (bytes, bool, dtype)
        elif name not in ("PROTO", "FRAME", "STOP"):
            raise _Refused("refusing an opcode a .bin never needs (it holds only lists, tuples, bytes, "
                           "str, bools and ints)")


def scan(data: bytes) -> None:
    """Refuse (`pickle.UnpicklingError`) what `load` must never build; ValueError when the bytes
    are not a pickle at all."""
    machine = _Scan()
    for n, (op, arg, pos) in enumerate(pickletools.genops(io.BytesIO(data))):
        if n >= MAX_OPS:
            raise _Refused(f"refusing more than {MAX_OPS} opcodes (a .bin of 14,000 images has at most ~160,000)")
        try:
            machine.step(op.name, arg)
        except _Refused as e:
            raise _Refused(f"{e} (opcode {op.name} at byte {pos})") from None
    if len(machine.stack) != 1 or machine.marks:
        raise _Refused("malformed pickle: it does not end with exactly one object")


def load(data: bytes, where: str):
    """The object pickled in `data` (a whole `.bin`), after `scan`; DataError naming `where`."""
    try:
        scan(data)
        return _AllowListUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _Refused as e:
        raise DataError(f"{where} was refused: {e}; expected a pickle of (list of image bytes, list "
                        "of bools) naming no global outside the allow-list (_codecs.encode, bytes, "
                        "numpy's bool scalar and dtype)") from None
    except Exception as e:  # truncated or not a pickle at all
        raise DataError(f"{where} is not a readable pickle ({type(e).__name__}: {e}); expected an "
                        "insightface .bin") from None
