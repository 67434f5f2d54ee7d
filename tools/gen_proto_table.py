"""Write kybernetes/api/proto_table.json from the Kubernetes generated.proto files (dev time only).

    .venv/bin/python tools/gen_proto_table.py [--specs /work/shared/specs/k8s-api]

The .proto files are compiled with grpc_tools.protoc into a FileDescriptorSet; we keep only what
decoding needs (field numbers, names, types) plus two facts the .proto files cannot tell:
which embedded fields are `json:",inline"` in Go, and which (apiVersion, kind) pairs are real
top-level kinds. Both come from the official OpenAPI schemas shipped by kubernetes-validate.

Table layout (minified JSON):
  {"messages": {full_name: [[number, name, type, flags, ref], ...]},
   "lists": [full_name, ...],          # Go slice types wrapped as {repeated items = 1}
   "kinds": {"<apiVersion>/<kind>": full_name}}
type is the descriptor type number (9 string, 11 message, ...), or 0 for a map field whose ref
is [key_type, value_type, value_message_or_null]; flags: 1 repeated, 2 inline in JSON. A sixth
element, when present, is the JSON name (only where it differs from the proto field name).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "kybernetes" / "api" / "proto_table.json"
SCHEMA_VERSION = "v1.33.0-local"

REPEATED = 1
INLINE = 2
MAP = 0
F = descriptor_pb2.FieldDescriptorProto


def compile_protos(specs: Path) -> descriptor_pb2.FileDescriptorSet:
    protos = sorted(str(p.relative_to(specs)) for p in specs.rglob("generated.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "set.pb")
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{specs}", f"--descriptor_set_out={out}",
             "--include_imports", "--include_source_info", *protos],
            check=True, stderr=subprocess.DEVNULL,  # quiet "import unused" warnings
        )
        fds = descriptor_pb2.FileDescriptorSet()
        fds.ParseFromString(Path(out).read_bytes())
    return fds


def load_schemas() -> dict:
    import kubernetes_validate

    path = (Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / SCHEMA_VERSION
            / "_definitions.json")
    return json.loads(path.read_text())["$defs"]


def openapi_name(full_name: str) -> str:
    # k8s.io.api.core.v1.Pod -> io.k8s.api.core.v1.Pod
    assert full_name.startswith("k8s.io.")
    return "io.k8s." + full_name[len("k8s.io."):]


def nullable_messages(fd: descriptor_pb2.FileDescriptorProto) -> set[str]:
    """Messages whose leading comment says +protobuf.nullable=true (Go slice types)."""
    found = set()
    for loc in fd.source_code_info.location:
        path = list(loc.path)
        if len(path) == 2 and path[0] == 4 and "+protobuf.nullable=true" in loc.leading_comments:
            found.add(f"{fd.package}.{fd.message_type[path[1]].name}")
    return found


def build(specs: Path) -> dict:
    fds = compile_protos(specs)
    schemas = load_schemas()
    raw: dict[str, descriptor_pb2.DescriptorProto] = {}
    lists: set[str] = set()
    for fd in fds.file:
        if fd.package.startswith("google."):
            continue
        lists |= nullable_messages(fd)
        for msg in fd.message_type:
            raw[f"{fd.package}.{msg.name}"] = msg

    messages: dict[str, list] = {}
    problems: list[str] = []
    for full, msg in sorted(raw.items()):
        maps = {f"{full}.{n.name}": n for n in msg.nested_type if n.options.map_entry}
        props = schemas.get(openapi_name(full), {}).get("properties")
        fields = []
        for f in msg.field:
            ref = f.type_name.lstrip(".") or None
            flags = REPEATED if f.label == F.LABEL_REPEATED else 0
            if ref in maps:
                key, value = maps[ref].field
                fields.append([f.number, f.name, MAP, 0,
                               [key.type, value.type, value.type_name.lstrip(".") or None]])
                continue
            entry = [f.number, f.name, f.type, flags, ref]
            if props is not None and f.name not in props:
                sub = raw.get(ref) if ref else None
                renamed = [p for p in props if p.lower() == f.name.lower()]
                if len(renamed) == 1:
                    entry.append(renamed[0])  # go-to-protobuf kept the Go spelling (uID, Webhooks)
                elif sub is not None and any(s.name in props for s in sub.field):
                    entry[3] |= INLINE
                else:
                    problems.append(f"{full}.{f.name}: not in the OpenAPI schema")
            fields.append(entry)
        messages[full] = fields
        if props is not None:
            covered = {e[5] if len(e) > 5 else e[1] for e in fields}
            inline = [raw[e[4]] for e in fields if e[3] & INLINE]
            while inline:  # inline structs may embed further inline structs
                sub = inline.pop()
                covered |= {s.name for s in sub.field}
                inline += [raw[s.type_name.lstrip(".")] for s in sub.field
                           if s.name not in props and s.type_name.lstrip(".") in raw]
            missing = set(props) - covered - {"apiVersion", "kind"}
            if missing:
                problems.append(f"{full}: JSON properties without a field: {sorted(missing)}")

    kinds: dict[str, str] = {}
    for full in messages:
        for gvk in schemas.get(openapi_name(full), {}).get("x-kubernetes-group-version-kind", []):
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            kinds[f"{api_version}/{gvk['kind']}"] = full
    for p in problems:
        print("note:", p, file=sys.stderr)
    return {"messages": messages, "lists": sorted(lists), "kinds": dict(sorted(kinds.items()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--specs", type=Path, default=Path("/work/shared/specs/k8s-api"))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    table = build(args.specs)
    text = json.dumps(table, separators=(",", ":"))
    args.out.write_text(text + "\n")
    print(f"{args.out}: {len(table['messages'])} messages, {len(table['kinds'])} kinds, "
          f"{len(text)} bytes")


if __name__ == "__main__":
    main()
