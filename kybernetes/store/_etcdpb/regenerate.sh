#!/bin/sh
# Regenerate etcd_pb2.py from etcd.proto (dev-time only; needs grpcio-tools).
# The service stubs are built by hand in kybernetes/store/etcd.py, so only messages are generated.
set -e
cd "$(dirname "$0")"
PY="${PYTHON:-../../../.venv/bin/python}"
"$PY" -m grpc_tools.protoc -I. --python_out=. --pyi_out=. etcd.proto
