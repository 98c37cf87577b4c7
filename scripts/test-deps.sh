#!/usr/bin/env bash
# What the tests need beyond npm: Debian's packages for the Python client (python3 with grpcio and
# protobuf, protoc with the gRPC Python plugin and the well-known protos) and Chromium for the web
# console's browser test. Installed only when missing, and only as root with apt-get; elsewhere the
# tests that need them fail and say which package to install.
set -euo pipefail
packages=()
if ! { python3 -c "import grpc, google.protobuf" 2>/dev/null || /usr/bin/python3 -c "import grpc, google.protobuf" 2>/dev/null; }; then
  packages+=(python3-grpcio python3-protobuf)
fi
# The Python test installs the package with pip, offline (no build isolation): setuptools and wheel.
python3 -c "import pip, setuptools, wheel" 2>/dev/null || /usr/bin/python3 -c "import pip, setuptools, wheel" 2>/dev/null || packages+=(python3-pip python3-setuptools python3-wheel)
command -v protoc >/dev/null || packages+=(protobuf-compiler)
command -v grpc_python_plugin >/dev/null || packages+=(protobuf-compiler-grpc)
[ -f /usr/include/google/protobuf/timestamp.proto ] || packages+=(libprotobuf-dev)
command -v chromium >/dev/null || packages+=(chromium)
[ ${#packages[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "installing for the tests: ${packages[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
else
  echo "the tests also need: ${packages[*]} (Debian/Ubuntu packages); the tests that use them will fail until they are installed" >&2
fi
