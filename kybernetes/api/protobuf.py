"""Kubernetes protobuf bodies (`application/vnd.kubernetes.protobuf`) to and from JSON dicts.

A body is the magic `k8s\\x00` followed by a runtime.Unknown envelope: typeMeta {apiVersion, kind},
raw (the object's own message), contentEncoding, contentType. `decode` returns the dict the same
object's JSON body would have been; `encode` does the reverse.

Message layouts come from proto_table.json (written by tools/gen_proto_table.py). From it we build
real descriptors once and let the `protobuf` library (upb, in C) parse the wire: it is faster and
far better tested than a hand-written varint parser, and rejects malformed input for us. We then
walk only the fields present on the wire (proto2 presence), so a field kubectl sent as "" stays "".
String fields are declared as bytes in the runtime descriptors: Go strings are bytes too, and this
way invalid UTF-8 (which Go accepts) turns into U+FFFD as in Go's JSON instead of an exception.
"""

from __future__ import annotations

import base64
import functools
import re
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import orjson
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
TABLE = Path(__file__).with_name("proto_table.json")

META = "k8s.io.apimachinery.pkg.apis.meta.v1."
TIME = META + "Time"
MICRO_TIME = META + "MicroTime"
DURATION = META + "Duration"
FIELDS_V1 = META + "FieldsV1"
QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
RAW_EXTENSION = "k8s.io.apimachinery.pkg.runtime.RawExtension"
UNKNOWN = "k8s.io.apimachinery.pkg.runtime.Unknown"

MAP, REPEATED, INLINE = 0, 1, 2
T_MESSAGE, T_BYTES, T_STRING = 11, 12, 9
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class ProtobufError(ValueError):
    """The body is not a Kubernetes protobuf object we can read (or a dict we can write)."""


class _Field:
    """How one message field maps to JSON."""

    __slots__ = ("name", "json", "type", "repeated", "inline", "ref", "map_value")

    def __init__(self, entry: list) -> None:
        _number, self.name, self.type, flags, self.ref = entry[:5]
        self.json = entry[5] if len(entry) > 5 else self.name
        self.repeated = bool(flags & REPEATED)
        self.inline = bool(flags & INLINE)
        self.map_value = None  # (type, message name) for map fields
        if self.type == MAP:
            _key_type, value_type, value_ref = self.ref
            self.map_value = (value_type, value_ref)


class _Codec:
    """Descriptors, message classes and per-message field plans, built once from the table."""

    def __init__(self, table: dict) -> None:
        self.fields: dict[str, dict[int, _Field]] = {
            name: {e[0]: _Field(e) for e in entries} for name, entries in table["messages"].items()
        }
        self.kinds: dict[str, str] = table["kinds"]
        self.lists = set(table["lists"])
        self.pool = descriptor_pool.DescriptorPool()
        for fdp in _file_protos(table["messages"]):
            self.pool.Add(fdp)
        self._classes: dict[str, type[Message]] = {}
        # JSON key -> field, per message; inline fields answer for their sub-message's keys.
        self.by_json: dict[str, dict[str, _Field]] = {
            name: {f.json: f for f in fields.values() if not f.inline}
            for name, fields in self.fields.items()
        }
        self.inline_keys: dict[str, list[tuple[_Field, set[str]]]] = {}
        for name, fields in self.fields.items():
            inl = [(f, self._all_keys(f.ref)) for f in fields.values() if f.inline]
            if inl:
                self.inline_keys[name] = inl

    def _all_keys(self, name: str) -> set[str]:
        keys = set(self.by_json[name]) if name in self.by_json else set()
        for f in self.fields[name].values():
            if f.inline:
                keys |= self._all_keys(f.ref)
        return keys

    def message_class(self, name: str) -> type[Message]:
        cls = self._classes.get(name)
        if cls is None:
            cls = message_factory.GetMessageClass(self.pool.FindMessageTypeByName(name))
            self._classes[name] = cls
        return cls


def _file_protos(messages: dict[str, list]) -> list[descriptor_pb2.FileDescriptorProto]:
    """One proto2 file per package, in dependency order."""
    packages: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    deps: dict[str, set[str]] = {}
    for full, entries in messages.items():
        package, short = full.rsplit(".", 1)
        fdp = packages.get(package)
        if fdp is None:
            fdp = packages[package] = descriptor_pb2.FileDescriptorProto(
                name=package.replace(".", "/") + ".proto", package=package, syntax="proto2")
            deps[package] = set()
        msg = fdp.message_type.add(name=short)
        for entry in entries:
            number, name, ftype, flags, ref = entry[:5]
            field = msg.field.add(name=name, number=number)
            if ftype == MAP:
                key_type, value_type, value_ref = ref
                entry_name = name[:1].upper() + name[1:] + "Entry"
                # A plain repeated entry message, not a map: same wire bytes, but keys can be
                # bytes (upb raises on invalid UTF-8 map keys) and we keep Go's sorted order.
                nested = msg.nested_type.add(name=entry_name)
                nested.field.add(name="key", number=1, type=_wire(key_type), label=1)
                value = nested.field.add(name="value", number=2, type=_wire(value_type), label=1)
                if value_ref:
                    value.type_name = "." + value_ref
                    deps[package].add(value_ref.rsplit(".", 1)[0])
                field.type, field.label = T_MESSAGE, 3
                field.type_name = f".{full}.{entry_name}"
                continue
            field.type = _wire(ftype)
            field.label = 3 if flags & REPEATED else 1
            if ref:
                field.type_name = "." + ref
                deps[package].add(ref.rsplit(".", 1)[0])
    ordered: list[descriptor_pb2.FileDescriptorProto] = []
    done: set[str] = set()

    def visit(package: str) -> None:
        if package in done:
            return
        done.add(package)
        for dep in sorted(deps[package] - {package}):
            visit(dep)
            packages[package].dependency.append(packages[dep].name)
        ordered.append(packages[package])

    for package in sorted(packages):
        visit(package)
    return ordered


def _wire(ftype: int) -> int:
    return T_BYTES if ftype == T_STRING else ftype


@functools.cache
def _codec() -> _Codec:
    return _Codec(orjson.loads(TABLE.read_bytes()))


def message_name(api_version: str, kind: str) -> str | None:
    """The protobuf message of a top-level kind, or None if it has no protobuf form here."""
    return _codec().kinds.get(f"{api_version}/{kind}")


# ---------------------------------------------------------------- decode


def decode(body: bytes, *, omit_empty: bool = False) -> dict:
    """A `k8s\\x00`-prefixed protobuf body as the JSON dict Kubernetes would have read.

    Go writes every non-pointer field, so empty strings and zero times arrive for fields the
    client never set; `omit_empty` leaves those out, as Go's JSON `omitempty` would."""
    if not isinstance(body, (bytes, bytearray, memoryview)) or bytes(body[:4]) != MAGIC:
        raise ProtobufError("protobuf body does not start with the Kubernetes magic k8s\\x00")
    codec = _codec()
    try:
        envelope = codec.message_class(UNKNOWN).FromString(bytes(body[4:]))
        api_version = _text(envelope.typeMeta.apiVersion)
        kind = _text(envelope.typeMeta.kind)
        if envelope.contentEncoding:
            raise ProtobufError(f"unsupported contentEncoding {_text(envelope.contentEncoding)!r}")
        if envelope.contentType not in (b"", CONTENT_TYPE.encode()):
            raise ProtobufError(f"unsupported contentType {_text(envelope.contentType)!r}")
        name = codec.kinds.get(f"{api_version}/{kind}")
        if name is None:
            raise ProtobufError(f"no protobuf message for apiVersion {api_version!r}, kind {kind!r}")
        obj = _to_json(codec, codec.message_class(name).FromString(envelope.raw), omit_empty)
    except DecodeError as e:
        raise ProtobufError(f"malformed protobuf body: {e}") from None
    except RecursionError:
        raise ProtobufError("malformed protobuf body: nested too deeply") from None
    return {"apiVersion": api_version, "kind": kind, **obj}


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _to_json(codec: _Codec, msg: Message, omit: bool = False) -> Any:
    name = msg.DESCRIPTOR.full_name
    special = _SPECIAL_DECODE.get(name)
    if special is not None:
        return special(codec, msg)
    if name in codec.lists:
        return [_text(v) for v in msg.items]
    fields = codec.fields[name]
    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        f = fields[fd.number]
        if f.type == MAP:
            out[f.json] = _map_to_json(codec, f, value)
        elif f.type == T_MESSAGE:
            if f.repeated:
                out[f.json] = [_to_json(codec, v, omit) for v in value]
            elif f.inline:
                out.update(_to_json(codec, value, omit))
            else:
                converted = _to_json(codec, value, omit)
                if omit and converted is None:
                    continue
                out[f.json] = converted
        elif f.type == T_BYTES:
            out[f.json] = [_b64(v) for v in value] if f.repeated else _b64(value)
        elif f.type == T_STRING:
            if omit and not f.repeated and value == b"":
                continue
            out[f.json] = [_text(v) for v in value] if f.repeated else _text(value)
        else:
            out[f.json] = list(value) if f.repeated else value
    return out


def _map_to_json(codec: _Codec, f: _Field, value: Any) -> dict:
    value_type, _ = f.map_value
    if value_type == T_MESSAGE:
        return {_text(e.key): _to_json(codec, e.value) for e in value}
    if value_type == T_BYTES:
        return {_text(e.key): _b64(e.value) for e in value}
    if value_type == T_STRING:
        return {_text(e.key): _text(e.value) for e in value}
    return {_text(e.key): e.value for e in value}


def _moment(msg: Message) -> datetime | None:
    if not msg.ListFields():
        return None  # Go reads an empty Time as the zero time, which JSON shows as null
    try:
        return EPOCH + timedelta(seconds=msg.seconds, microseconds=msg.nanos // 1000)
    except OverflowError:
        raise ProtobufError(f"time out of range: {msg.seconds}s") from None


def _time_to_json(codec: _Codec, msg: Message) -> str | None:
    moment = _moment(msg)
    return None if moment is None else _rfc3339(moment) + "Z"


def _micro_time_to_json(codec: _Codec, msg: Message) -> str | None:
    moment = _moment(msg)
    return None if moment is None else f"{_rfc3339(moment)}.{moment.microsecond:06d}Z"


def _rfc3339(m: datetime) -> str:
    # Not strftime: it drops the leading zeros of years before 1000, Go keeps four digits.
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"


def _int_or_string_to_json(codec: _Codec, msg: Message) -> int | str:
    if msg.type == 0:
        return msg.intVal
    if msg.type == 1:
        return _text(msg.strVal)
    raise ProtobufError(f"IntOrString with impossible type {msg.type}")


def _embedded_json(raw: bytes) -> Any:
    if not raw:
        return None
    if raw.startswith(MAGIC):
        return decode(raw)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ProtobufError(f"embedded object is not JSON: {e}") from None


_SPECIAL_DECODE: dict[str, Callable[[_Codec, Message], Any]] = {
    TIME: _time_to_json,
    MICRO_TIME: _micro_time_to_json,
    DURATION: lambda codec, msg: format_duration(msg.duration),
    QUANTITY: lambda codec, msg: _text(msg.string) if msg.HasField("string") else "0",
    INT_OR_STRING: _int_or_string_to_json,
    RAW_EXTENSION: lambda codec, msg: _embedded_json(msg.raw),
    FIELDS_V1: lambda codec, msg: _embedded_json(msg.Raw),
}


_UNITS = (("h", 3600 * 10**9), ("m", 60 * 10**9))


def format_duration(ns: int) -> str:
    """A duration in nanoseconds the way Go's time.Duration.String prints it ("1h5m0s", "1.5s")."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 10**9:
        for unit, size in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if ns >= size:
                return sign + _fraction(ns, size) + unit
    out = ""
    for unit, size in _UNITS:
        if ns >= size or out:
            out += f"{ns // size}{unit}"
            ns %= size
    return sign + out + _fraction(ns, 10**9) + "s"


def _fraction(ns: int, size: int) -> str:
    whole, rest = divmod(ns, size)
    if not rest:
        return str(whole)
    digits = str(rest).rjust(len(str(size)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9,
                "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds."""
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0
    parts = _DURATION_PART.findall(body)
    if not body or "".join(n + u for n, u in parts) != body:
        raise ProtobufError(f"invalid duration {text!r}")
    total = sum(Fraction(n) * _DURATION_NS[u] for n, u in parts)
    return -int(total) if text.startswith("-") else int(total)


# ---------------------------------------------------------------- encode


def encode(obj: dict) -> bytes:
    """A JSON-shaped object (with apiVersion and kind) as a Kubernetes protobuf body."""
    codec = _codec()
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    name = codec.kinds.get(f"{api_version}/{kind}")
    if name is None:
        raise ProtobufError(f"no protobuf message for apiVersion {api_version!r}, kind {kind!r}")
    msg = codec.message_class(name)()
    try:
        _from_json(codec, msg, {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")})
        raw = msg.SerializeToString(deterministic=True)
    except (TypeError, ValueError, AttributeError, OverflowError) as e:
        if isinstance(e, ProtobufError):
            raise
        raise ProtobufError(f"cannot encode {kind}: {e}") from None
    envelope = codec.message_class(UNKNOWN)()
    envelope.typeMeta.apiVersion = api_version.encode()
    envelope.typeMeta.kind = kind.encode()
    envelope.raw = raw
    # Kubernetes always writes these two, empty; keep the bytes the same as its encoder's.
    envelope.contentEncoding = b""
    envelope.contentType = b""
    return MAGIC + envelope.SerializeToString(deterministic=True)


def _from_json(codec: _Codec, msg: Message, value: Any) -> None:
    """Fill `msg` from its JSON form. Unknown keys are ignored, as Go's JSON decoder does."""
    name = msg.DESCRIPTOR.full_name
    special = _SPECIAL_ENCODE.get(name)
    if special is not None:
        msg.SetInParent()
        special(msg, value)
        return
    if name in codec.lists:
        msg.SetInParent()
        msg.items.extend(_scalar_from_json(T_STRING, v) for v in value)
        return
    if not isinstance(value, dict):
        raise ProtobufError(f"{name.rsplit('.', 1)[-1]}: expected an object, got {value!r:.60}")
    msg.SetInParent()
    fields = codec.by_json[name]
    inline: dict[str, dict] = {}
    for key, item in value.items():
        f = fields.get(key)
        if f is None:
            for inl, keys in codec.inline_keys.get(name, ()):
                if key in keys:
                    inline.setdefault(inl.name, {})[key] = item
                    break
            continue
        if item is None and not (f.type == T_MESSAGE and f.ref in _NULLABLE):
            continue  # JSON null is Go's nil/zero: nothing on the wire
        _set_field(codec, msg, f, item)
    for field_name, sub in inline.items():
        _from_json(codec, getattr(msg, field_name), sub)


def _set_field(codec: _Codec, msg: Message, f: _Field, item: Any) -> None:
    target = getattr(msg, f.name)
    if f.type == MAP:
        value_type, _ = f.map_value
        for k, v in sorted(item.items()):  # Go writes map entries sorted by key
            entry = target.add(key=_scalar_from_json(T_STRING, k))  # API map keys are strings
            if value_type == T_MESSAGE:
                _from_json(codec, entry.value, v)
            else:
                entry.value = _scalar_from_json(value_type, v)
    elif f.type == T_MESSAGE:
        if f.repeated:
            for v in item:
                _from_json(codec, target.add(), v)
        else:
            _from_json(codec, target, item)
    elif f.repeated:
        target.extend(_scalar_from_json(f.type, v) for v in item)
    else:
        setattr(msg, f.name, _scalar_from_json(f.type, item))


def _scalar_from_json(ftype: int, value: Any) -> Any:
    if ftype == T_STRING:
        if not isinstance(value, str):
            raise ProtobufError(f"expected a string, got {value!r:.60}")
        return value.encode()
    if ftype == T_BYTES:
        if not isinstance(value, str):
            raise ProtobufError(f"expected a base64 string, got {value!r:.60}")
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            raise ProtobufError(f"invalid base64 {value!r:.60}") from None
    return value


def _time_from_json(msg: Message, value: Any) -> None:
    if value is None:
        return  # present but empty: the zero time
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ProtobufError(f"invalid RFC3339 time {value!r:.60}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - EPOCH
    msg.seconds = delta.days * 86400 + delta.seconds
    msg.nanos = delta.microseconds * 1000


def _int_or_string_from_json(msg: Message, value: Any) -> None:
    # Kubernetes writes all three fields; readers look only at the one `type` names.
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ProtobufError(f"IntOrString must be an integer or a string, got {value!r:.60}")
    msg.type = 1 if isinstance(value, str) else 0
    msg.intVal = value if isinstance(value, int) else 0
    msg.strVal = value.encode() if isinstance(value, str) else b""


def _quantity_from_json(msg: Message, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ProtobufError(f"quantity must be a string or a number, got {value!r:.60}")
    msg.string = (value if isinstance(value, str) else str(value)).encode()


def _set_raw(field: str) -> Callable[[Message, Any], None]:
    def setter(msg: Message, value: Any) -> None:
        if value is not None:
            setattr(msg, field, orjson.dumps(value))

    return setter


_SPECIAL_ENCODE: dict[str, Callable[[Message, Any], None]] = {
    TIME: _time_from_json,
    MICRO_TIME: _time_from_json,
    DURATION: lambda msg, value: setattr(msg, "duration", parse_duration(value)),
    QUANTITY: _quantity_from_json,
    INT_OR_STRING: _int_or_string_from_json,
    RAW_EXTENSION: _set_raw("raw"),
    FIELDS_V1: _set_raw("Raw"),
}
# Go struct fields whose JSON null still puts an (empty) message on the wire.
_NULLABLE = {TIME, MICRO_TIME}
