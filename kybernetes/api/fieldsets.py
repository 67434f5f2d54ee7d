"""Field sets as server-side apply records them, and their `FieldsV1` JSON form.

A field set is a tree of path elements. Each element is one of
  ("f", name)                      a field of an object          -> "f:name"
  ("k", ((key, value), ...))       a list item by its map keys   -> 'k:{"name":"web"}'
  ("v", value)                     a list item of a set list     -> 'v:"a"'
  ("i", index)                     a list item by position       -> "i:0"
Values inside elements are frozen (hashable) with `freeze`. A set has `members` (paths that end
here) and `children` (deeper paths); in FieldsV1 a path that is both writes `".": {}` first.
Ordering follows structured-merge-diff: fields < keys < values < indexes, each by its content.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Iterator

import orjson

PathElement = tuple
Path = tuple

_RANK = {"f": 0, "k": 1, "v": 2, "i": 3}


def freeze(value: Any) -> Any:
    """A hashable stand-in for a JSON value (bools kept apart from the numbers 0/1)."""
    if isinstance(value, bool):
        return ("\0b", value)
    if isinstance(value, dict):
        return ("\0m", tuple(sorted((k, freeze(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("\0l", tuple(freeze(v) for v in value))
    return value


def thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        tag, inner = value
        if tag == "\0b":
            return inner
        if tag == "\0m":
            return {k: thaw(v) for k, v in inner}
        return [thaw(v) for v in inner]
    return value


def _value_order(value: Any) -> tuple:
    # structured-merge-diff's total order: numbers, strings, booleans, lists, maps, null.
    if isinstance(value, tuple):
        tag, inner = value
        if tag == "\0b":
            return (2, inner)
        if tag == "\0l":
            return (3, tuple(_value_order(v) for v in inner))
        return (4, tuple((k, _value_order(v)) for k, v in inner))
    if value is None:
        return (5,)
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, value)


def _cacheable(pe: PathElement) -> bool:
    """True when pe holds only strings and ints: then equal tuples are the same element.
    (1 == 1.0 and hash alike, but print differently, so floats are never cached.)"""
    kind, content = pe
    if kind == "k":
        return all(type(v) is str or type(v) is int for _, v in content)
    return type(content) is str or type(content) is int


_ORDER: dict[PathElement, tuple] = {}
_TEXT: dict[PathElement, str] = {}
_CACHE_MAX = 50_000  # distinct path elements remembered (names, keys); cleared when full


def pe_order(pe: PathElement) -> tuple:
    if pe[0] == "f":
        return (0, pe[1])
    if not _cacheable(pe):  # checked first: a float key would find its int twin
        return _pe_order(pe)
    out = _ORDER.get(pe)
    if out is None:
        out = _pe_order(pe)
        if len(_ORDER) >= _CACHE_MAX:
            _ORDER.clear()
        _ORDER[pe] = out
    return out


def _pe_order(pe: PathElement) -> tuple:
    kind, content = pe
    if kind == "k":
        return (1, tuple((name, _value_order(v)) for name, v in content))
    if kind == "v":
        return (2, _value_order(content))
    return (_RANK[kind], content)


def _json(value: Any) -> str:
    # Go's encoder (which writes these keys upstream) escapes <, > and & in strings.
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def pe_to_str(pe: PathElement) -> str:
    if pe[0] == "f":
        return "f:" + pe[1]
    if not _cacheable(pe):
        return _pe_to_str(pe)
    out = _TEXT.get(pe)
    if out is None:
        out = _pe_to_str(pe)
        if len(_TEXT) >= _CACHE_MAX:
            _TEXT.clear()
        _TEXT[pe] = out
    return out


def _pe_to_str(pe: PathElement) -> str:
    kind, content = pe
    if kind == "f":
        return "f:" + content
    if kind == "k":
        return "k:{" + ",".join(f"{_json(n)}:{_json(thaw(v))}" for n, v in content) + "}"
    if kind == "v":
        return "v:" + _json(thaw(content))
    return f"i:{content}"


_PARSED: dict[str, PathElement | None] = {}


def pe_from_str(text: str) -> PathElement | None:
    """Parse one FieldsV1 key; None for kinds this version does not know (upstream drops them)."""
    out = _PARSED.get(text, _UNSEEN)
    if out is _UNSEEN:
        out = _pe_from_str(text)
        if len(_PARSED) >= _CACHE_MAX:
            _PARSED.clear()
        _PARSED[text] = out
    return out


_UNSEEN = object()


def _pe_from_str(text: str) -> PathElement | None:
    if len(text) < 2 or text[1] != ":":
        raise ValueError(f"invalid path element {text!r}")
    kind, rest = text[0], text[2:]
    if kind == "f":
        return ("f", rest)
    if kind == "k":
        fields = json.loads(rest)
        if not isinstance(fields, dict):
            raise ValueError(f"invalid key {text!r}")
        return ("k", tuple(sorted((n, freeze(v)) for n, v in fields.items())))
    if kind == "v":
        return ("v", freeze(json.loads(rest)))
    if kind == "i":
        return ("i", int(rest))
    return None


def _go_quote(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(_go_quote(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={_go_quote(v)}" for k, v in value.items()) + "}"
    return str(value)


def path_to_str(path: Path) -> str:
    """A path as apply conflicts print it: `.spec.containers[name="web"].image`."""
    out = []
    for kind, content in path:
        if kind == "f":
            out.append("." + content)
        elif kind == "k":
            out.append("[" + ",".join(f"{n}={_go_quote(thaw(v))}" for n, v in content) + "]")
        elif kind == "v":
            out.append(f"[={_go_quote(thaw(content))}]")
        else:
            out.append(f"[{content}]")
    return "".join(out)


class FieldSet:
    """A set of field paths, kept as a tree."""

    __slots__ = ("members", "children")

    def __init__(self) -> None:
        self.members: set[PathElement] = set()
        self.children: dict[PathElement, FieldSet] = {}

    # -- building -----------------------------------------------------------------------------
    def insert(self, path: Path) -> None:
        if not path:
            return
        node = self
        for pe in path[:-1]:
            node = node.child(pe)
        node.members.add(path[-1])

    def child(self, pe: PathElement) -> FieldSet:
        node = self.children.get(pe)
        if node is None:
            node = self.children[pe] = FieldSet()
        return node

    @classmethod
    def from_paths(cls, paths) -> FieldSet:
        out = cls()
        for p in paths:
            out.insert(tuple(p))
        return out

    def copy(self) -> FieldSet:
        out = FieldSet()
        out.members = set(self.members)
        out.children = {pe: c.copy() for pe, c in self.children.items()}
        return out

    # -- queries ------------------------------------------------------------------------------
    def empty(self) -> bool:
        return not self.members and all(c.empty() for c in self.children.values())

    def has(self, path: Path) -> bool:
        node = self
        for pe in path[:-1]:
            node = node.children.get(pe)
            if node is None:
                return False
        return bool(path) and path[-1] in node.members

    def paths(self, prefix: Path = ()) -> Iterator[Path]:
        """Every member path: members of a level first, then the deeper levels, each sorted."""
        for pe in sorted(self.members, key=pe_order):
            yield prefix + (pe,)
        for pe in sorted(self.children, key=pe_order):
            yield from self.children[pe].paths(prefix + (pe,))

    def disjoint(self, other: FieldSet) -> bool:
        """No path in both: `difference(other)` would leave this set as it is."""
        if not self.members.isdisjoint(other.members):
            return False
        theirs = other.children
        return all(pe not in theirs or c.disjoint(theirs[pe]) for pe, c in self.children.items())

    def issubset(self, other: FieldSet) -> bool:
        if not self.members <= other.members:
            return False
        theirs = other.children
        return all(c.issubset(theirs[pe]) if pe in theirs else c.empty()
                   for pe, c in self.children.items())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FieldSet):
            return NotImplemented
        return set(self.paths()) == set(other.paths())

    def __repr__(self) -> str:
        return f"FieldSet({self.to_json()!r})"

    # -- algebra (structured-merge-diff semantics) ---------------------------------------------
    # Results share the subtrees they leave untouched with their operands: build a set with
    # insert/child, then treat it as a value.
    def union(self, other: FieldSet) -> FieldSet:
        out = FieldSet()
        out.members = self.members | other.members
        kids = dict(self.children)
        for pe, c in other.children.items():
            mine = kids.get(pe)
            kids[pe] = c if mine is None else mine.union(c)
        out.children = kids
        return out

    def intersection(self, other: FieldSet) -> FieldSet:
        out = FieldSet()
        out.members = self.members & other.members
        for pe, c in self.children.items():
            theirs = other.children.get(pe)
            if theirs is not None:
                sub = c.intersection(theirs)
                if not sub.empty():
                    out.children[pe] = sub
        return out

    def difference(self, other: FieldSet) -> FieldSet:
        """Drop the paths of `other`; a member of `other` does not drop what lies below it."""
        out = FieldSet()
        out.members = self.members - other.members
        for pe, c in self.children.items():
            theirs = other.children.get(pe)
            sub = c if theirs is None else c.difference(theirs)
            if not sub.empty():
                out.children[pe] = sub
        return out

    def recursive_difference(self, other: FieldSet) -> FieldSet:
        """Like `difference`, but a member of `other` also drops everything below it."""
        out = FieldSet()
        out.members = self.members - other.members
        for pe, c in self.children.items():
            if pe in other.members:
                continue
            theirs = other.children.get(pe)
            sub = c if theirs is None else c.recursive_difference(theirs)
            if not sub.empty():
                out.children[pe] = sub
        return out

    # -- FieldsV1 -----------------------------------------------------------------------------
    def to_json(self) -> dict:
        return self._emit(False)

    def _emit(self, include_self: bool) -> dict:
        out: dict[str, dict] = {}
        kids = {pe: c for pe, c in self.children.items() if not c.empty()}
        if include_self and (self.members or kids):
            out["."] = {}
        for pe in sorted(self.members | kids.keys(), key=pe_order):
            child = kids.get(pe)
            out[pe_to_str(pe)] = {} if child is None else child._emit(pe in self.members)
        return out

    @classmethod
    def from_json(cls, data: dict) -> FieldSet:
        out, _ = cls._read(data)
        return out or cls()

    @classmethod
    def _read(cls, data: dict) -> tuple[FieldSet | None, bool]:
        if not isinstance(data, dict):
            raise ValueError("fieldsV1 must be a JSON object")
        children: FieldSet | None = None
        is_member = False
        for key, sub in data.items():
            if key == ".":
                is_member = True
                continue
            pe = pe_from_str(key)
            if pe is None:
                continue
            grand, child_member = cls._read(sub)
            if children is None:
                children = cls()
            if child_member:
                children.members.add(pe)
            if grand is not None:
                children.children[pe] = grand
        if children is None:
            is_member = True
        return children, is_member


# FieldsV1 as stored -> (FieldSet, whether to_json gives the same bytes back). Objects of one
# template share their sets, so most writes decode from here. The sets are shared: never mutate.
_DECODED: OrderedDict[bytes, tuple[FieldSet, bool]] = OrderedDict()
_DECODED_MAX = 4096


def decode_shared(data: Any) -> tuple[FieldSet, bool]:
    """`FieldSet.from_json(data)` (not to be mutated) and whether `data` is its canonical form."""
    try:
        key = orjson.dumps(data)
    except TypeError:  # not JSON-shaped: no caching, same outcome
        return FieldSet.from_json(data), False
    hit = _DECODED.get(key)
    if hit is not None:
        _DECODED.move_to_end(key)
        return hit
    fs = FieldSet.from_json(data)
    hit = (fs, orjson.dumps(fs.to_json()) == key)
    _DECODED[key] = hit
    if len(_DECODED) > _DECODED_MAX:
        _DECODED.popitem(last=False)
    return hit
