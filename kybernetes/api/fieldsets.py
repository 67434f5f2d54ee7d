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
from typing import Any, Iterator

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


def pe_order(pe: PathElement) -> tuple:
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
    kind, content = pe
    if kind == "f":
        return "f:" + content
    if kind == "k":
        return "k:{" + ",".join(f"{_json(n)}:{_json(thaw(v))}" for n, v in content) + "}"
    if kind == "v":
        return "v:" + _json(thaw(content))
    return f"i:{content}"


def pe_from_str(text: str) -> PathElement | None:
    """Parse one FieldsV1 key; None for kinds this version does not know (upstream drops them)."""
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

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FieldSet):
            return NotImplemented
        return set(self.paths()) == set(other.paths())

    def __repr__(self) -> str:
        return f"FieldSet({self.to_json()!r})"

    # -- algebra (structured-merge-diff semantics) ---------------------------------------------
    def union(self, other: FieldSet) -> FieldSet:
        out = self.copy()
        out.members |= other.members
        for pe, c in other.children.items():
            mine = out.children.get(pe)
            out.children[pe] = c.copy() if mine is None else mine.union(c)
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
            sub = c.copy() if theirs is None else c.difference(theirs)
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
            sub = c.copy() if theirs is None else c.recursive_difference(theirs)
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
