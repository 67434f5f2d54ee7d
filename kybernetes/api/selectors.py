"""Label and field selectors, with upstream's grammar, matching and error messages.

Label selectors follow apimachinery's `labels.Parse` (a small lexer + recursive descent parser)
and `metav1.LabelSelectorAsSelector`; field selectors follow `fields.ParseSelector`. Error
texts copy upstream's wording because kubectl shows them to users verbatim.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from collections import abc
from typing import Any, Callable, Iterable, Mapping


class SelectorError(ValueError):
    """A selector that cannot be parsed or used (the API server answers 400 BadRequest)."""


# --- upstream validation helpers (k8s.io/apimachinery/pkg/util/validation) -------------------

_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_RE = re.compile(f"^{_QNAME_FMT}$")
_QNAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_VALUE_FMT = f"({_QNAME_FMT})?"
_LABEL_VALUE_RE = re.compile(f"^{_LABEL_VALUE_FMT}$")
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, "
    "'-', '_' or '.', and must start and end with an alphanumeric character"
)
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = f"{_DNS1123_LABEL_FMT}(\\.{_DNS1123_LABEL_FMT})*"
_DNS1123_SUBDOMAIN_RE = re.compile(f"^{_DNS1123_SUBDOMAIN_FMT}$")
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character"
)


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    # Upstream's RegexError, including its odd ",  or " spacing between examples.
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def _max_len_error(n: int) -> str:
    return f"must be no more than {n} characters"


def qualified_name_errors(value: str) -> list[str]:
    """Upstream `IsQualifiedName`: `[prefix/]name`, name ≤ 63 chars, prefix a DNS subdomain."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                errs.append("prefix part " + _max_len_error(253))
            if not _DNS1123_SUBDOMAIN_RE.match(prefix):
                errs.append("prefix part " + _regex_error(
                    _DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    else:
        return ["a qualified name " + _regex_error(
            _QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + _max_len_error(63))
    if not _QNAME_RE.match(name):
        errs.append("name part " + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def label_value_errors(value: str) -> list[str]:
    """Upstream `IsValidLabelValue`."""
    errs: list[str] = []
    if len(value) > 63:
        errs.append(_max_len_error(63))
    if not _LABEL_VALUE_RE.match(value):
        errs.append(_regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def _go_value(value: Any) -> str:
    # How field.Error prints a bad value: %q for strings, %#v for string slices.
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return "[]string{" + ", ".join(json.dumps(v, ensure_ascii=False) for v in value) + "}"


def _invalid(path: str, value: Any, detail: str) -> str:
    return f"{path}: Invalid value: {_go_value(value)}: {detail}"


def _aggregate(errs: list[str]) -> str:
    unique = list(dict.fromkeys(errs))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


# --- label selectors ---------------------------------------------------------------------------

IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "in", "notin", "=", "==", "!="
EXISTS, DOES_NOT_EXIST, GREATER_THAN, LESS_THAN = "exists", "!", "gt", "lt"
_BINARY_OPS = [IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN]
_INT64 = re.compile(r"^[+-]?[0-9]+$")


def _is_int64(s: str) -> bool:
    return bool(_INT64.match(s)) and -(2**63) <= int(s) < 2**63


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op, has = self.operator, self.key in labels
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return has and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return not has or labels[self.key] not in self.values
        if op == EXISTS:
            return has
        if op == DOES_NOT_EXIST:
            return not has
        if op in (GREATER_THAN, LESS_THAN):
            if not has or not _is_int64(labels[self.key]) or len(self.values) != 1:
                return False
            if not _is_int64(self.values[0]):
                return False
            mine, theirs = int(labels[self.key]), int(self.values[0])
            return mine > theirs if op == GREATER_THAN else mine < theirs
        return False

    def __str__(self) -> str:
        if self.operator == DOES_NOT_EXIST:
            return "!" + self.key
        if self.operator == EXISTS:
            return self.key
        values = ",".join(sorted(self.values))
        if self.operator in (IN, NOT_IN):
            return f"{self.key} {self.operator} ({values})"
        symbol = {GREATER_THAN: ">", LESS_THAN: "<"}.get(self.operator, self.operator)
        return f"{self.key}{symbol}{values}"


def new_requirement(key: str, operator: str, values: Iterable[str] = ()) -> Requirement:
    """Upstream `labels.NewRequirement`: validates key, operator arity and values."""
    vals = list(values)
    errs: list[str] = []
    key_errs = qualified_name_errors(key)
    if key_errs:
        errs.append(_invalid("key", key, "; ".join(key_errs)))
    if operator in (IN, NOT_IN):
        if not vals:
            errs.append(_invalid("values", vals, "for 'in', 'notin' operators, values set can't be empty"))
    elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(vals) != 1:
            errs.append(_invalid("values", vals, "exact-match compatibility requires one single value"))
    elif operator in (EXISTS, DOES_NOT_EXIST):
        if vals:
            errs.append(_invalid("values", vals, "values set must be empty for exists and does not exist"))
    elif operator in (GREATER_THAN, LESS_THAN):
        if len(vals) != 1:
            errs.append(_invalid("values", vals, "for 'Gt', 'Lt' operators, exactly one value is required"))
        for i, v in enumerate(vals):
            if not _is_int64(v):
                errs.append(_invalid(f"values[{i}]", v, "for 'Gt', 'Lt' operators, the value must be an integer"))
    else:
        supported = ", ".join(json.dumps(o) for o in _BINARY_OPS + [EXISTS, DOES_NOT_EXIST])
        errs.append(f"operator: Unsupported value: {json.dumps(operator)}: supported values: {supported}")
    for i, v in enumerate(vals):
        value_errs = label_value_errors(v)
        if value_errs:
            errs.append(_invalid(f"values[{i}][{key}]", v, "; ".join(value_errs)))
    if errs:
        raise SelectorError(_aggregate(errs))
    return Requirement(key, operator, tuple(vals))


class LabelSelector:
    """A conjunction of requirements; `nothing=True` is upstream's `labels.Nothing()`."""

    def __init__(self, requirements: Iterable[Requirement] = (), nothing: bool = False):
        self.requirements = sorted(requirements, key=lambda r: r.key)
        self.nothing = nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def empty(self) -> bool:
        """True when the selector does not restrict anything (upstream `Empty()`)."""
        return not self.nothing and not self.requirements

    def requires_exact_match(self, key: str) -> str | None:
        """The single value `key` must have, if the selector pins it (upstream RequiresExactMatch)."""
        for r in self.requirements:
            if r.key == key:
                if r.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1:
                    return r.values[0]
                return None
        return None

    def __str__(self) -> str:
        return "" if self.nothing else ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return f"LabelSelector({str(self)!r})"


_SPECIAL = set("=!(),><")
_WHITESPACE = set(" \t\r\n")
_SYMBOLS = {")": ")", ",": ",", "!": "!", "==": "==", "=": "=", ">": ">", "<": "<", "!=": "!=", "(": "("}
_KEYWORDS = {"in": "in", "notin": "notin"}
_ID, _EOS, _ERR = "id", "eos", "err"


def _lex(text: str) -> list[tuple[str, str]]:
    """Tokens as (kind, literal); kind is the symbol/keyword itself, or id/eos/err."""
    tokens: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n:
            tokens.append((_EOS, ""))
            return tokens
        if text[i] in _SPECIAL:
            # Longest run of special characters that still forms a known symbol.
            buf, last, last_end = "", None, i
            j = i
            while j < n and text[j] in _SPECIAL:
                buf += text[j]
                j += 1
                if buf in _SYMBOLS:
                    last, last_end = buf, j
                elif last is not None:
                    break
            if last is None:
                tokens.append((_ERR, f"error expected: keyword found '{buf}'"))
                i = j
            else:
                tokens.append((last, last))
                i = last_end
            continue
        j = i
        while j < n and text[j] not in _SPECIAL and text[j] not in _WHITESPACE:
            j += 1
        word = text[i:j]
        tokens.append((_KEYWORDS.get(word, _ID), word))
        i = j


class _LabelParser:
    def __init__(self, text: str):
        self.items = _lex(text)
        self.pos = 0

    def _peek(self, values: bool = True) -> tuple[str, str]:
        kind, lit = self.items[self.pos]
        # In the values context, 'in' and 'notin' are plain identifiers.
        return (_ID if values and kind in _KEYWORDS else kind), lit

    def _next(self, values: bool = True) -> tuple[str, str]:
        tok = self._peek(values)
        self.pos += 1
        return tok

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            kind, lit = self._peek()
            if kind == _EOS:
                return reqs
            if kind not in (_ID, "!"):
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                reqs.append(self._requirement())
            except SelectorError as e:
                raise SelectorError(f"unable to parse requirement: {e}") from None
            kind, lit = self._next()
            if kind == _EOS:
                return reqs
            if kind != ",":
                raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            kind2, lit2 = self._peek()
            if kind2 not in (_ID, "!"):
                raise SelectorError(f"found '{lit2}', expected: identifier after ','")

    def _requirement(self) -> Requirement:
        operator = ""
        kind, key = self._next()
        if kind == "!":
            operator = DOES_NOT_EXIST
            kind, key = self._next()
        if kind != _ID:
            raise SelectorError(f"found '{key}', expected: identifier")
        key_errs = qualified_name_errors(key)
        if key_errs:
            raise SelectorError(_invalid("<nil>", key, "; ".join(key_errs)))
        if operator == DOES_NOT_EXIST:
            # "!key" takes no operator; the caller rejects whatever follows it
            return new_requirement(key, DOES_NOT_EXIST)
        if self._peek()[0] in (_EOS, ","):
            return new_requirement(key, EXISTS)
        kind, lit = self._next(values=False)
        ops = {"in": IN, "notin": NOT_IN, "=": EQUALS, "==": DOUBLE_EQUALS,
               "!=": NOT_EQUALS, ">": GREATER_THAN, "<": LESS_THAN}
        if kind not in ops:
            raise SelectorError(f"found '{lit}', expected: {', '.join(_BINARY_OPS)}")
        operator = ops[kind]
        values = self._set_values() if operator in (IN, NOT_IN) else self._exact_value()
        return new_requirement(key, operator, sorted(values))

    def _set_values(self) -> set[str]:
        kind, lit = self._next()
        if kind != "(":
            raise SelectorError(f"found '{lit}' expected: '('")
        kind, lit = self._peek()
        if kind == ")":
            self._next()
            return {""}
        if kind not in (_ID, ","):
            raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")
        values = self._identifiers()
        if self._next()[0] != ")":
            raise SelectorError(f"found '{lit}', expected: ')'")
        return values

    def _identifiers(self) -> set[str]:
        values: set[str] = set()
        while True:
            kind, lit = self._next()
            if kind == _ID:
                values.add(lit)
                kind2, lit2 = self._peek()
                if kind2 == ",":
                    continue
                if kind2 == ")":
                    return values
                raise SelectorError(f"found '{lit2}', expected: ',' or ')'")
            if kind == ",":
                # "(," ",," and ",)" each stand for an empty value.
                if not values:
                    values.add("")
                kind2, _ = self._peek()
                if kind2 == ")":
                    values.add("")
                    return values
                if kind2 == ",":
                    self._next()
                    values.add("")
                continue
            raise SelectorError(f"found '{lit}', expected: ',', or identifier")

    def _exact_value(self) -> set[str]:
        if self._peek()[0] in (_EOS, ","):
            return {""}
        kind, lit = self._next()
        if kind == _ID:
            return {lit}
        raise SelectorError(f"found '{lit}', expected: identifier")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse a `labelSelector=` string; empty or None selects everything."""
    return LabelSelector(_LabelParser(text or "").parse())


def selector_from_set(labels: Mapping[str, str] | None) -> LabelSelector:
    """Equality selector for a plain map (upstream SelectorFromSet; no validation)."""
    return LabelSelector(Requirement(k, EQUALS, (v,)) for k, v in (labels or {}).items())


_EXPRESSION_OPS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def label_selector_from_object(obj: Mapping[str, Any] | None) -> LabelSelector:
    """metav1.LabelSelector → selector: None matches nothing, {} matches everything."""
    if obj is None:
        return LabelSelector(nothing=True)
    match_labels = obj.get("matchLabels") or {}
    expressions = obj.get("matchExpressions") or []
    reqs = [new_requirement(k, EQUALS, [v]) for k, v in match_labels.items()]
    for expr in expressions:
        op = expr.get("operator", "")
        if op not in _EXPRESSION_OPS:
            raise SelectorError(f"{json.dumps(op)} is not a valid label selector operator")
        reqs.append(new_requirement(expr.get("key", ""), _EXPRESSION_OPS[op], expr.get("values") or []))
    return LabelSelector(reqs)


# --- field selectors ---------------------------------------------------------------------------


def escape_field_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def unescape_field_value(value: str) -> str:
    if not any(c in value for c in "\\,="):
        return value
    out: list[str] = []
    in_slash = False
    for c in value:
        if in_slash:
            if c not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c in ",=":
            raise SelectorError(f"invalid field selector: unescaped character in value: {c}")
        else:
            out.append(c)
    if in_slash:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    terms, start, in_slash = [], 0, False
    for i, c in enumerate(text):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


@dataclass(frozen=True)
class FieldTerm:
    field: str
    operator: str  # "=", "==" or "!="
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        equal = fields.get(self.field, "") == self.value
        return not equal if self.operator == "!=" else equal

    def __str__(self) -> str:
        op = "!=" if self.operator == "!=" else "="
        return f"{self.field}{op}{escape_field_value(self.value)}"


class FieldSelector:
    def __init__(self, terms: Iterable[FieldTerm] = ()):
        self.terms = list(terms)

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(t.matches(fields) for t in self.terms)

    def empty(self) -> bool:
        return not self.terms

    def requires_exact_match(self, field: str) -> str | None:
        for t in self.terms:
            if t.field == field and t.operator != "!=":
                return t.value
        return None

    def check(self, kind: str) -> None:
        """Raise like the API server when a term names a field `kind` cannot select on."""
        allowed = supported_fields(kind)
        for t in self.terms:
            if t.field not in allowed:
                raise SelectorError(f"field label not supported: {t.field}")

    def __str__(self) -> str:
        return ",".join(str(t) for t in self.terms)

    def __repr__(self) -> str:
        return f"FieldSelector({str(self)!r})"


def parse_field_selector(text: str | None) -> FieldSelector:
    """Parse a `fieldSelector=` string (upstream fields.ParseSelector)."""
    text = text or ""
    terms: list[FieldTerm] = []
    for part in sorted(_split_terms(text)) if text else []:
        if not part:
            continue
        for i in range(len(part)):
            op = next((o for o in ("!=", "==", "=") if part.startswith(o, i)), None)
            if op:
                lhs, rhs = part[:i], part[i + len(op):]
                terms.append(FieldTerm(lhs, op, unescape_field_value(rhs)))
                break
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
    return FieldSelector(terms)


# Selectable fields per kind, beyond metadata.name/namespace (pkg/apis/*/v1 conversion funcs).
_KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
            "spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs",
            "status.nominatedNodeName"),
    "Event": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
              "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
              "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"),
    "Secret": ("type",),
    "Service": ("spec.clusterIP", "spec.type"),
    "Namespace": ("status.phase",),
    "Node": ("spec.unschedulable",),
    "ReplicationController": ("status.replicas",),
    "ReplicaSet": ("status.replicas",),
    "Job": ("status.successful",),
    "CertificateSigningRequest": ("spec.signerName",),
}
# Node and Namespace register their own conversion func without metadata.namespace.
_NO_NAMESPACE_LABEL = {"Node", "Namespace"}


def supported_fields(kind: str) -> frozenset[str]:
    """Field labels the API server accepts in a field selector for `kind`."""
    base = {"metadata.name"} if kind in _NO_NAMESPACE_LABEL else {"metadata.name", "metadata.namespace"}
    return frozenset(base.union(_KIND_FIELDS.get(kind, ())))


def _is_map(value: Any) -> bool:
    # JSON objects are dicts: checked first, since an isinstance against typing.Mapping (an
    # alias) showed in the API server's watch fan-out profiles.
    return isinstance(value, dict) or isinstance(value, abc.Mapping)


def _get(obj: Mapping[str, Any], path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        if not _is_map(cur):
            return None
        cur = cur.get(part)
    return cur


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _part(obj: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = obj.get(name)
    return value if _is_map(value) else {}


def _pod_ip(obj: Mapping[str, Any]) -> str:
    # Upstream takes the first of podIPs; status.podIPs itself is accepted but never set.
    status = _part(obj, "status")
    ips = status.get("podIPs") or []
    first = ips[0].get("ip", "") if ips and _is_map(ips[0]) else ""
    return _text(first or status.get("podIP"))


def _in(part: str, name: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda obj: _text((obj.get(part) or {}).get(name) if part == "metadata"
                             else _part(obj, part).get(name))


# Each selectable pod field alone: a watch's selector names one or two of them, and every pod
# event on such a watch is matched (twice for a change), so only those are looked up.
POD_FIELDS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "metadata.name": _in("metadata", "name"),
    "metadata.namespace": _in("metadata", "namespace"),
    "spec.nodeName": _in("spec", "nodeName"),
    "spec.restartPolicy": _in("spec", "restartPolicy"),
    "spec.schedulerName": _in("spec", "schedulerName"),
    "spec.serviceAccountName": _in("spec", "serviceAccountName"),
    "spec.hostNetwork": lambda obj: _text(bool(_part(obj, "spec").get("hostNetwork"))),
    "status.phase": _in("status", "phase"),
    "status.nominatedNodeName": _in("status", "nominatedNodeName"),
    "status.podIP": _pod_ip,
}


def field_set(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """The field values a field selector is matched against (upstream *ToSelectableFields)."""
    if kind == "Pod":
        return {f: get(obj) for f, get in POD_FIELDS.items()}
    meta = obj.get("metadata") or {}
    fields = {"metadata.name": _text(meta.get("name"))}
    if kind not in _NO_NAMESPACE_LABEL:
        fields["metadata.namespace"] = _text(meta.get("namespace"))
    if kind == "Event":
        for f in _KIND_FIELDS["Event"]:
            if f.startswith("involvedObject.") or f in ("reason", "type"):
                fields[f] = _text(_get(obj, f))
        # core/v1 field names, falling back as upstream does for events.k8s.io-written events
        reporting = obj.get("reportingComponent") or obj.get("reportingController") or ""
        fields["reportingComponent"] = _text(reporting)
        fields["source"] = _text(_get(obj, "source.component") or reporting)
    elif kind == "Node":
        fields["spec.unschedulable"] = _text(bool(_get(obj, "spec.unschedulable")))
    elif kind in ("ReplicaSet", "ReplicationController"):
        fields["status.replicas"] = _text(_get(obj, "status.replicas") or 0)
    elif kind == "Job":
        fields["status.successful"] = _text(_get(obj, "status.succeeded") or 0)
    else:
        for f in _KIND_FIELDS.get(kind, ()):
            fields[f] = _text(_get(obj, f))
    return fields


def match_fields(selector: FieldSelector, kind: str, obj: Mapping[str, Any]) -> bool:
    return selector.matches(field_set(kind, obj))
