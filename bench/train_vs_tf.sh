#!/usr/bin/env bash
# Side by side: training throughput of TensorFlow/Keras (bench/train_tf.py) and
# `tinycnn bench-train` on the same network, batch 32, 2 threads, synthetic images, alternating
# TF, tinycnn, TF, tinycnn per preset so that load from elsewhere on the machine shows.
#
#   bench/train_vs_tf.sh                      # both presets, 2 rounds
#   ROUNDS=3 PRESETS=tutorial bench/train_vs_tf.sh
#
# TensorFlow lives in bench/.venv-tf (gitignored, created on the first run); it is not part of
# CI or the project's venv.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=bench/.venv-tf
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "tensorflow-cpu==2.21.0" numpy
fi
cargo build --release --quiet -p tinycnn-host --bin tinycnn
target_dir="${CARGO_TARGET_DIR:-target}"
libtorch="$(readlink -f .libtorch 2>/dev/null || true)"
export LD_LIBRARY_PATH="${libtorch:+$libtorch/lib:}${LD_LIBRARY_PATH:-}"
rounds="${ROUNDS:-2}"
uptime
grep -m1 "model name" /proc/cpuinfo
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for preset in ${PRESETS:-tutorial fashion}; do
    if [ "$preset" = tutorial ]; then steps=30; else steps=300; fi
    for _ in $(seq "$rounds"); do
        "$venv/bin/python" bench/train_tf.py --preset "$preset" --threads 2 --steps "$steps" 2>&1 | grep '^tf-train' | tee -a "$log"
        "$target_dir/release/tinycnn" bench-train --preset "$preset" --threads 2 --steps "$steps" | tee -a "$log"
    done
done
uptime
# Per preset: the median img/s of each side and their ratio (tinycnn / TensorFlow), and the ratio
# to TensorFlow's fastest run: on some hosts TensorFlow lands in a slow mode in some runs, which
# moves its median but not its best.
python3 - "$log" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r"(tf-train|bench-train) preset=(\w+) .*: ([0-9.]+) img/s", line)
    if m:
        runs.setdefault(m[2], {}).setdefault(m[1], []).append(float(m[3]))
for preset, sides in runs.items():
    tf, ours = (statistics.median(sides.get(k, [float("nan")])) for k in ("tf-train", "bench-train"))
    best = max(sides.get("tf-train", [float("nan")]))
    print(f"{preset}: TensorFlow median {tf:.1f} img/s (best {best:.1f}), tinycnn median {ours:.1f} img/s, "
          f"ratio {ours / tf:.2f}x ({ours / best:.2f}x of TensorFlow's best)")
PY
