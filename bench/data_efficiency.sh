#!/usr/bin/env bash
# The tutorial's exercise 2 with data: Fashion-MNIST test accuracy (full 10k test set) against
# training images per class, with and without augmentation, same recipe otherwise.
#
#   bench/data_efficiency.sh                            # 500 1000 2000 4800 per class, none vs centred
#   SIZES="500 4800" AUGMENTS="none centred photo" EPOCHS=10 bench/data_efficiency.sh
#
# "Images per class" counts training images after the 20% validation split, so a size of N trains
# on N per class from a folder of N / 0.8 per class (4800 is the whole training set). Each run's
# folder is runs/data-efficiency/<size>-<augment>; a finished run is not trained again. Writes
# runs/data-efficiency/results.csv, data_efficiency.png and table.md (for BENCHMARKS.md).
# Slow (minutes per run); not part of CI or the README commands. matplotlib goes into
# bench/.venv-plot on the first run.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes="${SIZES:-500 1000 2000 4800}"
augments="${AUGMENTS:-none centred}"
# The demo's recipe (xtask/src/pipeline.rs, DEMO_TRAIN_OPTIONS) without its --augment.
recipe=(--epochs "${EPOCHS:-25}" --lr 1e-3 --lr-schedule cosine --label-smoothing 0.1)
out=runs/data-efficiency
mkdir -p "$out"
cargo build --release --quiet -p tinycnn-host --bin tinycnn
cargo xtask data fashion-mnist >/dev/null
tinycnn="${CARGO_TARGET_DIR:-target}/release/tinycnn"
results="$out/results.csv"
[ -f "$results" ] || echo "images_per_class,augment,float_test_accuracy,best_val_accuracy,seconds" > "$results"
for size in $sizes; do
    folder_per_class=$(( size * 5 / 4 ))
    data="data/fashion-mnist-$folder_per_class"
    if [ "$size" -ge 4800 ]; then
        data=data/fashion-mnist
    else
        cargo xtask data fashion-mnist --per-class "$folder_per_class" --test-per-class 1000 --out "$data" >/dev/null
    fi
    for augment in $augments; do
        run="$out/$size-$augment"
        if grep -q "^$size,$augment," "$results"; then
            echo "$run: done before, kept"
            continue
        fi
        start=$(date +%s)
        "$tinycnn" train --preset fashion --data "$data/train" --test "$data/test" --out "$run" \
            --force --augment "$augment" "${recipe[@]}" >"$run.log" 2>&1 \
            || { echo "training $run failed; see $run.log" >&2; exit 1; }
        seconds=$(( $(date +%s) - start ))
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("{},{},{:.4f},{:.4f},{}".format(sys.argv[2], sys.argv[3], r["float_test_accuracy"], r["best_val_accuracy"], sys.argv[4]))' \
            "$run/report.json" "$size" "$augment" "$seconds" >>"$results"
        tail -n1 "$results"
    done
done
venv=bench/.venv-plot
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet matplotlib==3.10.3
fi
"$venv/bin/python" bench/data_efficiency_plot.py "$results" "$out/data_efficiency.png" "$out/table.md"
cat "$out/table.md"
