#!/usr/bin/env bash
# The tutorial's exercise 2 with data: Fashion-MNIST test accuracy (full 10k test set) against
# training images per class, with and without augmentation, same recipe otherwise.
#
#   bench/data_efficiency.sh                            # 500 1000 2000 4800 per class, none vs centred
#   BUDGET=steps bench/data_efficiency.sh               # the same at equal optimizer steps
#   SIZES="500 4800" AUGMENTS="none centred photo" EPOCHS=10 bench/data_efficiency.sh
#
# BUDGET=epochs (the default) trains every size for EPOCHS epochs (25). BUDGET=steps trains a size
# of N per class for EPOCHS x 4800 / N epochs, so every run takes as many optimizer steps as the
# full set does in EPOCHS epochs: small sets are then not under-trained, which is where
# augmentation has room to help.
#
# "Images per class" counts training images after the 20% validation split, so a size of N trains
# on N per class from a folder of N / 0.8 per class (4800 is the whole training set). Each run's
# folder is runs/data-efficiency/<budget>-<size>-<augment>; a finished run is not trained
# again. Writes runs/data-efficiency/results.csv, data_efficiency.png and table.md (for
# BENCHMARKS.md); docs/data_efficiency.{csv,png} are one such run. THREADS=N passes --threads N,
# so that two instances (AUGMENTS=none, AUGMENTS=centred) can share the cores. Slow (minutes per
# run); not part of CI or the README commands. matplotlib goes into bench/.venv-plot on the
# first run.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes="${SIZES:-500 1000 2000 4800}"
augments="${AUGMENTS:-none centred}"
# The first recipe runs' schedule (BENCHMARKS.md, "training recipe"), shorter than the demo's.
epochs="${EPOCHS:-25}"
budget="${BUDGET:-epochs}"
case "$budget" in
    epochs | steps) ;;
    *) echo "BUDGET must be epochs or steps, not '$budget'" >&2; exit 2 ;;
esac
recipe=(--lr 1e-3 --lr-schedule cosine --label-smoothing 0.1)
out=runs/data-efficiency
mkdir -p "$out"
cargo build --release --quiet -p tinycnn-host --bin tinycnn
cargo xtask data fashion-mnist >/dev/null
tinycnn="${CARGO_TARGET_DIR:-target}/release/tinycnn"
results="$out/results.csv"
[ -f "$results" ] || echo "budget,images_per_class,augment,epochs,float_test_accuracy,best_val_accuracy,seconds" > "$results"
for size in $sizes; do
    folder_per_class=$(( size * 5 / 4 ))
    data="data/fashion-mnist-$folder_per_class"
    if [ "$size" -ge 4800 ]; then
        data=data/fashion-mnist
    else
        cargo xtask data fashion-mnist --per-class "$folder_per_class" --test-per-class 1000 --out "$data" >/dev/null
    fi
    run_epochs="$epochs"
    if [ "$budget" = steps ]; then
        run_epochs=$(( (epochs * 4800 + size / 2) / size ))
    fi
    for augment in $augments; do
        run="$out/$budget-$size-$augment"
        if grep -q "^$budget,$size,$augment," "$results"; then
            echo "$run: done before, kept"
            continue
        fi
        # The other budget's run of the same length (the full set) is the same run.
        same=$(grep -m1 "^[a-z]*,$size,$augment,$run_epochs," "$results" || true)
        if [ -n "$same" ]; then
            echo "$budget,${same#*,}" >>"$results"
            tail -n1 "$results"
            continue
        fi
        start=$(date +%s)
        "$tinycnn" train --preset fashion --data "$data/train" --test "$data/test" --out "$run" \
            --force --augment "$augment" --epochs "$run_epochs" "${recipe[@]}" ${THREADS:+--threads "$THREADS"} \
            >"$run.log" 2>&1 \
            || { echo "training $run failed; see $run.log" >&2; exit 1; }
        seconds=$(( $(date +%s) - start ))
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(",".join(sys.argv[2:6] + ["{:.4f}".format(r["float_test_accuracy"]), "{:.4f}".format(r["best_val_accuracy"]), sys.argv[6]]))' \
            "$run/report.json" "$budget" "$size" "$augment" "$run_epochs" "$seconds" >>"$results"
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
