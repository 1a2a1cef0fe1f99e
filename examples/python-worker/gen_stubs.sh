#!/bin/sh
# Generates the Python stubs of proto/jobmesh/v1 into $1 (default: ./gen next to this script).
# Needs protoc, grpc_python_plugin and the well-known types (Debian: protobuf-compiler,
# protobuf-compiler-grpc, libprotobuf-dev).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
PROTO="$HERE/../../proto"
OUT=${1:-"$HERE/gen"}
WKT=${WKT_INCLUDE:-/usr/include}
mkdir -p "$OUT"
protoc -I"$PROTO" -I"$WKT" \
  --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" \
  --python_out="$OUT" --grpc_python_out="$OUT" \
  "$PROTO"/jobmesh/v1/*.proto
echo "stubs in $OUT"
