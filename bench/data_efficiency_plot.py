"""Plot and table for bench/data_efficiency.sh: test accuracy against training images per class,
one line per augmentation setting, and the exercise's answer (how many images with augmentation
match the full set without it, and the gain at each size).

    python bench/data_efficiency_plot.py results.csv out.png table.md
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

results, png, table = sys.argv[1:4]
acc = {}
for row in csv.DictReader(open(results)):
    acc.setdefault(row["augment"], {})[int(row["images_per_class"])] = float(row["float_test_accuracy"])
sizes = sorted({s for by_size in acc.values() for s in by_size})
augments = sorted(acc, key=lambda a: (a != "none", a))

fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
for augment in augments:
    xs = [s for s in sizes if s in acc[augment]]
    ax.plot(xs, [100 * acc[augment][s] for s in xs], marker="o", label=f"--augment {augment}")
ax.set_xscale("log")
ax.set_xticks(sizes, [str(s) for s in sizes])
ax.set_xlabel("training images per class (after the 20% validation split)")
ax.set_ylabel("Fashion-MNIST test accuracy, float (%)")
ax.set_title("tutorial CNN: accuracy against data, with and without augmentation")
ax.grid(True, alpha=0.3)
ax.legend()
fig.tight_layout()
fig.savefig(png)

lines = ["| images per class | " + " | ".join(f"`{a}`" for a in augments) + " | gain over `none` |",
         "|---|" + "---|" * len(augments) + "---|"]
for s in sizes:
    cells = [f"{100 * acc[a][s]:.2f}%" if s in acc[a] else "" for a in augments]
    gains = [f"`{a}` {100 * (acc[a][s] - acc['none'][s]):+.2f} pp" for a in augments
             if a != "none" and s in acc[a] and s in acc.get("none", {})]
    lines.append(f"| {s} | " + " | ".join(cells) + " | " + ", ".join(gains) + " |")
if "none" in acc and acc["none"]:
    full = max(acc["none"])
    target = acc["none"][full]
    for a in augments:
        if a == "none":
            continue
        enough = [s for s in sorted(acc[a]) if acc[a][s] >= target]
        answer = (f"{enough[0]} images per class with `--augment {a}` reach the {100 * target:.2f}% "
                  f"of all {full} per class without augmentation" if enough else
                  f"no size with `--augment {a}` reaches the {100 * target:.2f}% of all {full} per class without it")
        lines.append("")
        lines.append(answer + ".")
open(table, "w").write("\n".join(lines) + "\n")
