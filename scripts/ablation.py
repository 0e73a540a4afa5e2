#!/usr/bin/env python3
"""Prints the cost ablation table of a `bench sweep --vary costs=none,flush,lru,driver,all` CSV.

For each strategy and mutator count: the median op with no cost paid, each cost alone added to it
(its share of the op with all costs, in %), and all costs together.
Usage: scripts/ablation.py SWEEP.csv [...]   (one table row per file, strategy and mutator count)
"""
import csv
import statistics
import sys


def table(paths):
    costs = ["flush", "lru", "driver"]
    print("| mix | strategy | mutators | op, no cost (µs) | " + " | ".join(f"+{c} (µs, % of all)" for c in costs) + " | op, all costs (µs) |")
    print("|---|---|---|---:|" + "---:|" * len(costs) + "---:|")
    for path in paths:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
        if not rows:
            print(f"{path}: no rows", file=sys.stderr)
            sys.exit(1)
        groups = {}
        for r in rows:
            groups.setdefault((r["strategy"], r["mutators"], r["direction"]), {}).setdefault(r["costs"], []).append(float(r["op_p50_ns"]))
        for (strategy, mutators, direction), by in sorted(groups.items()):
            if direction != "to-device":
                continue
            missing = [c for c in ["none", "all"] + costs if c not in by and not (c == "all" and "flush,lru,driver" in by)]
            if missing:
                print(f"{path}: {strategy} mutators {mutators} lacks costs {', '.join(missing)}", file=sys.stderr)
                sys.exit(1)
            med = {k: statistics.median(v) / 1000 for k, v in by.items()}
            all_ = med.get("all", med.get("flush,lru,driver"))
            cells = [f"{med[c] - med['none']:+.1f} ({100 * (med[c] - med['none']) / all_:.0f}%)" for c in costs]
            print(f"| {rows[0]['mix']} | {strategy} | {mutators} | {med['none']:.1f} | " + " | ".join(cells) + f" | {all_:.1f} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(64)
    try:
        table(sys.argv[1:])
    except (OSError, KeyError, ValueError) as e:
        print(f"ablation.py: {e}", file=sys.stderr)
        sys.exit(1)
