#!/usr/bin/env python3
"""Writes results/validation.csv and results/validation.md from one scripts/validate guest run.

Per scenario and strategy: the median over repetitions of every lab counter that has a kernel twin,
the lab's beside the kernel's, and for each difference the explanation from explained.tsv (or
UNEXPLAINED). Then the kernel's function counts, the two-node run, and the kernel's hmm-tests with
the lab's twin of each case. Standard library only.
"""
import argparse, csv, glob, os, re, statistics, sys

COUNTERS = ["pages_migrated", "pages_skipped", "walks", "walk_restarts", "faults", "cow_breaks", "swapins",
            "tlb_flushes", "invalidations", "thp_splits", "verify_failures"]
STRATEGIES = ["fault-then-migrate", "migrate-then-fault"]


def read_rows(path):
    if not os.path.exists(path):
        return None, []
    with open(path, newline="") as f:
        r = [row for row in csv.reader(f) if row and not row[0].startswith("#")]
    return (r[0], [dict(zip(r[0], row)) for row in r[1:]]) if r else (None, [])


def median(rows, column):
    values = [float(x[column]) for x in rows if x.get(column, "") != ""]
    if not values:
        return None
    m = statistics.median(values)
    return int(m) if m == int(m) else round(m, 1)


def explained(table, scenario, strategy, column):
    for (sc, st, col), text in table.items():
        if sc in ("*", scenario) and st in ("*", strategy) and col == column:
            return text
    return None


def load_explained(path):
    table = {}
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            sc, st, col, text = line.rstrip("\n").split("\t", 3)
            table[(sc, st, col)] = text
    return table


def hmm_tests(path, tests_dir):
    """(case, kernel outcome, lab twin) for every hmm-tests case of the guest run."""
    if not os.path.exists(path):
        return []
    titles = []
    for f in glob.glob(os.path.join(tests_dir, "**", "*.swift"), recursive=True):
        titles += re.findall(r'@Test\("([^"]+)"', open(f).read())
    out = []
    for line in open(path):
        m = re.match(r"(not ok|ok) \d+ (\w+)\.(\w+)\.(\w+)(.*)", line.strip())
        if not m:
            continue
        status, fixture, variant, case, rest = m.groups()
        outcome = "skip" if "SKIP" in rest else ("pass" if status == "ok" else "FAIL")
        twin = next((t for t in titles if re.match(rf"({fixture}\.)?{case}\b", t)), None)
        out.append((f"{fixture}.{variant}.{case}", outcome, twin))
    return out


def main():
    a = argparse.ArgumentParser()
    for opt in ("--dir", "--kernel", "--pages", "--reps", "--nodes", "--explained", "--csv", "--md"):
        a.add_argument(opt, required=True)
    args = a.parse_args()
    files = sorted(glob.glob(os.path.join(args.dir, "*-model.csv")))
    names = [os.path.basename(f)[:-len("-model.csv")] for f in files]
    names = [n for n in names if n != "thptable"]
    order = ["present", "none", "zero", "swap", "cow", "pinned", "device", "thp", "thp-fail", "roundtrip"]
    names.sort(key=lambda n: order.index(n) if n in order else 99)
    table = load_explained(args.explained)

    all_rows, header_out = [], None
    lines, matched, compared, unexplained = [], 0, 0, 0
    kfn_lines = []
    for name in names:
        mh, mrows = read_rows(os.path.join(args.dir, f"{name}-model.csv"))
        kh, krows = read_rows(os.path.join(args.dir, f"{name}-kernel.csv"))
        for h, rows in ((mh, mrows), (kh, krows)):
            if h and (header_out is None or len(h) > len(header_out)):
                header_out = h
            all_rows += [dict(r, scenario=name) for r in rows]
        opts = mrows[0]["mix"] if mrows else ""
        err = open(os.path.join(args.dir, f"{name}-kernel.err")).read().strip().splitlines() if os.path.exists(os.path.join(args.dir, f"{name}-kernel.err")) else []
        for direction in sorted({r["direction"] for r in mrows + krows}, key=lambda d: d != "to-device"):
            for strategy in STRATEGIES:
                m = [r for r in mrows if r["strategy"] == strategy and r["direction"] == direction]
                k = [r for r in krows if r["strategy"] == strategy and r["direction"] == direction]
                if not m and not k:
                    continue
                lines.append(f"\n**{name}** ({opts}{'' if direction == 'to-device' else ', ' + direction}), `{strategy}`\n")
                lines.append("| counter | lab | kernel | |")
                lines.append("|---|---:|---:|---|")
                for col in COUNTERS:
                    lv, kv = median(m, col), median(k, col)
                    if lv is None and kv is None:
                        continue
                    compared += 1
                    if lv == kv:
                        matched += 1
                        note = "="
                    else:
                        why = explained(table, name, strategy, col)
                        if why is None:
                            unexplained += 1
                        note = why or "UNEXPLAINED"
                    lines.append(f"| {col} | {'' if lv is None else lv} | {'' if kv is None else kv} | {note} |")
                if not k and err:
                    lines.append(f"\nkernel engine: `{err[-1]}`")
                kfn = sorted(c for c in (kh or []) if c.startswith("kfn_"))
                counts = [(c[4:], median(k, c)) for c in kfn]
                counts = [f"{n} {v}" for n, v in counts if v]
                if counts:
                    kfn_lines.append(f"| {name} | {direction} | {strategy} | {', '.join(counts)} |")
    thp_lines = []
    thp = {e: read_rows(os.path.join(args.dir, f"thptable-{e}.csv"))[1] for e in ("model", "kernel")}
    if thp["model"] and thp["kernel"]:
        thp_lines += ["", "## benchmark_thp_migration in both engines", "",
               "`bench thp-table --engine model|kernel --max-mib 16 --iterations 2`: 2 MiB folios moved whole per "
               "migration to the device, with `MADV_HUGEPAGE` (the kernel's from `folio_isolate_lru` calls). "
               "Times under software emulation are not the hardware's and are left out.", "",
               "| buffer | lab THP folios | kernel THP folios | |", "|---:|---:|---:|---|"]
        kernel_rows = {r["size_bytes"]: r for r in thp["kernel"] if r["thp"] == "1"}
        for r in (r for r in thp["model"] if r["thp"] == "1"):
            k = kernel_rows.get(r["size_bytes"], {}).get("thp_folios", "")
            compared += 1
            same = r["thp_folios"] == k
            matched += 1 if same else 0
            unexplained += 0 if same else 1
            thp_lines.append(f"| {int(r['size_bytes']) >> 10} KiB | {r['thp_folios']} | {k} | {'=' if same else 'UNEXPLAINED'} |")
    with open(args.csv, "w", newline="") as f:
        cols = ["scenario"] + (header_out or [])
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in all_rows:
            w.writerow(r)

    md = [f"# The lab beside the kernel",
          "",
          f"Made by `scripts/validate --nodes {args.nodes} --pages {args.pages} --reps {args.reps}` (one VM boot, {args.nodes} NUMA nodes, software emulation) on kernel "
          f"`{args.kernel}` (the distribution's linux-source-7.2 with `scripts/kernel-vm.d/config.fragment` and the test-driver fix of "
          "`scripts/kernel-vm.d/patches`), "
          f"{args.pages} pages per range, windows of 512, {args.reps} repetitions, seed 7, `--verify`. "
          "Each scenario runs in both engines with the same options: `bench --engine model` (the lab) and "
          "`bench --engine kernel` (lib/test_hmm.c's `/dev/hmm_dmirror0`), both with `--device-access read --fault-pages 32` "
          "(what the driver's READ asks: `REQ_FAULT` in 32-page calls). Values are medians over the repetitions; "
          "the kernel's counts are calls of the twin function (README, \"The kernel beside the model\"), counted by ftrace's "
          "function profiler. All rows: `validation.csv`.",
          "",
          f"**Headline: {matched} of {compared} counts equal; {compared - matched - unexplained} differ with the "
          f"kernel function that causes it named below; {unexplained} unexplained.**",
          "",
          "The unified strategy is the lab's only: no merged kernel has the RFC (see the end).",
          ""]
    findings = os.path.join(os.path.dirname(__file__), "findings.md")
    if os.path.exists(findings):
        md += [l.rstrip() for l in open(findings)] + ["", "## Count for count", ""]
    md += lines
    md += ["", "## The kernel's function calls per repetition (medians)", "",
           "| scenario | direction | strategy | calls |", "|---|---|---|---|"] + kfn_lines
    md += thp_lines
    node_runs = sorted(glob.glob(os.path.join(args.dir, "nodes-model-*.txt")))
    if node_runs:
        md += ["", "## The lab on several nodes", "",
               "`bench --strategy all --system-node 0 --device-node N --verify` in the same guest, for every node N "
               "but 0: every host page of both pools is read back with `move_pages` when the pool is made (the "
               "`# pools` line; a page off its node refuses the run), and `--verify` checks every byte moved. "
               "Times are software emulation's."]
        for path in node_runs:
            md += ["", "```"] + [l.rstrip() for l in open(path) if not l.startswith("# rows")] + ["```"]
        topo = os.path.join(args.dir, "topology.txt")
        if os.path.exists(topo):
            md += ["", "`bench topology`:", "", "```"] + [l.rstrip() for l in open(topo)] + ["```"]
    cases = hmm_tests(os.path.join(args.dir, "hmm-tests.txt"), os.path.join(os.path.dirname(__file__), "..", "..", "Tests"))
    if cases:
        md += ["", "## The kernel's hmm-tests beside the lab's twins", "",
               "The kernel's outcome in the same guest; the lab's twin is the Swift test named after the case "
               "(every one passes in `swift test`, which CI runs).", "",
               "| case | kernel | lab twin |", "|---|---|---|"]
        md += [f"| {c} | {o} | {t or 'none'} |" for c, o, t in cases]
    for name in ("rfc.md",):
        path = os.path.join(os.path.dirname(__file__), name)
        if os.path.exists(path):
            md += [""] + [l.rstrip() for l in open(path)]
    with open(args.md, "w") as f:
        f.write("\n".join(md) + "\n")
    print(f"validate: {matched} of {compared} counts equal, {unexplained} unexplained", file=sys.stderr)


if __name__ == "__main__":
    main()
