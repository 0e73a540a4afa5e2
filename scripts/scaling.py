#!/usr/bin/env python3
"""Prints the scaling table of a `bench sweep --vary jobs=1,2,4` (or `--vary devices=...`) CSV.

For each strategy and count (to the device): the median op p50 and p99, the aggregate rate
(`wall_gbps`: pages migrated x 4 KiB over the direction's wall time) and the wall time per window,
each against the smallest count, the cost growth per added job (the change of the wall time per
window, and of op p50, divided by the jobs added), the notifier retries and cross-job retries per
repetition, and the contention columns (µs per repetition). Medians over the repetitions.
Usage: scripts/scaling.py SWEEP.csv [--by jobs|devices]
"""
import csv
import statistics
import sys


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    if not rows:
        print(f"{path}: no rows", file=sys.stderr)
        sys.exit(1)
    return [r for r in rows if r["direction"] == "to-device"]


def med(rows, col, scale=1.0):
    vals = [float(r[col]) for r in rows if r.get(col, "") != ""]
    return statistics.median(vals) / scale if vals else float("nan")


def table(path, by):
    rows = load(path)
    waits = ["mmap_lock_wait_ns", "ptl_wait_ns", "lru_lock_wait_ns", "alloc_lock_wait_ns"]
    print(f"| strategy | {by} | op p50 (µs) | op p99 (µs) | rate (GB/s) | wall per window (µs) | rate vs {by} 1 "
          f"| cost growth per added {by[:-1]}: wall per window, op p50 | retries (cross-job) | mmap, ptl, lru, alloc wait (µs) |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---|")
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        counts = sorted({int(r[by]) for r in rows if r["strategy"] == strategy})
        base = None
        for n in counts:
            g = [r for r in rows if r["strategy"] == strategy and int(r[by]) == n]
            p50, p99 = med(g, "op_p50_ns", 1e3), med(g, "op_p99_ns", 1e3)
            rate = med(g, "wall_gbps")
            per_window = statistics.median(float(r["wall_ns"]) / float(r["ops"]) for r in g) / 1e3
            if base is None:
                base = (n, p50, rate, per_window)
            added = n - base[0]
            growth = ("—" if added == 0 else
                      f"{100 * (per_window / base[3] - 1) / added:+.0f}%, {100 * (p50 / base[1] - 1) / added:+.0f}%")
            wait = ", ".join(f"{med(g, c, 1e3):.0f}" for c in waits)
            print(f"| {strategy} | {n} | {p50:.0f} | {p99:.0f} | {rate:.2f} | {per_window:.0f} | ×{rate / base[2]:.2f} | {growth} "
                  f"| {med(g, 'notifier_retries'):.0f} ({med(g, 'cross_job_retries'):.0f}) | {wait} |")


if __name__ == "__main__":
    args = sys.argv[1:]
    by = "jobs"
    if "--by" in args:
        i = args.index("--by")
        by = args[i + 1]
        del args[i:i + 2]
    if len(args) != 1 or by not in ("jobs", "devices"):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        sys.exit(64)
    table(args[0], by)
