#!/usr/bin/env bash
# Side by side, 1 thread: LiteRT (XNNPACK, the default resolver) on an int8 .tflite of the
# tinycnn network, and `shared`'s forward pass at every kernel level this CPU has (criterion).
# LiteRT runs before and after criterion so drift from other load on the machine shows.
#
#   bench/litert_vs_shared.sh            # both presets
#   SECONDS_PER_PRESET=10 bench/litert_vs_shared.sh
#   FILTER='forward/|forward_model' bench/litert_vs_shared.sh   # only these criterion benches
#   RUN=runs/demo bench/litert_vs_shared.sh   # also a trained run: its model.tflite in LiteRT,
#                                             # its model.tcnn in criterion (forward_model/<level>)
#
# The venv lives in bench/.venv (gitignored) and is created on the first run.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=bench/.venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet ai-edge-litert==2.3.0 flatbuffers==25.12.19 numpy
fi
secs="${SECONDS_PER_PRESET:-5}"
models=()
if [ -n "${RUN:-}" ]; then
    for f in "$RUN/model.tflite" "$RUN/model.tcnn"; do
        [ -f "$f" ] || { echo "error: $f not found: run tinycnn quantize for $RUN first" >&2; exit 1; }
    done
    models=(--model "$RUN/model.tflite" --preset fashion --preset tutorial)
    # cargo bench runs in the package's folder, so the blob's path must be absolute.
    export TINYCNN_BENCH_MODEL="$(realpath "$RUN/model.tcnn")"
fi
uptime
grep -m1 "model name" /proc/cpuinfo
echo "== LiteRT, before"
"$venv/bin/python" bench/litert_bench.py --seconds "$secs" "${models[@]}" 2>&1 | grep -v '^INFO'
echo "== shared (criterion: forward/<preset>/<level>, conv_rows_fashion, dense_acc_fc1)"
cargo bench -p tinycnn --bench forward -- "${FILTER:-forward/|forward_model|conv_rows|dense_acc}" 2>&1 |
    grep --line-buffered -E '^(forward|conv_rows|dense)|time:|skipping|panicked|error'
echo "== LiteRT, after"
"$venv/bin/python" bench/litert_bench.py --seconds "$secs" "${models[@]}" 2>&1 | grep -v '^INFO'
uptime
