#!/usr/bin/env python3
"""Plot hmm-lab result CSVs (written by `bench`, `bench sweep` and `bench thp-table`).

Usage:
    scripts/plot.py [--out DIR] [--name PREFIX] FILE.csv [FILE.csv ...]

    --out DIR      where to write the plots (default: results/plots in the repository)
    --name PREFIX  base name of the plots (default: the CSV's file name without .csv, or
                   "combined" when several files are given)

Every plot is written twice, as DIR/PREFIX-<chart>.png and DIR/PREFIX-<chart>.svg.

For result CSVs (one row per strategy x repetition x direction; columns in README.md,
"CSV columns"); rows of several files are pooled:

    PREFIX-latency-cdf       op-latency distribution per strategy (and direction): an empirical
                             CDF built from each repetition's p50, p90, p99 and max, pooled over
                             the repetitions (the CSV holds no raw latencies)
    PREFIX-walks-per-op      walks per op (sum of walks / sum of ops) per strategy, restarts per
                             op stacked on top
    PREFIX-phases            per-op phase times (walk, fault, collect, alloc, copy, finalize;
                             median over repetitions), to-device direction only, in µs
    PREFIX-sweep-throughput  only when a configuration column (mix, thp, device_large_fail,
                             threads, jobs, devices, mutators, window_pages, pages, split_policy,
                             self_invalidation) takes more than one value: throughput (median
                             over repetitions) against the swept parameter, one line per
                             strategy; a swept mix is drawn against the fraction of the page
                             state that varies (e.g. swap)
    PREFIX-copy-threads      only when threads alone varies (bench sweep --vary threads=1,2,4): the
                             copy engine's rate (copy_gbps, median over repetitions) per strategy
                             beside plain memcpy run with the same number of threads
                             (memcpy_threads_gbps, measured when the run starts)
    PREFIX-scaling           only when jobs or devices alone vary (bench sweep --vary jobs=1,2,4):
                             left, the aggregate rate (wall_gbps: pages migrated x 4 KiB over the
                             direction's wall time, median over repetitions) against the count,
                             with the linear ideal from the smallest count dashed; right, op p50
                             and p99 (medians over repetitions) against the count

When the rows hold several configurations, the latency, walks and phases charts get one panel
per configuration.

For a thp-table CSV (header size_bytes,thp,to_device_ms,...):

    PREFIX-thp-table         throughput in GiB/s against buffer size, THP against 4 KiB pages,
                             one panel per direction

Each chart carries a caption with the machine and the settings read from the CSV. Empty fields
mean "not measured" and are left out, never taken as 0. A missing column or a field that is not
a number where one is needed stops the script with one line on stderr
("plot.py: FILE line N column C: problem") and exit status 2; so does a CSV of another kind.

Needs Python 3 and matplotlib (python3 -m pip install matplotlib); draws with the Agg backend.
"""

import argparse
import csv
import math
import os
import statistics
import sys
from collections import OrderedDict

PROG = "plot.py"

RESULT_REQUIRED = [
    "strategy", "direction", "rep", "ops", "walks", "walk_restarts",
    "op_mean_ns", "op_p50_ns", "op_p90_ns", "op_p99_ns", "op_max_ns",
    "walk_ns", "fault_ns", "collect_ns", "alloc_ns", "copy_ns", "finalize_ns",
    "throughput_gbps", "mix", "pages", "window_pages", "thp", "device_large_fail",
    "split_policy", "self_invalidation", "threads", "mutators",
    "host", "cpu_model", "kernel", "backing", "numa_nodes", "run_id",
]
# Columns added later: a file without them has the default.
RESULT_OPTIONAL = {"jobs": "1", "devices": "1", "wall_gbps": "", "cpus": "", "copy_gbps": "",
                   "memcpy_gbps": "", "memcpy_threads_gbps": ""}
OPTIONAL_NUMERIC = ["wall_gbps", "copy_gbps", "memcpy_gbps", "memcpy_threads_gbps"]
# Measured values: a number, or empty for "not measured".
RESULT_NUMERIC = [
    "ops", "walks", "walk_restarts", "op_mean_ns", "op_p50_ns", "op_p90_ns", "op_p99_ns",
    "op_max_ns", "walk_ns", "fault_ns", "collect_ns", "alloc_ns", "copy_ns", "finalize_ns",
    "throughput_gbps",
]
# Configuration columns that make a sweep when they take more than one value.
CONFIG_COLS = ["mix", "thp", "device_large_fail", "threads", "jobs", "devices", "mutators",
               "window_pages", "pages", "split_policy", "self_invalidation"]
CONFIG_NUMERIC = ["thp", "device_large_fail", "threads", "jobs", "devices", "mutators",
                  "window_pages", "pages"]
CONFIG_LABELS = {
    "thp": "THP (0 = 4 KiB pages, 1 = 2 MiB folios)",
    "device_large_fail": "injected 2 MiB device-allocation failure rate",
    "threads": "copy threads",
    "jobs": "jobs (op threads on one address space)",
    "devices": "devices",
    "mutators": "mutator threads",
    "window_pages": "window (pages per op)",
    "pages": "range (pages)",
    "split_policy": "THP split policy",
    "self_invalidation": "self-invalidation handling",
    "mix": "page-state mix",
}
THP_REQUIRED = ["size_bytes", "thp", "to_device_gibps", "to_system_gibps"]
THP_OPTIONAL_NUMERIC = ["to_device_ms", "to_system_ms", "thp_folios"]

LEVELS = [("op_p50_ns", 0.5), ("op_p90_ns", 0.9), ("op_p99_ns", 0.99), ("op_max_ns", 1.0)]
PHASES = [("walk_ns", "walk"), ("fault_ns", "fault"), ("collect_ns", "collect"),
          ("alloc_ns", "alloc"), ("copy_ns", "copy"), ("finalize_ns", "finalize")]
PHASE_COLOURS = ["#4C72B0", "#C44E52", "#8172B3", "#CCB974", "#55A868", "#64B5CD"]
STRATEGY_COLOURS = {"fault-then-migrate": "#1f77b4", "migrate-then-fault": "#d62728",
                    "unified": "#2ca02c"}
SPARE_COLOURS = ["#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
WALK_COLOUR, RESTART_COLOUR = "#4C72B0", "#DD8452"
CAPTION_FONT = 7
PNG_DPI = 150


class PlotError(Exception):
    """A problem with the input, reported as one line and exit status 2."""


# --------------------------------------------------------------------------- reading


def parse_number(path, line, col, text, required=False):
    """A finite float, None for an empty field (not measured); PlotError otherwise."""
    text = text.strip()
    if text == "":
        if required:
            raise PlotError(f"{path} line {line} column {col}: empty, a number is needed")
        return None
    try:
        value = float(text)
    except ValueError:
        raise PlotError(f"{path} line {line} column {col}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise PlotError(f"{path} line {line} column {col}: {text!r} is not a finite number")
    return value


def warn_unfinished(path, header, records, completion):
    """One line on stderr when a result file of a tool that writes completion records has none, or
    says the run was interrupted: its rows are what was written before it stopped."""
    if completion == "complete" or "tool_version" not in header:
        return
    column = header.index("tool_version")
    try:
        version = tuple(int(x) for x in records[0][1][column].split("."))
    except (ValueError, IndexError):
        return
    if version < (0, 6, 0):
        return
    why = "the run was interrupted" if completion == "interrupted" else "no completion record: the run did not finish"
    print(f"{PROG}: warning: {path}: {why}; plotting the rows written before it stopped", file=sys.stderr)


def read_csv(path):
    """(kind, rows) with kind "results" or "thp-table"; each row a dict with _file, _line."""
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as err:
        raise PlotError(f"{path}: cannot read: {err.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        records = []
        completion = None
        metadata = {}
        try:
            header = next(reader, None)
            while header and header[0].startswith("#"):  # metadata lines, "# command: bench ..."
                key, _, value = ",".join(header).lstrip("# ").partition(": ")
                metadata[key] = value
                header = next(reader, None)
            for record in reader:
                if not record or all(not field.strip() for field in record):
                    continue
                if record[0].startswith("#"):  # the completion record, "# end: complete, N rows"
                    completion = record[0][len("# end: "):] if record[0].startswith("# end: ") else None
                    continue
                records.append((reader.line_num, record))
        except csv.Error as err:
            raise PlotError(f"{path} line {reader.line_num}: not valid CSV: {err}") from None
        except UnicodeDecodeError:
            raise PlotError(f"{path} line {reader.line_num + 1}: not UTF-8 text") from None
    if not header:
        raise PlotError(f"{path} line 1: empty file, not a bench result or thp-table CSV")
    header = [name.strip() for name in header]
    if "strategy" in header and "direction" in header:
        kind, required = "results", RESULT_REQUIRED
    elif "size_bytes" in header and "to_device_gibps" in header:
        kind, required = "thp-table", THP_REQUIRED
    else:
        raise PlotError(f"{path} line 1: unknown CSV: the header has neither bench result columns "
                        f"(strategy, direction, ...) nor thp-table columns (size_bytes, thp, ...)")
    for col in required:
        if col not in header:
            raise PlotError(f"{path} line 1 column {col}: missing from the header")
    if not records:
        raise PlotError(f"{path} line 2: no data rows")
    warn_unfinished(path, header, records, completion)
    rows = []
    for line, record in records:
        if len(record) != len(header):
            raise PlotError(f"{path} line {line}: {len(record)} fields, the header has {len(header)}")
        raw = dict(zip(header, record))
        row = {"_file": path, "_line": line, "_command": metadata.get("command")}
        if kind == "results":
            for col in RESULT_REQUIRED:
                row[col] = raw[col].strip()
            for col, default in RESULT_OPTIONAL.items():
                row[col] = raw.get(col, default).strip() or default
            for col in OPTIONAL_NUMERIC:
                row[col] = parse_number(path, line, col, row[col])
            for col in ("strategy", "direction"):
                if not row[col]:
                    raise PlotError(f"{path} line {line} column {col}: empty")
            rep = parse_number(path, line, "rep", raw["rep"], required=True)
            row["rep"] = int(rep) if rep == int(rep) else rep
            for col in RESULT_NUMERIC:
                row[col] = parse_number(path, line, col, raw[col])
            for col in CONFIG_NUMERIC:
                parse_number(path, line, col, row[col])  # validated; kept as text for captions
            row["verify_failures"] = raw.get("verify_failures", "").strip()
        else:
            row["size_bytes"] = parse_number(path, line, "size_bytes", raw["size_bytes"], True)
            if row["size_bytes"] <= 0:
                raise PlotError(f"{path} line {line} column size_bytes: must be positive")
            thp = parse_number(path, line, "thp", raw["thp"], required=True)
            if thp not in (0.0, 1.0):
                raise PlotError(f"{path} line {line} column thp: {raw['thp'].strip()!r} is not 0 or 1")
            row["thp"] = int(thp)
            for col in ("to_device_gibps", "to_system_gibps"):
                row[col] = parse_number(path, line, col, raw[col])
            for col in THP_OPTIONAL_NUMERIC:
                if col in raw:
                    row[col] = parse_number(path, line, col, raw[col])
        rows.append(row)
    return kind, rows


# --------------------------------------------------------------------------- helpers


def unique(values):
    """Distinct values in order of first appearance."""
    return list(OrderedDict.fromkeys(values))


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def parse_mix(text):
    """{state: fraction} from "present=0.9,swap=0.1", None if it does not parse."""
    mix = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        try:
            mix[name.strip()] = float(value)
        except ValueError:
            return None
        if not sep:
            return None
    return mix or None


def config_value(row, col):
    """A comparable form of a configuration field (numbers as floats, mixes as sorted items)."""
    text = row[col]
    if col in CONFIG_NUMERIC and text != "":
        return float(text)
    if col == "mix":
        mix = parse_mix(text)
        return tuple(sorted(mix.items())) if mix is not None else text
    return text


def fmt_num(value):
    if value is None:
        return "n/a"
    if value == int(value):
        return str(int(value))
    return f"{value:g}"


def strategy_colours(strategies):
    colours, spare = {}, iter(SPARE_COLOURS * 4)
    for s in strategies:
        colours[s] = STRATEGY_COLOURS.get(s) or next(spare)
    return colours


def size_label(size):
    """512K, 1M, 256M, 1G."""
    for unit, div in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= div:
            value = size / div
            return f"{value:g}{unit}"
    return f"{size:g}"


class Sweep:
    """The configurations of a set of result rows: which columns vary and how to show them."""

    def __init__(self, rows):
        self.varying = [c for c in CONFIG_COLS if len({config_value(r, c) for r in rows}) > 1]
        self.keys = unique(self.key(r) for r in rows)
        self.xlabel, self.numeric, self.log2 = None, False, False
        self.state = None
        xs = {}
        if self.varying == ["mix"]:
            mixes = {k: dict(k[0]) if isinstance(k[0], tuple) else None for k in self.keys}
            if all(m is not None for m in mixes.values()):
                states = sorted({s for m in mixes.values() for s in m if s != "present"})
                moving = [s for s in states if len({m.get(s, 0.0) for m in mixes.values()}) > 1]
                if len(moving) == 1 and len({m.get(moving[0], 0.0) for m in mixes.values()}) \
                        == len(mixes):
                    self.state = moving[0]
                    self.numeric = True
                    xs = {k: mixes[k].get(self.state, 0.0) for k in self.keys}
                    self.xlabel = f"fraction of pages in state '{self.state}' (from mix)"
        elif len(self.varying) == 1 and self.varying[0] in CONFIG_NUMERIC \
                and all(isinstance(k[0], float) for k in self.keys):
            col = self.varying[0]
            self.numeric = True
            xs = {k: k[0] for k in self.keys}
            self.xlabel = CONFIG_LABELS[col]
            vals = [v for v in xs.values() if v > 0]
            if col in ("window_pages", "pages", "threads") and len(vals) == len(xs) \
                    and max(vals) / min(vals) >= 8:
                self.log2 = True
        if self.numeric:
            self.keys.sort(key=lambda k: xs[k])
            self.x = xs
        else:
            self.keys.sort(key=lambda k: tuple(str(v) for v in k))
            self.x = {k: i for i, k in enumerate(self.keys)}
            if self.varying:
                self.xlabel = ("configuration (" + ", ".join(self.varying) + ")"
                               if len(self.varying) > 1 else CONFIG_LABELS[self.varying[0]])

    def key(self, row):
        return tuple(config_value(row, c) for c in self.varying)

    def label(self, key, short=False):
        """How a configuration is named on a panel title or a category tick."""
        if not self.varying:
            return ""
        if self.state is not None:
            return f"{self.state} = {fmt_num(self.x[key])}"
        parts = []
        for col, value in zip(self.varying, key):
            if isinstance(value, tuple):
                value = ",".join(f"{n}={fmt_num(v)}" for n, v in value)
            elif isinstance(value, float):
                value = fmt_num(value)
            parts.append(value if short and len(self.varying) == 1 else f"{col} {value}")
        return ", ".join(parts)


def legend_outside(axes, handles, labels, below=False):
    """A legend right of the top-right panel (or under a single panel), where tight_layout makes
    room for it."""
    if not handles:
        return
    if below and len(axes) == 1:
        fig = axes[0].figure
        w, h = fig.get_size_inches()
        fig.set_size_inches(w, h + 0.2 * math.ceil(len(labels) / 2))
        axes[0].legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.14),
                       fontsize=8, ncol=2 if len(labels) > 3 else len(labels), framealpha=0.9)
        return
    top_right = max(axes, key=lambda ax: (-ax.get_subplotspec().rowspan.start,
                                          ax.get_subplotspec().colspan.start))
    top_right.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8,
                     borderaxespad=0.0, framealpha=0.9)


def place_value_labels(ax, points):
    """Label (x, y, text, colour) points just right of each, the labels at one x stacked so that
    they do not overlap (call once the layout is final)."""
    scale = 72.0 / ax.figure.dpi
    by_x = OrderedDict()
    for p in points:
        by_x.setdefault(p[0], []).append(p)
    for pts in by_x.values():
        previous = None
        for px, py, text, colour in sorted(pts, key=lambda p: -p[1]):
            yd = ax.transData.transform((px, py))[1] * scale
            centre = yd if previous is None else min(yd, previous - 10)
            previous = centre
            ax.annotate(text, (px, py), xytext=(6, centre - yd), textcoords="offset points",
                        ha="left", va="center", fontsize=7, color=colour,
                        bbox=dict(boxstyle="square,pad=0.1", facecolor="white", edgecolor="none",
                                  alpha=0.85))


# --------------------------------------------------------------------------- captions


def values_text(rows, col, sep=" | "):
    vals = unique(r[col] for r in rows)
    vals = [v if v != "" else "(empty)" for v in vals]
    if len(vals) == 1:
        return vals[0]
    return "{" + sep.join(vals) + "}"


def reps_text(rows):
    counts = {}
    for r in rows:
        key = (r["_file"], r["run_id"], r["strategy"], r["direction"],
               tuple(r[c] for c in CONFIG_COLS))
        counts.setdefault(key, set()).add(r["rep"])
    sizes = sorted({len(v) for v in counts.values()})
    text = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
    return text + (" rep" if text == "1" else " reps") + " per strategy, direction and configuration"


def results_caption(rows, note=""):
    numa = values_text(rows, "numa_nodes")
    verify = unique(r["verify_failures"] for r in rows)
    run_ids = unique(r["run_id"] for r in rows)
    runs = ", ".join(run_ids) if len(run_ids) <= 6 else \
        f"{', '.join(run_ids[:5])} and {len(run_ids) - 5} more"
    files = ", ".join(unique(os.path.relpath(r["_file"]) for r in rows))
    lines = []
    if note:
        lines.append(note)
    lines.append(
        f"Machine: host {values_text(rows, 'host')}, {values_text(rows, 'cpu_model')}, "
        f"kernel {values_text(rows, 'kernel')}, {numa} NUMA node{'s' if numa != '1' else ''}, "
        + (f"system pool {values_text(rows, 'system_backing')}, device pool {values_text(rows, 'device_backing')}."
           if rows[0].get("system_backing") else f"backing {values_text(rows, 'backing')}."))
    lines.append(
        f"Settings: pages {values_text(rows, 'pages')}, window_pages {values_text(rows, 'window_pages')}, "
        f"mix {values_text(rows, 'mix')}, thp {values_text(rows, 'thp')}, "
        f"device_large_fail {values_text(rows, 'device_large_fail')}, "
        f"split_policy {values_text(rows, 'split_policy')}, "
        f"self_invalidation {values_text(rows, 'self_invalidation')}, "
        f"threads {values_text(rows, 'threads')}, mutators {values_text(rows, 'mutators')}, "
        f"directions {values_text(rows, 'direction')}"
        + (", --verify on" if verify and all(v != "" for v in verify) else "")
        + f"; {reps_text(rows)}.")
    lines.append(f"Run {runs}; source {files}.")
    lines.append(commands_text(rows))
    return "\n".join(lines)


def commands_text(rows):
    """The command line of each file, from its metadata ("# command: ..."), for the caption."""
    per_file = OrderedDict((r["_file"], r.get("_command")) for r in rows)
    parts = [f"{c}" if len(per_file) == 1 else f"{os.path.relpath(f)}: {c}"
             for f, c in per_file.items() if c]
    missing = [os.path.relpath(f) for f, c in per_file.items() if not c]
    text = "Command: " + "; ".join(parts) if parts else ""
    if missing:
        text += (" " if text else "") + f"(no command recorded in {', '.join(missing)})"
    return text


# --------------------------------------------------------------------------- figures


def wrap_to_width(fig, text, width_pt):
    """Lines of text (paragraphs split on newlines) no wider than width_pt at the caption size.
    The width of a character is measured once (on a sample line of the caption's own text) and
    lines are filled by count, with 3% to spare: measuring every candidate line with the renderer
    cost most of a run's plotting time."""
    from matplotlib.font_manager import FontProperties
    renderer = fig.canvas.get_renderer()
    font = FontProperties(size=CAPTION_FONT)
    sample = text.replace("\n", " ")[:400] or "x"
    w, _, _ = renderer.get_text_width_height_descent(sample, font, ismath=False)
    per_char = w * 72.0 / fig.dpi / len(sample)
    max_chars = max(20, int(width_pt * 0.97 / per_char))

    def fits(line):
        return len(line) <= max_chars

    lines = []
    for para in text.split("\n"):
        current = ""
        for word in para.split(" "):
            candidate = word if not current else current + " " + word
            if current and not fits(candidate):
                lines.append(current)
                current = word
            else:
                current = candidate
        lines.append(current)
    return lines


class Plotter:
    def __init__(self, plt, outdir, prefix):
        self.plt, self.outdir, self.prefix = plt, outdir, prefix
        self.written = []

    def finish(self, fig, title, caption, chart, after_layout=None):
        """Title, wrapped caption under the axes, layout, and PNG + SVG."""
        width, height = fig.get_size_inches()
        lines = wrap_to_width(fig, caption, (width - 0.3) * 72 * 0.98)
        cap_h = (len(lines) * CAPTION_FONT * 1.35 + 12) / 72
        total = height + cap_h
        fig.set_size_inches(width, total)
        fig.text(0.012, 5 / 72 / total, "\n".join(lines), fontsize=CAPTION_FONT, ha="left",
                 va="bottom", linespacing=1.35, color="#333333")
        fig.suptitle(title, fontsize=12, fontweight="bold")
        fig.tight_layout(rect=(0, cap_h / total, 1, 1))
        if after_layout is not None:
            after_layout()
        base = os.path.join(self.outdir, f"{self.prefix}-{chart}")
        try:
            # zlib level 1: a third of the PNG time at level 6, files about a fifth larger
            fig.savefig(base + ".png", dpi=PNG_DPI, metadata={"Software": None},
                        pil_kwargs={"compress_level": 1})
            fig.savefig(base + ".svg", metadata={"Date": None})
        except OSError as err:
            raise PlotError(f"{base}: cannot write the plot: {err.strerror}") from None
        self.plt.close(fig)
        self.written += [base + ".png", base + ".svg"]

    def grid(self, n, panel_w, panel_h, sharex=False, sharey=False, max_cols=2):
        cols = min(max_cols, n)
        nrows = math.ceil(n / cols)
        fig, axes = self.plt.subplots(nrows, cols, figsize=(panel_w * cols, panel_h * nrows),
                                      sharex=sharex, sharey=sharey, squeeze=False)
        flat = [ax for row in axes for ax in row]
        for ax in flat[n:]:
            ax.set_visible(False)
        return fig, flat[:n]

    # ----------------------------------------------------------------- latency CDF

    def latency_cdf(self, rows, sweep, name):
        import numpy as np
        strategies = unique(r["strategy"] for r in rows)
        directions = unique(r["direction"] for r in rows)
        colours = strategy_colours(strategies)
        styles = dict(zip(directions, ["-", "--", ":", "-."]))
        markers = dict(zip(directions, ["o", "s", "^", "D"]))
        facets = sweep.keys
        fig, axes = self.grid(len(facets), 6.4 if len(facets) > 1 else 9.0, 4.6,
                              sharex=True, sharey=True)
        # y axis stretched so that the measured levels are evenly spaced
        qs = [-1.0, 0.0, 0.5, 0.9, 0.99, 1.0, 2.0]
        ps = [-0.5, 0.0, 0.5, 1.5, 2.5, 3.5, 103.5]
        fwd = lambda y: np.interp(y, qs, ps)  # noqa: E731
        inv = lambda p: np.interp(p, ps, qs)  # noqa: E731
        log_x = True  # the same kind of axis in every latency CDF, one run or a sweep
        drew_any = False
        for ax, facet in zip(axes, facets):
            frows = [r for r in rows if sweep.key(r) == facet]
            for d in directions:
                for s in strategies:
                    grp = [r for r in frows if r["strategy"] == s and r["direction"] == d]
                    reps = [[(r[c] / 1000.0, q) for c, q in LEVELS if r[c] is not None and r[c] > 0]
                            for r in grp]
                    reps = [p for p in reps if p]
                    if not reps:
                        continue
                    drew_any = True
                    xs = sorted({v for p in reps for v, _ in p})
                    ys = [sum(max([q for v, q in p if v <= x], default=0.0) for p in reps) / len(reps)
                          for x in xs]
                    mean = median(r["op_mean_ns"] for r in grp)
                    p50 = median(r["op_p50_ns"] for r in grp)
                    label = s if len(directions) == 1 else f"{s}, {d}"
                    stats = []
                    if p50 is not None:
                        stats.append(f"p50 {p50 / 1000:.0f}")
                    if mean is not None:
                        stats.append(f"mean {mean / 1000:.0f}")
                    if stats and len(facets) == 1:
                        label += f" ({', '.join(stats)} µs)"
                    start = xs[0] * (0.97 if log_x else 1.0) - (0 if log_x else 0.01 * (xs[-1] - xs[0] + xs[0] * 0.05))
                    ax.step([start] + xs, [0.0] + ys, where="post", color=colours[s],
                            linestyle=styles[d], linewidth=1.8, label=label)
                    px = [v for p in reps for v, _ in p]
                    py = [q for p in reps for _, q in p]
                    ax.scatter(px, py, s=16, color=colours[s], alpha=0.45, marker=markers[d],
                               edgecolors="none", clip_on=False, zorder=3)
            ax.set_yscale("function", functions=(fwd, inv))
            ax.set_ylim(0.0, inv(fwd(1.0) + 0.12))
            ax.set_yticks([0, 0.5, 0.9, 0.99, 1.0])
            ax.set_yticklabels(["0", "0.5 (p50)", "0.9 (p90)", "0.99 (p99)", "1 (max)"])
            ax.grid(True, alpha=0.3)
            if log_x:
                ax.set_xscale("log")
            ax.set_xlabel("op latency (µs)")
            if ax.get_subplotspec().colspan.start == 0:
                ax.set_ylabel("fraction of ops ≤ latency")
            if len(facets) > 1:
                ax.set_title(sweep.label(facet), fontsize=10)
        handles, labels = {}, []
        for ax in axes:
            for h, l in zip(*ax.get_legend_handles_labels()):
                if l not in handles:
                    handles[l] = h
                    labels.append(l)
        legend_outside(axes, [handles[l] for l in labels], labels,
                       below=max(len(l) for l in labels) > 40 if labels else False)
        if not drew_any:
            self.plt.close(fig)
            print(f"{PROG}: {name}: no op latencies in the rows, latency-cdf not drawn", file=sys.stderr)
            return
        what = "per strategy" + (" and direction" if len(directions) > 1 else "")
        note = ("Empirical CDF from per-repetition percentiles only (the CSV has no raw latencies): "
                "each repetition contributes its p50 at 0.5, p90 at 0.9, p99 at 0.99 and max at 1.0 "
                "(dots); the line is the step CDF of those points pooled over the repetitions "
                "(mean of the repetitions' step functions, a lower bound between the levels). "
                "The y axis is stretched so that the levels are evenly spaced; the x axis is "
                "logarithmic, in this chart for one run as for a sweep."
                + (" Legend: medians over repetitions." if len(facets) == 1 else
                   " One panel per configuration, same axes."))
        self.finish(fig, f"{name}: op latency distribution {what} (µs)",
                    results_caption(rows, note), "latency-cdf")

    # ----------------------------------------------------------------- walks per op

    def walks_per_op(self, rows, sweep, name):
        strategies = unique(r["strategy"] for r in rows)
        directions = unique(r["direction"] for r in rows)
        panels = [(d, f) for d in directions for f in sweep.keys
                  if any(r["direction"] == d and sweep.key(r) == f for r in rows)]
        fig, axes = self.grid(len(panels), max(5.0, 1.5 * len(strategies) + 2.6), 4.2,
                              sharey=len(directions) == 1, max_cols=2)
        for ax, (d, f) in zip(axes, panels):
            top = 0.0
            labelled = False
            for i, s in enumerate(strategies):
                grp = [r for r in rows if r["direction"] == d and sweep.key(r) == f and r["strategy"] == s]
                walk_rows = [r for r in grp if r["walks"] is not None and r["ops"]]
                rest_rows = [r for r in grp if r["walk_restarts"] is not None and r["ops"]]
                w = (sum(r["walks"] for r in walk_rows) / sum(r["ops"] for r in walk_rows)
                     if walk_rows else None)
                rs = (sum(r["walk_restarts"] for r in rest_rows) / sum(r["ops"] for r in rest_rows)
                      if rest_rows else None)
                if w is None and rs is None:
                    ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=8)
                    continue
                ax.bar(i, w or 0.0, 0.6, color=WALK_COLOUR,
                       label=None if labelled else "walks per op")
                ax.bar(i, rs or 0.0, 0.6, bottom=w or 0.0, color=RESTART_COLOUR,
                       label=None if labelled else "restarts per op")
                labelled = True
                total = (w or 0.0) + (rs or 0.0)
                top = max(top, total)
                text = f"{w:.2f}" if w is not None else "n/a"
                text += f"\n+{rs:.2f} restarts" if rs else ("" if rs == 0 else "\nrestarts n/a")
                ax.annotate(text, (i, total), xytext=(0, 3), textcoords="offset points",
                            ha="center", va="bottom", fontsize=8)
            ax.set_xticks(range(len(strategies)))
            ax.set_xticklabels(strategies, fontsize=8)
            ax.set_xlim(-0.6, len(strategies) - 0.4)
            if len(directions) > 1 or ax.get_subplotspec().colspan.start == 0:
                ax.set_ylabel("per op (walks, restarts)")
            ax.set_xlabel("strategy")
            ax.grid(True, axis="y", alpha=0.3)
            ax.set_ylim(0, max(ax.get_ylim()[1], top * 1.25 if top else 1.0))
            title = []
            if len(directions) > 1:
                title.append(d)
            if len(sweep.keys) > 1:
                title.append(sweep.label(f))
            if title:
                ax.set_title(", ".join(title), fontsize=10)
        handles, labels = [], []
        for ax in axes:
            handles, labels = ax.get_legend_handles_labels()
            if handles:
                break
        legend_outside(axes, handles, labels)
        note = ("Walks per op = sum of walks / sum of ops over the repetitions (a walk is one "
                "hmm_range_fault or migrate_vma_setup call; coming back, one migrate_to_ram); "
                "restarts per op (fault batches, THP splits inside a walk) stacked on top.")
        self.finish(fig, f"{name}: walks per op per strategy (walks/op, restarts/op)",
                    results_caption(rows, note), "walks-per-op")

    # ----------------------------------------------------------------- phases

    def phases(self, rows, sweep, name):
        to_dev = [r for r in rows if r["direction"] == "to-device"]
        if not to_dev:
            print(f"{PROG}: {name}: no to-device rows, phases not drawn", file=sys.stderr)
            return
        strategies = unique(r["strategy"] for r in to_dev)
        facets = [f for f in sweep.keys if any(sweep.key(r) == f for r in to_dev)]
        fig, axes = self.grid(len(facets), max(5.5, 1.6 * len(strategies) + 3.0), 4.8,
                              sharey=True, max_cols=2)
        segments = []
        for ax, f in zip(axes, facets):
            top = 0.0
            for i, s in enumerate(strategies):
                grp = [r for r in to_dev if r["strategy"] == s and sweep.key(r) == f]
                bottom = 0.0
                measured = False
                for (col, label), colour in zip(PHASES, PHASE_COLOURS):
                    v = median(r[col] for r in grp)
                    if v is None:
                        continue
                    measured = True
                    v /= 1000.0
                    ax.bar(i, v, 0.6, bottom=bottom, color=colour, label=label)
                    bottom += v
                    segments.append((ax, i, bottom - v / 2, v))
                mean = median(r["op_mean_ns"] for r in grp)
                if mean is not None:
                    ax.plot([i - 0.36, i + 0.36], [mean / 1000] * 2, color="black", linewidth=2,
                            label="op mean (median over reps)")
                    top = max(top, mean / 1000)
                if not measured:
                    ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=8)
                    continue
                top = max(top, bottom)
                # the sum at the bar's top, inside it; the op mean above its own line
                ax.annotate(f"Σ phases {bottom:.0f}", (i, bottom), xytext=(0, -2),
                            textcoords="offset points", ha="center", va="top", fontsize=7,
                            bbox=dict(boxstyle="square,pad=0.15", facecolor="white",
                                      edgecolor="none", alpha=0.85))
                if mean is not None:
                    ax.annotate(f"op mean {mean / 1000:.0f}", (i, mean / 1000), xytext=(0, 3),
                                textcoords="offset points", ha="center", va="bottom", fontsize=8,
                                fontweight="bold")
            ax.set_xticks(range(len(strategies)))
            ax.set_xticklabels(strategies, fontsize=8)
            ax.set_xlim(-0.6, len(strategies) - 0.4)
            ax.set_xlabel("strategy")
            if ax.get_subplotspec().colspan.start == 0:
                ax.set_ylabel("time per op (µs)")
            ax.grid(True, axis="y", alpha=0.3)
            if len(facets) > 1:
                ax.set_title(sweep.label(f), fontsize=10)
            ax.set_ylim(0, max(ax.get_ylim()[1], top * 1.12 if top else 1.0))
        ymax = axes[0].get_ylim()[1]
        for ax, x, y, h in segments:
            if h >= 0.045 * ymax:
                ax.text(x, y, f"{h:.0f}", ha="center", va="center", fontsize=7, color="white")
        # one legend entry per phase, in stacking order
        seen = OrderedDict()
        for ax in axes:
            for h, l in zip(*ax.get_legend_handles_labels()):
                seen.setdefault(l, h)
        order = [l for _, l in PHASES if l in seen] + [l for l in seen if l not in dict(PHASES).values()]
        legend_outside(axes, [seen[l] for l in reversed(order)], list(reversed(order)))
        note = ("To-device direction. Bars: per-op phase times, each the median over repetitions "
                "of the per-op mean (walk = hmm_range_fault less its faults; fault = its faults; "
                "collect = migrate_vma_setup / migrate_hmm_range_setup; alloc = device allocation and "
                "copy bookkeeping, with the --verify check; copy = copy engine; finalize = "
                "migrate_vma_pages + device page table + migrate_vma_finalize). \"Σ phases\" at a bar's top: "
                "the sum of its phase medians, not the op mean; black line: the op mean (median over "
                "repetitions), which also holds what no phase times. Empty phase fields are left out.")
        self.finish(fig, f"{name}: time per op by phase, to device (µs)",
                    results_caption(to_dev, note), "phases")

    # ----------------------------------------------------------------- sweep

    def sweep_throughput(self, rows, sweep, name):
        strategies = unique(r["strategy"] for r in rows)
        directions = unique(r["direction"] for r in rows)
        colours = strategy_colours(strategies)
        styles = dict(zip(directions, ["-", "--", ":", "-."]))
        markers = dict(zip(directions, ["o", "s", "^", "D"]))
        fig, axes = self.grid(1, 9.0, 4.8)
        ax = axes[0]
        drew = False
        labels = []
        for d in directions:
            for s in strategies:
                xs, ys, lo, hi = [], [], [], []
                for k in sweep.keys:
                    vals = [r["throughput_gbps"] for r in rows if r["strategy"] == s
                            and r["direction"] == d and sweep.key(r) == k
                            and r["throughput_gbps"] is not None]
                    if not vals:
                        continue
                    xs.append(sweep.x[k])
                    ys.append(statistics.median(vals))
                    lo.append(min(vals))
                    hi.append(max(vals))
                if not xs:
                    continue
                drew = True
                label = s if len(directions) == 1 else f"{s}, {d}"
                ax.plot(xs, ys, color=colours[s], linestyle=styles[d], marker=markers[d],
                        linewidth=1.8, label=label)
                ax.fill_between(xs, lo, hi, color=colours[s], alpha=0.13, linewidth=0)
                labels += [(x, y, f"{y:.2f}", colours[s]) for x, y in zip(xs, ys)]
        if not drew:
            self.plt.close(fig)
            print(f"{PROG}: {name}: no throughput values, sweep-throughput not drawn", file=sys.stderr)
            return
        if sweep.numeric:
            ticks = [sweep.x[k] for k in sweep.keys]
            if sweep.log2:
                ax.set_xscale("log", base=2)
            ax.set_xticks(ticks)
            ax.set_xticklabels([fmt_num(t) for t in ticks])
            if not sweep.log2 and len(ticks) > 1:
                span = ticks[-1] - ticks[0]
                ax.set_xlim(ticks[0] - 0.04 * span, ticks[-1] + 0.1 * span)
        else:
            ax.set_xticks(range(len(sweep.keys)))
            ax.set_xticklabels([sweep.label(k, short=True) for k in sweep.keys], fontsize=8,
                               rotation=15 if len(sweep.keys) > 4 else 0)
            ax.set_xlim(-0.4, len(sweep.keys) - 0.6)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.08)
        ax.set_xlabel(sweep.xlabel)
        ax.set_ylabel("throughput (GB/s: a window's bytes / median op)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best", framealpha=0.9)
        swept = f"the {sweep.state} fraction" if sweep.state else ", ".join(sweep.varying)
        note = (f"Sweep over {', '.join(sweep.varying)}. Points: median throughput_gbps over the "
                "repetitions of each configuration; shaded: min to max over the repetitions.")
        self.finish(fig, f"{name}: throughput (GB/s) against {swept}",
                    results_caption(rows, note), "sweep-throughput",
                    after_layout=lambda: place_value_labels(ax, labels))

    def copy_threads(self, rows, sweep, name):
        """Copy engine rate against copy threads, beside memcpy with as many threads."""
        rows = [r for r in rows if r["direction"] == "to-device"]
        strategies = unique(r["strategy"] for r in rows)
        colours = strategy_colours(strategies)
        fig, axes = self.grid(1, 7.5, 4.6)
        ax = axes[0]
        xs_all = [sweep.x[k] for k in sweep.keys]
        for s in strategies:
            xs, ys = [], []
            for k in sweep.keys:
                vals = [r["copy_gbps"] for r in rows if r["strategy"] == s and sweep.key(r) == k
                        and r["copy_gbps"] is not None]
                if vals:
                    xs.append(sweep.x[k])
                    ys.append(statistics.median(vals))
            if xs:
                ax.plot(xs, ys, color=colours[s], marker="o", linewidth=1.8, label=f"copy engine, {s}")
        xs, ys = [], []
        for k in sweep.keys:
            vals = [r["memcpy_threads_gbps"] for r in rows if sweep.key(r) == k and r["memcpy_threads_gbps"] is not None]
            if vals:
                xs.append(sweep.x[k])
                ys.append(statistics.median(vals))
        if not xs:
            self.plt.close(fig)
            print(f"{PROG}: {name}: no memcpy_threads_gbps values, copy-threads not drawn", file=sys.stderr)
            return
        ax.plot(xs, ys, color="black", linestyle="--", marker="s", linewidth=1.5, label="memcpy, same threads")
        ax.set_xticks(xs_all)
        ax.set_xticklabels([fmt_num(t) for t in xs_all])
        ax.set_xlabel("copy threads (--threads)")
        ax.set_ylabel("GB/s")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.1)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best", framealpha=0.9)
        note = ("copy_gbps: bytes the copy engine copied over the time it spent copying (to the device, "
                "median over repetitions); memcpy: plain memcpy from the system pool to the device pool in 2 MiB "
                f"pieces with as many threads, measured when each run starts. CPUs: {values_text(rows, 'cpus')}.")
        self.finish(fig, f"{name}: copy threads against memcpy", results_caption(rows, note), "copy-threads")

    def scaling(self, rows, sweep, name):
        """Aggregate rate and op latency against jobs (or devices)."""
        col = sweep.varying[0]
        rows = [r for r in rows if r["direction"] == "to-device"]
        strategies = unique(r["strategy"] for r in rows)
        colours = strategy_colours(strategies)
        fig, axes = self.grid(2, 5.6, 4.4)
        ticks = [sweep.x[k] for k in sweep.keys]
        cpu_counts = {r["cpus"] for r in rows}
        cpus = float(cpu_counts.pop()) if len(cpu_counts) == 1 and next(iter(cpu_counts), "") != "" else math.inf
        growth = []
        for s in strategies:
            xs, rate, p50, p99 = [], [], [], []
            for k in sweep.keys:
                grp = [r for r in rows if r["strategy"] == s and sweep.key(r) == k]
                rates = [r["wall_gbps"] for r in grp if r["wall_gbps"] is not None]
                if not grp or not rates:
                    continue
                xs.append(sweep.x[k])
                rate.append(statistics.median(rates))
                p50.append(median(r["op_p50_ns"] for r in grp) / 1e6)
                p99.append(median(r["op_p99_ns"] for r in grp) / 1e6)
            if not xs:
                continue
            c = colours[s]
            axes[0].plot(xs, rate, color=c, marker="o", linewidth=1.8, label=s)
            axes[0].plot(xs, [rate[0] * min(x, cpus) / min(xs[0], cpus) for x in xs], color=c, linestyle=":",
                         linewidth=1)
            axes[1].plot(xs, p50, color=c, marker="o", linewidth=1.8, label=f"{s} p50")
            axes[1].plot(xs, p99, color=c, marker="^", linestyle="--", linewidth=1.2, label=f"{s} p99")
            growth.append(f"{s}: p50 x{p50[-1] / p50[0]:.2f}, rate x{rate[-1] / rate[0]:.2f} "
                          f"from {fmt_num(xs[0])} to {fmt_num(xs[-1])}")
        if not growth:
            self.plt.close(fig)
            print(f"{PROG}: {name}: no wall_gbps values, scaling not drawn", file=sys.stderr)
            return
        for ax in axes:
            ax.set_xticks(ticks)
            ax.set_xticklabels([fmt_num(t) for t in ticks])
            ax.set_xlabel(CONFIG_LABELS[col])
            ax.grid(True, alpha=0.3)
        axes[0].set_ylim(0, axes[0].get_ylim()[1] * 1.08)
        axes[0].set_ylabel("aggregate rate (GB/s, pages migrated × 4 KiB / wall time)")
        ideal = "linear from the first" if cpus == math.inf else f"linear from the first up to {fmt_num(cpus)} CPUs"
        axes[0].set_title(f"aggregate rate (dotted: {ideal})", fontsize=10)
        axes[1].set_ylabel("op latency (ms)")
        axes[1].set_yscale("log")
        axes[1].set_title("op p50 (solid) and p99 (dashed)", fontsize=10)
        axes[0].legend(fontsize=8, loc="best", framealpha=0.9)
        note = (f"To the device only; medians over the repetitions of each {col} value. "
                f"CPUs: {values_text(rows, 'cpus')}. " + "; ".join(growth) + ".")
        self.finish(fig, f"{name}: scaling with {col}", results_caption(rows, note), "scaling")

    # ----------------------------------------------------------------- thp table

    def thp_table(self, rows, name):
        files = unique(r["_file"] for r in rows)
        fig, axes = self.grid(2, 6.0, 4.6, sharey=True)
        series = []
        for path in files:
            suffix = "" if len(files) == 1 else f" ({os.path.basename(path)})"
            for thp, label, colour, marker in ((1, "THP (2 MiB folios)", "#2ca02c", "o"),
                                               (0, "4 KiB pages", "#1f77b4", "s")):
                series.append((path, thp, label + suffix, colour, marker))
        sizes = sorted({r["size_bytes"] for r in rows})
        for ax, col, panel in ((axes[0], "to_device_gibps", "to device (MIGRATE_TO_DEV)"),
                               (axes[1], "to_system_gibps", "to system (MIGRATE_TO_SYS)")):
            points = {}
            for path, thp, label, colour, marker in series:
                pts = sorted((r["size_bytes"], r[col]) for r in rows
                             if r["_file"] == path and r["thp"] == thp and r[col] is not None)
                if not pts:
                    continue
                points[(path, thp)] = dict(pts)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colour, marker=marker,
                        linewidth=1.8, label=label)
            for path in files:
                a, b = points.get((path, 1)), points.get((path, 0))
                if not a or not b:
                    continue
                for size in sorted(set(a) & set(b)):
                    if b[size] > 0:
                        ax.annotate(f"×{a[size] / b[size]:.2f}", (size, max(a[size], b[size])),
                                    xytext=(0, 6), textcoords="offset points", ha="center",
                                    fontsize=7, color="#2ca02c",
                                    bbox=dict(boxstyle="square,pad=0.1", facecolor="white",
                                              edgecolor="none", alpha=0.85))
            ax.set_xscale("log", base=2)
            lo = 2 ** math.floor(math.log2(sizes[0]))
            hi = 2 ** math.ceil(math.log2(sizes[-1]))
            ticks = [2 ** e for e in range(int(math.log2(lo)), int(math.log2(hi)) + 1)]
            ax.set_xticks(ticks)
            ax.set_xticklabels([size_label(t) for t in ticks], fontsize=8)
            ax.minorticks_off()
            ax.set_xlim(lo / 1.4, hi * 1.4)
            if sizes[0] < 2 << 20:
                ax.axvspan(lo / 1.4, (2 << 20) / 1.19, color="#999999", alpha=0.12, linewidth=0)
                ax.text(lo / 1.3, 0.3, "below 2 MiB:\nno THP folio", fontsize=7, color="#555555",
                        va="bottom")
            ax.set_title(panel, fontsize=10)
            ax.set_xlabel("buffer size (bytes, log2 scale)")
            ax.set_ylabel("throughput (GiB/s)")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
        top = max(max(r["to_device_gibps"] or 0, r["to_system_gibps"] or 0) for r in rows)
        axes[0].set_ylim(0, top * 1.15 if top else 1)
        folios = []
        for size in sizes:
            f = unique(fmt_num(r.get("thp_folios")) for r in rows
                       if r["size_bytes"] == size and r["thp"] == 1 and r.get("thp_folios") is not None)
            if f:
                folios.append(f"{size_label(size)}: {'/'.join(f)}")
        note = ("hmm-tests' benchmark_thp_migration: each buffer mapped with MADV_HUGEPAGE (THP) and "
                "with MADV_NOHUGEPAGE (4 KiB), migrated to the device and back; throughput as the "
                "test computes it (size / 2^30 / s, i.e. GiB/s). Green labels: THP over 4 KiB.")
        if folios:
            note += " 2 MiB folios in the THP buffer: " + ", ".join(folios) + "."
        note += ("\nSource: " + ", ".join(os.path.relpath(p) for p in files) + ". "
                 + commands_text(rows))
        self.finish(fig, f"{name}: migration throughput, THP vs 4 KiB pages (GiB/s)", note,
                    "thp-table")


# --------------------------------------------------------------------------- main


def check_writable(outdir):
    """Refuses an output directory where a file cannot be created (read-only, /proc), before plotting."""
    import tempfile
    try:
        with tempfile.NamedTemporaryFile(dir=outdir, prefix=".plot-check-"):
            pass
    except OSError as err:
        raise PlotError(f"{outdir}: cannot write plots there: {err.strerror}") from None


def main(argv):
    parser = argparse.ArgumentParser(
        prog=PROG, description="Plot hmm-lab result CSVs (see the module docstring).")
    parser.add_argument("--out", help="output directory (default: results/plots in the repository)")
    parser.add_argument("--name", help="plot base name (default: the CSV's name)")
    parser.add_argument("files", nargs="+", metavar="FILE.csv")
    args = parser.parse_args(argv)

    results, thp_rows = [], []
    for path in args.files:
        kind, rows = read_csv(path)
        (results if kind == "results" else thp_rows).extend(rows)

    prefix = args.name or (os.path.splitext(os.path.basename(args.files[0]))[0]
                           if len(args.files) == 1 else "combined")
    if not prefix or os.sep in prefix:
        raise PlotError(f"--name {prefix!r}: not a usable file name prefix")
    outdir = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                                      "results", "plots")
    outdir = os.path.normpath(outdir)
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as err:
        raise PlotError(f"{outdir}: cannot create the output directory: {err.strerror}") from None
    check_writable(outdir)

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("matplotlib is not installed (python3 -m pip install matplotlib)") from None
    matplotlib.rcParams["figure.dpi"] = PNG_DPI  # captions are measured at the PNG's resolution
    matplotlib.rcParams["svg.hashsalt"] = "hmm-lab"
    matplotlib.rcParams["svg.fonttype"] = "none"  # text as text: glyph paths cost a second a chart

    plotter = Plotter(plt, outdir, prefix)
    jobs = []
    if results:
        sweep = Sweep(results)
        jobs += [lambda: plotter.latency_cdf(results, sweep, prefix),
                 lambda: plotter.walks_per_op(results, sweep, prefix),
                 lambda: plotter.phases(results, sweep, prefix)]
        if sweep.varying:
            jobs.append(lambda: plotter.sweep_throughput(results, sweep, prefix))
        if sweep.varying in (["jobs"], ["devices"]) and sweep.numeric:
            jobs.append(lambda: plotter.scaling(results, sweep, prefix))
        if sweep.varying == ["threads"] and sweep.numeric:
            jobs.append(lambda: plotter.copy_threads(results, sweep, prefix))
    if thp_rows:
        jobs.append(lambda: plotter.thp_table(thp_rows, prefix))
    for path in run_charts(plotter, jobs):
        rel = os.path.relpath(path)
        print(path if rel.startswith(os.pardir) else rel)
    return 0


def run_charts(plotter, jobs):
    """Draws each chart, in a forked child per chart when the machine has several CPUs (matplotlib
    is imported once, before the fork; drawing and saving are most of a run's time); returns the
    files written, in chart order. A chart's PlotError is raised here."""
    if len(jobs) < 2 or not hasattr(os, "fork") or (os.cpu_count() or 1) < 2:
        for job in jobs:
            job()
        return plotter.written
    children = []
    for job in jobs:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            status, message = 0, ""
            try:
                plotter.written = []
                job()
                message = "\n".join(plotter.written)
            except PlotError as err:
                status, message = 2, str(err)
            except BaseException as err:  # an unexpected failure still reaches the parent
                status, message = 1, f"{type(err).__name__}: {err}"
            with os.fdopen(write_end, "w") as out:
                out.write(message)
            os._exit(status)
        os.close(write_end)
        children.append((pid, read_end))
    written, errors = [], []
    for pid, read_end in children:
        with os.fdopen(read_end) as inp:
            message = inp.read()
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code == 0:
            written += [line for line in message.split("\n") if line]
        else:
            errors.append(message or f"a chart's process ended with status {code}")
    if errors:
        raise PlotError("; ".join(errors))
    return written


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except PlotError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(1)
