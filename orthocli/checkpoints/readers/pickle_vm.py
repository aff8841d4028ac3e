"""A pickle interpreter for the opcodes torch's weights-only unpickler implements (protocol 2), with
bounds on what a file can make it do. torch_pickle.py gives it the globals and the rules; this
module knows only the opcodes.

Why not `pickle.Unpickler`: its C implementation sizes the memo by the largest index a file names
(`LONG_BINPUT 0x0fffffff` allocates 2 GiB for a 3 KB file), hashes dict keys of any depth (a
tuple nested a million deep as a key overflows the C stack: SIGSEGV), and applies BUILD, APPEND
and SETITEM to whatever object is on the stack, where torch's own unpickler refuses all but a
few. This one mirrors torch's (torch/_weights_only_unpickler.py) opcode by opcode, keeps the memo
in a dict, refuses tuples nested deeper than MAX_DEPTH, and counts the elements that calls copy
against a budget proportional to the pickle's size, so a small pickle can never cost gigabytes or
minutes. Everything it refuses is an UnpicklingError for the caller to word.
"""

from __future__ import annotations

import pickle
from struct import unpack_from
from typing import Any

MAX_DEPTH = 100  # tuples in tuples: hashed as dict keys and printed as names, both recursively
WORK_PER_BYTE = 16  # elements that calls (set(x), OrderedDict(x), bytearray(s)) may copy, per pickle byte
WORK_BASE = 1 << 20

_APPEND = pickle.APPEND[0]
_APPENDS = pickle.APPENDS[0]
_BINFLOAT = pickle.BINFLOAT[0]
_BINGET = pickle.BINGET[0]
_BININT = pickle.BININT[0]
_BININT1 = pickle.BININT1[0]
_BININT2 = pickle.BININT2[0]
_BINPERSID = pickle.BINPERSID[0]
_BINPUT = pickle.BINPUT[0]
_BINUNICODE = pickle.BINUNICODE[0]
_BUILD = pickle.BUILD[0]
_EMPTY_DICT = pickle.EMPTY_DICT[0]
_EMPTY_LIST = pickle.EMPTY_LIST[0]
_EMPTY_SET = pickle.EMPTY_SET[0]
_EMPTY_TUPLE = pickle.EMPTY_TUPLE[0]
_GLOBAL = pickle.GLOBAL[0]
_LONG1 = pickle.LONG1[0]
_LONG_BINGET = pickle.LONG_BINGET[0]
_LONG_BINPUT = pickle.LONG_BINPUT[0]
_MARK = pickle.MARK[0]
_NEWFALSE = pickle.NEWFALSE[0]
_NEWOBJ = pickle.NEWOBJ[0]
_NEWTRUE = pickle.NEWTRUE[0]
_NONE = pickle.NONE[0]
_PROTO = pickle.PROTO[0]
_REDUCE = pickle.REDUCE[0]
_SETITEM = pickle.SETITEM[0]
_SETITEMS = pickle.SETITEMS[0]
_SHORT_BINSTRING = pickle.SHORT_BINSTRING[0]
_STOP = pickle.STOP[0]
_TUPLE = pickle.TUPLE[0]
_TUPLE1 = pickle.TUPLE1[0]
_TUPLE2 = pickle.TUPLE2[0]
_TUPLE3 = pickle.TUPLE3[0]


_CONSTANTS = {_NONE: None, _NEWTRUE: True, _NEWFALSE: False, _EMPTY_TUPLE: ()}
_EMPTIES = {_EMPTY_LIST: list, _EMPTY_DICT: dict, _EMPTY_SET: set}


class Refused(pickle.UnpicklingError):
    """What torch's weights-only unpickler refuses too, or what breaks a bound of this one."""


class Machine:
    """Runs one pickle. Subclasses say what a GLOBAL pushes (`find_global`), what a persistent id
    becomes (`persistent_load`), and which calls (REDUCE, NEWOBJ) and BUILDs are allowed."""

    def __init__(self, data: Any, start: int, end: int) -> None:
        self.data, self.pos, self.end = data, start, end  # bytes or an mmap: both index to ints
        self.budget = WORK_PER_BYTE * (end - start) + WORK_BASE
        self.depths: dict[int, tuple[tuple, int]] = {}  # id -> (the tuple, kept alive; its depth)

    # --- hooks --------------------------------------------------------------------------------
    def find_global(self, module: str, name: str) -> Any:
        raise Refused(f"global {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise Refused("a persistent id")

    def call(self, func: Any, args: tuple) -> Any:
        raise Refused("a call")

    def new_object(self, cls: Any, args: tuple) -> Any:
        raise Refused("NEWOBJ")

    def build(self, inst: Any, state: Any) -> None:
        raise Refused(f"BUILD on a {type(inst).__name__}")

    # --- the machine --------------------------------------------------------------------------
    def _read(self, n: int) -> bytes:
        i = self.pos
        if n < 0 or i + n > self.end:
            raise Refused("an opcode's argument runs past the end of the pickle")
        self.pos = i + n
        return bytes(self.data[i : i + n])

    def _line(self) -> str:
        i = self.pos
        eol = self.data.find(b"\n", i, min(self.end, i + 1024))
        if eol < 0:
            raise Refused("a global's name without its end of line")
        self.pos = eol + 1
        return bytes(self.data[i:eol]).decode("utf-8")

    def spend(self, n: int) -> None:
        self.budget -= n
        if self.budget < 0:
            raise Refused("its pickle asks for more work than its size can justify (copies of copies)")

    def tuple_of(self, items: list | tuple) -> tuple:
        depth = 1
        for x in items:
            if type(x) is tuple and id(x) in self.depths:
                depth = max(depth, self.depths[id(x)][1] + 1)
        if depth > MAX_DEPTH:
            raise Refused(f"tuples nested more than {MAX_DEPTH} deep")
        t = tuple(items)
        if t:  # every one, so that a chain of one-item tuples is seen growing
            self.depths[id(t)] = (t, depth)
        return t

    def run(self) -> tuple[Any, int]:
        """(the object, the position after its STOP)."""
        stack: list = []
        metastack: list[list] = []
        memo: dict[int, Any] = {}
        data, end = self.data, self.end
        while True:
            pos = self.pos
            if pos >= end:
                raise Refused("the pickle ends without STOP")
            key = data[pos]
            self.pos = pos + 1
            if key in _CONSTANTS:  # first: the cheapest ops, so a pickle of nothing else is read fastest
                stack.append(_CONSTANTS[key])
            elif key in _EMPTIES:
                stack.append(_EMPTIES[key]())
            elif key in (_BINPUT, _LONG_BINPUT):
                idx = self._read(1)[0] if key == _BINPUT else unpack_from("<I", self._read(4))[0]
                if not stack:
                    raise Refused("PUT with an empty stack")
                memo[idx] = stack[-1]
            elif key in (_BINGET, _LONG_BINGET):
                idx = self._read(1)[0] if key == _BINGET else unpack_from("<I", self._read(4))[0]
                if idx not in memo:
                    raise Refused(f"GET of memo {idx}, never PUT")
                stack.append(memo[idx])
            elif key == _BINUNICODE:
                n = unpack_from("<I", self._read(4))[0]
                stack.append(str(self._read(n), "utf-8", "surrogatepass"))
            elif key == _SHORT_BINSTRING:
                stack.append(self._read(self._read(1)[0]).decode("utf-8"))
            elif key == _MARK:
                metastack.append(stack)
                stack = []
            elif key == _TUPLE:
                items, stack = stack, metastack.pop()
                stack.append(self.tuple_of(items))
            elif key in (_TUPLE1, _TUPLE2, _TUPLE3):
                n = 1 if key == _TUPLE1 else 2 if key == _TUPLE2 else 3
                if len(stack) < n:
                    raise Refused("TUPLE of fewer items than it takes")
                items = stack[-n:]
                del stack[-n:]
                stack.append(self.tuple_of(items))
            elif key == _BININT:
                stack.append(unpack_from("<i", self._read(4))[0])
            elif key == _BININT1:
                stack.append(self._read(1)[0])
            elif key == _BININT2:
                stack.append(unpack_from("<H", self._read(2))[0])
            elif key == _BINFLOAT:
                stack.append(unpack_from(">d", self._read(8))[0])
            elif key == _LONG1:
                stack.append(int.from_bytes(self._read(self._read(1)[0]), "little", signed=True))
            elif key == _GLOBAL:
                module = self._line()
                stack.append(self.find_global(module, self._line()))
            elif key == _REDUCE:
                args = stack.pop()
                if type(args) is not tuple or not stack:
                    raise Refused("REDUCE without a function and a tuple of arguments")
                self.spend(1 + sum(len(a) for a in args if isinstance(a, (str, bytes, list, tuple, dict, set))))
                stack[-1] = self.call(stack[-1], args)
            elif key == _NEWOBJ:
                args = stack.pop()
                if type(args) is not tuple or not stack:
                    raise Refused("NEWOBJ without a class and a tuple of arguments")
                self.spend(1 + sum(len(a) for a in args if isinstance(a, (str, bytes, list, tuple, dict, set))))
                stack[-1] = self.new_object(stack[-1], args)
            elif key == _BUILD:
                state = stack.pop()
                if not stack:
                    raise Refused("BUILD with nothing to build")
                self.build(stack[-1], state)
            elif key == _APPEND:
                item = stack.pop()
                if not stack or type(stack[-1]) is not list:
                    raise Refused(
                        f"APPEND to a {type(stack[-1]).__name__ if stack else 'nothing'}; torch appends to lists only"
                    )
                stack[-1].append(item)
            elif key == _APPENDS:
                items, stack = stack, metastack.pop()
                if not stack or type(stack[-1]) is not list:
                    raise Refused(
                        f"APPENDS to a {type(stack[-1]).__name__ if stack else 'nothing'}; torch extends lists only"
                    )
                stack[-1].extend(items)
            elif key in (_SETITEM, _SETITEMS):
                if key == _SETITEM:
                    if len(stack) < 3:
                        raise Refused("SETITEM with too few items")
                    items = stack[-2:]
                    del stack[-2:]
                else:
                    items, stack = stack, metastack.pop()
                if not stack or not isinstance(stack[-1], dict) or len(items) % 2:
                    raise Refused("SETITEM(S) on something other than a dict, or a key without its value")
                target = stack[-1]
                for k in range(0, len(items), 2):
                    target[items[k]] = items[k + 1]
            elif key == _BINPERSID:
                stack.append(self.persistent_load(stack.pop()))
            elif key == _PROTO:
                self._read(1)
            elif key == _STOP:
                if not stack:
                    raise Refused("STOP with an empty stack")
                return stack.pop(), self.pos
            else:
                raise Refused(f"opcode {key:#04x}, which torch's weights-only unpickler does not implement")
