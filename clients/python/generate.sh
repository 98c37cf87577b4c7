#!/usr/bin/env bash
# Regenerates the Python stubs (agentd/v1/*_pb2*.py) from ../../proto. Offline, with what Debian
# ships: apt-get install protobuf-compiler protobuf-compiler-grpc (or: pip install grpcio-tools, and
# python -m grpc_tools.protoc with the same arguments and --grpc_python_out).
set -euo pipefail
cd "$(dirname "$0")"
rm -rf agentd
mkdir -p agentd
protoc -I ../../proto -I /usr/include \
  --python_out=. --grpc_out=. \
  --plugin=protoc-gen-grpc="$(command -v grpc_python_plugin)" \
  ../../proto/agentd/v1/*.proto
touch agentd/__init__.py agentd/v1/__init__.py
