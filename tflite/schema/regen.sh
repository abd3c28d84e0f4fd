#!/bin/sh
# Regenerates tflite/src/schema_generated.rs from the vendored TFLite schema.fbs.
#
# Needs flatc 2.0.8 (Debian bookworm: `apt-get install flatbuffers-compiler`); its Rust output
# matches the `flatbuffers` crate 2.x that tinycnn-tflite depends on.
#
# schema.fbs is TensorFlow's tensorflow/compiler/mlir/lite/schema/schema.fbs (Apache-2.0, see
# LICENSE here), copied unchanged from tensorflow/tflite-micro commit
# 90b983c2b3f1480642e040bbd2ddb37b998f3424. flatc 2.0.8 does not accept the `(deprecated)`
# attribute on an enum value or a union member (REDUCE_WINDOW, ReduceWindowOptions), so this
# script drops those two attributes on a temporary copy; the wire format is unchanged.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed -e 's/^\(  [A-Z_]* = [0-9]*\) (deprecated),/\1,/' \
    -e 's/^\(  [A-Za-z]*Options\) (deprecated),/\1,/' \
    "$here/schema.fbs" > "$tmp/schema.fbs"
flatc --rust -o "$tmp" "$tmp/schema.fbs"
cp "$tmp/schema_generated.rs" "$here/../src/schema_generated.rs"
echo "wrote $here/../src/schema_generated.rs"
