#!/usr/bin/env bash
# Side by side, 1 thread: LiteRT (XNNPACK, the default resolver) on an int8 .tflite of the
# tinycnn network, and `shared`'s forward pass at every kernel level this CPU has (criterion).
# LiteRT runs before and after criterion so drift from other load on the machine shows.
#
#   bench/litert_vs_shared.sh            # both presets
#   SECONDS_PER_PRESET=10 bench/litert_vs_shared.sh
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
uptime
grep -m1 "model name" /proc/cpuinfo
echo "== LiteRT, before"
"$venv/bin/python" bench/litert_bench.py --seconds "$secs" 2>&1 | grep -v '^INFO'
echo "== shared (criterion: forward/<preset>/<level>, conv_rows_fashion, dense_acc_fc1)"
cargo bench -p tinycnn --bench forward -- 'forward/|conv_rows|dense_acc' 2>&1 |
    grep -E '^(forward|conv_rows|dense)|time:|skipping'
echo "== LiteRT, after"
"$venv/bin/python" bench/litert_bench.py --seconds "$secs" 2>&1 | grep -v '^INFO'
uptime
