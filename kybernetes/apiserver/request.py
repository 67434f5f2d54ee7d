"""Reading requests: which resource a path names, request bodies, and which format to answer in."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import orjson
import yaml

from kybernetes.api import errors

MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's default max request body size

JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
APPLY_PATCH_CBOR = "application/apply-patch+cbor"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)


@dataclass(slots=True)
class RequestInfo:
    group: str
    version: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    watch_path: bool = False  # the deprecated /watch/ path prefix


@functools.lru_cache(maxsize=1024)  # collection paths repeat (every create POSTs to one)
def parse_path(path: str) -> RequestInfo | None:
    """/api/v1/namespaces/ns/pods/name/log → RequestInfo (shared: never change it); None for
    non-resource paths."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return None
    watch = False
    if rest[0] == "watch":
        watch, rest = True, rest[1:]
        if not rest:
            return None
    if rest[0] == "namespaces" and len(rest) >= 3 and not (
        len(rest) == 3 and rest[2] in ("status", "finalize")
    ):
        ns = rest[1]
        rest = rest[2:]
    elif rest[0] == "namespaces" and len(rest) >= 2:
        # the namespace object itself: namespaces/NAME[/status|finalize]
        return RequestInfo(group, version, "namespaces", None, rest[1],
                           rest[2] if len(rest) > 2 else None, watch)
    else:
        ns = None
    if len(rest) > 3 and rest[2] != "proxy":  # proxy paths carry a suffix for the target
        return None
    return RequestInfo(group, version, rest[0], ns,
                       rest[1] if len(rest) > 1 else None,
                       rest[2] if len(rest) > 2 else None, watch)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


async def read_body(request) -> bytes:
    """The request's body. One the parser already holds whole (nearly every API call) is taken
    in one piece; BaseRequest.read() loops over readany() and copies it twice."""
    payload = request.content
    if payload.is_eof():
        return payload.read_nowait(-1)
    return await request.read()


def decode_body(body: bytes, content_type: str | None) -> dict:
    """JSON, YAML or Kubernetes protobuf → a dict. Bad input → 400/415 Status."""
    if len(body) > MAX_BODY:
        raise errors.too_large()
    mt = media_type(content_type)
    if mt == PROTOBUF:
        from kybernetes.api import protobuf

        try:
            return protobuf.decode(body, omit_empty=True)
        except ValueError as e:
            raise errors.bad_request(f"the object provided is unrecognized: {e}") from None
    if mt in ("", JSON):
        return _json(body)
    if mt in (YAML, APPLY_PATCH, "application/x-yaml", "text/yaml"):
        return _yaml(body)
    raise errors.unsupported_media_type(mt)


def _json(body: bytes):
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise errors.bad_request(f"error decoding JSON: {e}") from None
    return value


def _yaml(body: bytes):
    try:
        value = yaml.safe_load(body)
    except yaml.YAMLError as e:
        raise errors.bad_request(f"error converting YAML to JSON: {e}") from None
    # YAML may produce non-JSON values (dates, sets): normalize through JSON.
    try:
        return orjson.loads(orjson.dumps(value, default=str))
    except (TypeError, orjson.JSONEncodeError) as e:
        raise errors.bad_request(f"error converting YAML to JSON: {e}") from None


def require_object(value, what: str = "the request body") -> dict:
    if not isinstance(value, dict):
        raise errors.bad_request(
            f"{what} must be a JSON object; got {_go_type(value)}")
    return value


def _go_type(value) -> str:
    """How Go's decoder would name a JSON value that is not an object."""
    if value is None:
        return "null"
    return {list: "array", str: "string", bool: "bool"}.get(type(value), "number")


def decode_kind(body: bytes, content_type: str | None, kind: str,
                api_versions: tuple[str, ...]) -> dict:
    """A body that must be one fixed kind (Binding, Eviction, Scale, DeleteOptions, reviews):
    an object of that kind whose fields have the right JSON types, else 400 as kube decodes."""
    return check_kind(require_object(decode_body(body, content_type)), kind, api_versions)


def check_kind(obj: dict, kind: str, api_versions: tuple[str, ...]) -> dict:
    """api_versions[0] names the schema; an empty tuple after it means any apiVersion goes
    (DeleteOptions is registered in every group version)."""
    from kybernetes.api import schemas

    got_kind, got_version = obj.get("kind"), obj.get("apiVersion")
    if got_kind not in (None, "", kind):
        raise errors.bad_request(
            f'no kind "{got_kind}" is registered for version "{got_version}": '
            f"expected {kind}")
    if got_version not in (None, "") and len(api_versions) > 1 and got_version not in api_versions:
        raise errors.bad_request(
            f"the API version in the data ({got_version}) does not match the expected API "
            f"version ({api_versions[0]})")
    walked = schemas.check(api_versions[0], kind, obj)
    if walked is not None and walked.decode_errors:
        _, message, _ = walked.decode_errors[0]
        version = api_versions[0].rsplit("/", 1)[-1]
        raise errors.bad_request(f'{kind} in version "{version}" cannot be handled as a {kind}: {message}')
    return obj


@dataclass(slots=True, frozen=True)
class Accept:
    """What the client wants back."""

    table: bool = False
    partial_metadata: bool = False
    include_object: str = "Metadata"  # for Tables: None | Metadata | Object


@functools.lru_cache(maxsize=256)  # clients send the same few headers
def parse_accept(header: str | None) -> Accept:
    """Take the first media range we can serve, as kube-apiserver negotiates."""
    if not header:
        return Accept()
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        mt = fields[0].lower()
        params = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
        if mt not in (JSON, "*/*", "application/*", YAML, PROTOBUF):
            continue
        if mt == PROTOBUF:
            # We answer JSON; kubectl always lists JSON as an alternative.
            continue
        as_ = params.get("as")
        if as_ == "Table":
            return Accept(table=True)
        if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList"):
            return Accept(partial_metadata=True)
        if as_:
            continue
        return Accept()
    if PROTOBUF in header:
        raise errors.not_acceptable(
            "only the following media types are accepted: application/json, application/yaml")
    return Accept()


def bool_param(query, name: str) -> bool:
    return query.get(name, "").lower() in ("true", "1")


def int_param(query, name: str) -> int | None:
    raw = query.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise errors.bad_request(f'invalid value for {name}: "{raw}"') from None


def dry_run(query) -> bool:
    values = query.getall("dryRun", [])
    for v in values:
        if v != "All":
            raise errors.bad_request(f'unsupported dry run option "{v}" (only "All")')
    return bool(values)
