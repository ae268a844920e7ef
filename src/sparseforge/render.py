"""Plain-text rendering of results for the terminal (rich tables). Nothing here computes anything.

Text from a model (node names, paths, messages) is printed literally: the CLI's console has markup off, and
:func:`pass_reports` prints with ``markup=False`` on any console.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sparseforge.ir.keys import STEP_KEY, STEP_LOGGERS

from sparseforge.ir.stats import ModelStats
from sparseforge.passes.analysis import FACTS, WeightStructure
from sparseforge.passes.infra import PROGRESS_KEY, PassReport


def human(n: float, unit: str = "") -> str:
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def size(n: int) -> str:
    for factor, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= factor:
            return f"{n / factor:.2f} {suffix}"
    return f"{n} B"


def layers_table(layers: list[WeightStructure]) -> Table:
    """One row per layer: node, op, shape, then the column(s) of every registered analysis fact."""
    table = Table(title="Weights (output x reduction view)", show_lines=False, header_style="bold")
    columns = [("node", "left"), ("op", "left"), ("shape", "right")]
    columns += [column for fact in FACTS for column in fact.columns]
    for col, justify in columns:
        table.add_column(col, justify=justify, overflow="fold")
    for layer in layers:
        fields = layer.to_dict()
        op = layer.op_type
        if layer.op_type == "Conv":
            kernel = "x".join(str(k) for k in layer.kernel_shape)
            op = f"Conv {kernel}" + (f" g{layer.groups}" if layer.groups > 1 else "")
        op += "".join(fact.op_note(fields) for fact in FACTS)
        cells = [cell for fact in FACTS for cell in fact.cells(fields)]
        table.add_row(layer.node, op, f"{layer.shape[0]}x{layer.shape[1]}", *cells)
    return table


def inspect_summary(summary: dict[str, Any]) -> str:
    parts = [
        f"{summary['weights']} weights",
        f"{human(summary['parameters'])} parameters",
        f"density {summary['density']:.3f}",
        f"{human(summary['flops'], 'FLOP')} ({human(summary['nonzero_flops'], 'FLOP')} with nonzero weights)",
        f"{summary['dead_output_channels']} dead output / {summary['dead_input_channels']} dead input channels",
        f"{summary['layers_2_4']} layers fully 2:4",
        f"{summary['layers_low_rank']} rank-deficient",
    ]
    if summary["long_conv_candidates"]:
        parts.append(f"{summary['long_conv_candidates']} long-conv candidates")
    if summary.get("monarch_layers"):
        parts.append(f"{summary['monarch_layers']} Monarch layers")
    if summary.get("sparse_low_rank_layers"):
        parts.append(f"{summary['sparse_low_rank_layers']} sparse + low-rank layers")
    if summary.get("attention_cores"):
        parts.append(f"{summary['attention_cores']} attention cores, {summary['dead_heads']} dead heads")
    return "Summary: " + ", ".join(parts)


def stats_table(before: ModelStats, after: ModelStats) -> Table:
    table = Table(title="Model", header_style="bold")
    table.add_column("")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_column("change", justify="right")

    def change(a: float, b: float) -> str:
        return "-" if a == 0 else f"{(b - a) / a:+.1%}"

    table.add_row("parameters", human(before.parameters), human(after.parameters),
                  change(before.parameters, after.parameters))
    table.add_row("FLOPs", human(before.flops), human(after.flops), change(before.flops, after.flops))
    table.add_row("FLOPs (nonzero weights)", human(before.nonzero_flops), human(after.nonzero_flops),
                  change(before.nonzero_flops, after.nonzero_flops))
    table.add_row("file size", size(before.size_bytes), size(after.size_bytes),
                  change(before.size_bytes, after.size_bytes))
    table.add_row("nodes", str(before.nodes), str(after.nodes), change(before.nodes, after.nodes))
    return table


def pass_reports(console: Console, reports: list[PassReport], *, verbose: bool = False) -> None:
    console.print("Passes", style="bold", markup=False)
    for report in reports:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(report.counts.items())) or "no change"
        console.print(f"  {report.pass_name:<18} {'changed' if report.modified else 'unchanged':<9} {counts} "
                      f"({report.seconds:.2f} s)")
        shown = [d for d in report.diagnostics if verbose or d.code.startswith(("kept", "skip", "approximate"))
                 or d.severity == "warning"]
        limit = None if verbose else 12
        for d in shown[:limit]:
            where = f"{d.node}: " if d.node else ""
            console.print(f"      {d.severity}: {where}{d.message}", highlight=False, markup=False)
        if limit is not None and len(shown) > limit:
            console.print(f"      ... {len(shown) - limit} more (use --verbose)")
        if verbose:
            for d in report.diagnostics:
                if d not in shown:
                    console.print(f"      {d.severity}: {d.node or ''} {d.message}", highlight=False, markup=False)


def skipped_layers(console: Console, reports: list[PassReport]) -> None:
    """The layers left out of the analysis (weights computed at run time), one line each, with the reason."""
    for report in reports:
        for d in report.diagnostics:
            if d.code == "skip-runtime-weight":
                console.print(f"not analysed: {d.node}: {d.message}", highlight=False, markup=False)


def prune_table(layers: list[dict[str, Any]], output_errors: dict[str, float] | None = None) -> Table:
    """Per pruned layer: sparsity before/after, relative weight error and (with calibration statistics) the
    relative error of the layer's output on the calibration inputs."""
    table = Table(title="Pruned weights", header_style="bold")
    columns = ["node", "shape", "sparsity before", "sparsity after", "weight error"]
    if output_errors:
        columns.append("output error (calibration)")
    for col in columns:
        table.add_column(col, justify="left" if col == "node" else "right")
    for layer in layers:
        row = [layer["node"], "x".join(str(d) for d in layer["shape"]), f"{layer['sparsity_before']:.3f}",
               f"{layer['sparsity_after']:.3f}",
               f"{layer['relative_weight_error']:.3g}" if layer["pruned"] else "kept (budget)"]
        if output_errors:
            err = output_errors.get(layer["node"])
            row.append("-" if err is None else f"{err:.3g}")
        table.add_row(*row)
    return table


def compress_table(rows: list[dict[str, Any]]) -> Table:
    """Per layer what ``compress`` chose: level, kernel, the layer's error, predicted dense and chosen times."""
    table = Table(title="APPROXIMATE: per-layer choices", header_style="bold")
    for col in ("node", "shape", "level", "kernel", "layer error", "dense ms", "predicted ms"):
        table.add_column(col, justify="left" if col in ("node", "level", "kernel") else "right")
    for r in rows:
        table.add_row(r["node"], "x".join(str(d) for d in r["shape"]), r["level"], r["kernel"],
                      f"{r['layer_error']:.3g}", f"{r['dense_ms']:.4f}", f"{r['predicted_ms']:.4f}")
    return table


def accuracy_table(rows: list[dict[str, Any]]) -> Table:
    """Every output's error on the held-out samples (APPROXIMATE results)."""
    table = Table(title="APPROXIMATE: accuracy on held-out samples", header_style="bold")
    for col in ("output", "samples", "relative L2", "cosine", "max abs error", "top-1 agreement"):
        table.add_column(col, justify="left" if col == "output" else "right")
    for r in rows:
        top1 = r.get("top1_agreement")
        table.add_row(r["output"], str(r["samples"]), f"{r['relative_l2']:.3g}", f"{r['cosine']:.5f}",
                      f"{r['max_abs']:.3g}", "-" if top1 is None else f"{100 * top1:.1f}%")
    return table


def decisions_table(decisions: list[dict[str, Any]]) -> Table:
    table = Table(title="Per-layer kernel decisions", header_style="bold")
    for col in ("node", "shape", "M", "density", "kernel", "reason"):
        table.add_column(col, justify="right" if col in ("M", "density") else "left", overflow="fold")
    for d in decisions:
        shape = d.get("shape") or [0, 0]
        table.add_row(d["node"], f"{shape[0]}x{shape[1]}" if shape[0] else "-", str(d.get("m") or "-"),
                      f"{d.get('density', 1.0):.2f}", d.get("kernel", d["fmt"]), d["reason"])
    return table


def bench_table(result: dict[str, Any]) -> Table:
    table = Table(title=f"Latency, {result['threads']} thread(s), median of {result['rounds']} rounds "
                        f"x {result['repeat']} calls", header_style="bold")
    single = result.get("one_thread")
    by_engine = {r["engine"]: r for r in single["results"]} if single else {}
    slow = set(single["not_faster_with_threads"]) if single else set()
    notes = any(r.get("note") for r in result["results"]) or bool(slow)
    columns = ("engine", "median ms", "vs fastest dense peer")
    if single:
        columns += ("1 thread ms", "vs peer at 1 thread")
    for col in columns + (("note",) if notes else ()):
        table.add_column(col, justify="left" if col in ("engine", "note") else "right")
    for r in result["results"]:
        speed = r["speedup_vs_best_dense_peer"]
        row = [escape(r["engine"]), f"{r['median_ms']:.3f}", "-" if speed is None else f"{speed:.2f}x"]
        if single:
            one = by_engine.get(r["engine"])
            ratio = None if one is None else one["speedup_vs_best_dense_peer"]
            row += ["-" if one is None else f"{one['median_ms']:.3f}", "-" if ratio is None else f"{ratio:.2f}x"]
        note = r.get("note", "")
        if r["engine"] in slow:
            note = (note + "; " if note else "") + "not faster with more threads than with 1 (busy machine?)"
        table.add_row(*(row + ([escape(note)] if notes else [])))
    skipped = result.get("skipped", {})
    for engine, why in skipped.items():
        table.add_row(escape(engine), "-", "-", *(["-", "-"] if single else []),
                      *(["skipped: " + escape(why)] if notes else []))
    if skipped and not notes:
        table.caption = "; ".join(f"{escape(engine)} skipped: {escape(why)}" for engine, why in skipped.items())
    return table


def structured_changes(console: Console, changes: list[dict[str, Any]]) -> None:
    """One line per layer a structured rewrite changed (low rank, grouped, Monarch, FFT)."""
    if changes:
        console.print(f"{len(changes)} layer(s) rewritten to structured forms:", markup=False)
    for c in changes:
        console.print(f"  {c['node']}: {c['form']}: {c['message']}", markup=False, highlight=False)


def verify_report(console: Console, report: dict[str, Any]) -> None:
    console.print(f"verify ({report['target']}): {report['how']}")
    for runner, c in report["comparisons"].items():
        status = "OK" if c["ok"] else "FAILED"
        console.print(f"  {runner}: max abs error {c['max_abs_error']:.3g}, max relative error "
                      f"{c['max_rel_error']:.3g} (tolerance {c['rtol']:g}) -- {status}")
    for note in report["notes"]:
        console.print(f"  note: {note}")
    if not report["comparisons"]:
        console.print("  nothing was run" + ("" if report["ok"] else " -- FAILED"))


class _PassProgress(logging.Handler):
    """Shows the running pass; the spinner stops when a pipeline's last pass ends (before results are printed)."""

    def __init__(self, status) -> None:
        super().__init__(logging.DEBUG)
        self.status = status

    def emit(self, record: logging.LogRecord) -> None:
        progress = getattr(record, PROGRESS_KEY, None)
        if progress is None:
            return
        index, total, name, finished = progress
        if finished:
            if index == total:
                self.status.stop()
            return
        self.status.update(f"pass {index}/{total}: {name}")
        self.status.start()


class _StepProgress(logging.Handler):
    """Shows a long step (the cost model measuring kernels, bench rounds): a bar and an estimate of the time left."""

    def __init__(self, status, label: str, live: bool = True, console: Console | None = None) -> None:
        super().__init__(logging.DEBUG)
        self.status = status
        self.label = label
        self.live = live
        self.console = console
        self.started: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        progress = getattr(record, STEP_KEY, None)
        if progress is None:
            return
        done, total, what = progress
        now = time.perf_counter()
        if done == 0 or self.started is None:
            self.started = now
        if done >= total:
            self.started = None
            return
        filled = int(20 * done / max(1, total))
        left = "" if done == 0 else f", ~{(now - self.started) / done * (total - done):.0f} s left"
        text = f"{self.label} [{'#' * filled}{'.' * (20 - filled)}] {done}/{total}: {what}{left}"
        if not self.live:
            self.status.stop()
            if self.console is not None:
                self.console.print(text, markup=False, highlight=False)
            return
        self.status.update(escape(text))
        self.status.start()


@contextlib.contextmanager
def pass_progress() -> Iterator[None]:
    """On a terminal, a spinner on stderr naming the pass that runs (big graphs take seconds per pass)."""
    if not sys.stderr.isatty():
        yield
        return
    pipeline_logger = logging.getLogger("sparseforge.passes.infra")
    status = Console(stderr=True).status("", spinner="dots")  # one per display
    stderr = Console(stderr=True)
    listening = [(pipeline_logger, _PassProgress(status)),
                 *((logging.getLogger(name), _StepProgress(status, label, live, stderr))
                   for name, (label, live) in STEP_LOGGERS.items())]
    saved = [(lg, lg.level, lg.propagate) for lg, _ in listening]
    for lg, handler in listening:
        lg.addHandler(handler)
        if lg.getEffectiveLevel() > logging.DEBUG:  # only our handler sees the DEBUG records
            lg.setLevel(logging.DEBUG)
            lg.propagate = False
    try:
        yield
    finally:
        status.stop()
        for (lg, handler), (_, level, propagate) in zip(listening, saved):
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


def explanation(console: Console, e) -> None:
    """``sparseforge explain``: facts, structured forms, sparse options, the choice and what would change it."""
    def ms(t):
        if t is None:
            return "-"
        return f"{t:.3g} (relative)" if e.unit == "relative" else f"{t * 1e3:.3f} ms"

    console.print(f"layer {e.layer} ({e.op_type}, weight {e.shape[0]}x{e.shape[1]}, M = {e.m or '-'}, target "
                  f"{e.target})", markup=False, highlight=False)
    facts = Table(title="facts", header_style="bold")
    facts.add_column("fact")
    facts.add_column("value", overflow="fold")
    for name, value in e.facts.items():
        facts.add_row(escape(str(name)), escape(str(value)))
    console.print(facts)
    forms_table = Table(title="structured forms", header_style="bold")
    for col in ("form", "applies", "predicted", "what the detector found"):
        forms_table.add_column(col, overflow="fold")
    for row in e.structured:
        forms_table.add_row(row["form"], "yes" if row["applies"] else "no", ms(row["predicted_s"]),
                            escape(row["found"]))
    console.print(forms_table)
    options = Table(title=f"kernels (dense {ms(e.dense_s)})", header_style="bold")
    for col in ("kernel", "stored", "predicted", "verdict"):
        options.add_column(col, overflow="fold")
    for row in e.options:
        options.add_row(escape(row["kernel"]), f"{row['stored']:.3f}", ms(row["predicted_s"]), escape(row["verdict"]))
    console.print(options)
    if e.sparse_allowed:
        console.print(f"sparse kernels not allowed: {e.sparse_allowed}", markup=False, highlight=False)
    console.print(f"chosen: {e.chosen}", markup=False, highlight=False)
    for line in e.what_would_change:
        console.print(f"  {line}", markup=False, highlight=False)
