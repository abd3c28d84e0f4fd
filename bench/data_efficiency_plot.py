"""Plot and table for bench/data_efficiency.sh: test accuracy against training images per class,
one line per augmentation setting and budget (equal epochs, or equal optimizer steps), and the
exercise's answer (how many images with augmentation match the full set without it, and the gain
at each size).

    python bench/data_efficiency_plot.py results.csv out.png table.md
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BUDGET_LABEL = {"epochs": "equal epochs", "steps": "equal steps"}

results, png, table = sys.argv[1:4]
# acc[budget][augment][size] = (test accuracy, epochs)
acc = {}
for row in csv.DictReader(open(results)):
    by_augment = acc.setdefault(row["budget"], {})
    by_augment.setdefault(row["augment"], {})[int(row["images_per_class"])] = (
        float(row["float_test_accuracy"]), int(row["epochs"]))
budgets = sorted(acc)
sizes = sorted({s for b in acc.values() for a in b.values() for s in a})

fig, ax = plt.subplots(figsize=(6.8, 4.4), dpi=120)
all_augments = sorted({a for b in acc.values() for a in b}, key=lambda a: (a != "none", a))
colour = {a: f"C{i}" for i, a in enumerate(all_augments)}
for budget in budgets:
    style = "-" if budget == "epochs" else "--"
    for augment in sorted(acc[budget], key=lambda a: (a != "none", a)):
        points = acc[budget][augment]
        xs = sorted(points)
        ax.plot(xs, [100 * points[s][0] for s in xs], style, marker="o", color=colour[augment],
                label=f"--augment {augment}, {BUDGET_LABEL.get(budget, budget)}")
ax.set_xscale("log")
ax.set_xticks(sizes, [str(s) for s in sizes])
ax.set_xlabel("training images per class (after the 20% validation split)")
ax.set_ylabel("Fashion-MNIST test accuracy, float (%)")
ax.set_title("tutorial CNN: accuracy against data, with and without augmentation")
ax.grid(True, alpha=0.3)
ax.legend(fontsize="small")
fig.tight_layout()
fig.savefig(png)

lines = []
for budget in budgets:
    by_augment = acc[budget]
    augments = sorted(by_augment, key=lambda a: (a != "none", a))
    none = by_augment.get("none", {})
    lines += [f"{BUDGET_LABEL.get(budget, budget)}:", "",
              "| images per class | epochs | " + " | ".join(f"`{a}`" for a in augments)
              + " | gain over `none` |",
              "|---|---|" + "---|" * len(augments) + "---|"]
    for s in sizes:
        epochs = sorted({by_augment[a][s][1] for a in augments if s in by_augment[a]})
        if not epochs:
            continue
        cells = [f"{100 * by_augment[a][s][0]:.2f}%" if s in by_augment[a] else "" for a in augments]
        gains = [f"`{a}` {100 * (by_augment[a][s][0] - none[s][0]):+.2f} pp" for a in augments
                 if a != "none" and s in by_augment[a] and s in none]
        lines.append(f"| {s} | {', '.join(map(str, epochs))} | " + " | ".join(cells) + " | "
                     + ", ".join(gains) + " |")
    if none:
        full = max(none)
        target = none[full][0]
        for a in augments:
            if a == "none":
                continue
            enough = [s for s in sorted(by_augment[a]) if by_augment[a][s][0] >= target]
            answer = (f"{enough[0]} images per class with `--augment {a}` reach the {100 * target:.2f}% "
                      f"of all {full} per class without augmentation" if enough else
                      f"no size with `--augment {a}` reaches the {100 * target:.2f}% of all {full} "
                      f"per class without it")
            lines += ["", answer + "."]
    lines.append("")
open(table, "w").write("\n".join(lines))
