"""``sparseforge report``: one self-contained HTML file about a model: what the analysis found in every weight,
what each pass did (all its notes), and, given a compiled artifact, every layer's kernel decision and why.

The page needs nothing but itself: figures are inline SVG drawn with matplotlib (``pip install
'sparseforge[report]'``), the table's sorting and filtering is a few lines of inline script, no network access.
Contents:

* summary: parameters, FLOPs (dense and with nonzero weights), density, structure found, passes run;
* the layer table (sortable by any column, filterable by text): op, shape, density, best N:M, best zero block,
  rank, dead channels, structure facts, and with an artifact the kernel chosen and the reason;
* per weight: the nonzero pattern (exact up to 256 x 256, block-averaged density above), the singular values when
  the rank analysis ran, the zero-block occupancy per block shape and the N:M compliance;
* plots: the density of every layer, and (with an artifact) where the predicted time goes per kernel; with the
  artifact's profile (:mod:`sparseforge.driver.profile`) the measured time per layer, predicted against measured
  per layer, and where the measured time goes (sparse, structured, dense, layout transforms, the rest);
* the pass timeline: each pass, its time, what it changed, every note (none cut).

Names from the model are HTML-escaped. ``matplotlib`` is imported when a report is written (optional dependency).
"""

from __future__ import annotations

import html
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparseforge.errors import MissingDependencyError
from sparseforge.ir.weights import view_of

#: Weights up to this many rows and columns are drawn exactly; larger ones are block-averaged to it.
PICTURE_SIDE = 256
#: Layers drawn at most (the largest by elements first); the table lists every layer.
MAX_PICTURES = 200
#: Weight sections unfolded when the page opens (the others unfold on a click).
OPEN_PICTURES = 8

_SCRIPT = """
function sfSort(table, col, numeric) {
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const dir = table.dataset.sortCol == col && table.dataset.sortDir == "asc" ? "desc" : "asc";
  rows.sort((a, b) => {
    let x = a.cells[col].dataset.v ?? a.cells[col].textContent, y = b.cells[col].dataset.v ?? b.cells[col].textContent;
    if (numeric) { x = parseFloat(x); y = parseFloat(y); if (isNaN(x)) x = -Infinity; if (isNaN(y)) y = -Infinity; }
    return (x < y ? -1 : x > y ? 1 : 0) * (dir == "asc" ? 1 : -1);
  });
  rows.forEach(r => body.appendChild(r));
  table.dataset.sortCol = col; table.dataset.sortDir = dir;
}
function sfFilter(input, table) {
  const q = input.value.toLowerCase();
  Array.from(table.tBodies[0].rows).forEach(r => { r.style.display = r.textContent.toLowerCase().includes(q) ? "" : "none"; });
}
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("table.sortable th").forEach((th, i) => {
    th.addEventListener("click", () => sfSort(th.closest("table"), i, th.dataset.numeric == "1"));
  });
  const m = location.hash.match(/^#sort=(\d+)$/);  // a link that opens the layer table sorted (#sort=3)
  if (m) document.querySelectorAll("#layers th")[+m[1]]?.click();
});
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #eee; cursor: pointer; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.figs { display: flex; flex-wrap: wrap; gap: 8px; }
.fig svg { width: 300px; height: auto; }
.wide svg { width: 900px; height: auto; }
details { margin: 4px 0; }
code { background: #f4f4f4; }
"""


def _require_matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plt.rcParams["svg.fonttype"] = "none"  # text as text, not glyph paths: a far smaller page
        plt.rcParams["svg.hashsalt"] = "sparseforge"  # stable element ids: the same model gives the same page
    except ImportError as exc:
        raise MissingDependencyError("the HTML report draws its figures with matplotlib",
                                     hint="pip install 'sparseforge[report]'") from exc
    return plt


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    fig.clf()
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: inline SVG


def pattern(matrix: np.ndarray, side: int = PICTURE_SIDE) -> np.ndarray:
    """The nonzero pattern of ``matrix [N, K]``: exact (0/1) when both sides are at most ``side``, else the
    fraction of nonzeros in each of ``side x side`` (at most) blocks."""
    nz = (np.asarray(matrix) != 0).astype(np.float32)
    n, k = nz.shape
    if n <= side and k <= side:
        return nz
    rows, cols = min(n, side), min(k, side)
    r_edges = np.linspace(0, n, rows + 1).astype(int)
    c_edges = np.linspace(0, k, cols + 1).astype(int)
    sums = np.add.reduceat(np.add.reduceat(nz, r_edges[:-1], axis=0), c_edges[:-1], axis=1)
    sizes = np.outer(np.diff(r_edges), np.diff(c_edges))
    return sums / np.maximum(sizes, 1)


def _weight_figures(plt, layer, matrix: np.ndarray | None) -> list[str]:
    figs = []
    if matrix is not None and matrix.size:
        picture = pattern(matrix)
        fig = plt.figure(figsize=(3.2, 3.0))
        ax = fig.add_subplot()
        ax.imshow(picture, cmap="Greys", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        exact = picture.shape == matrix.shape
        ax.set_title(f"nonzeros {matrix.shape[0]}x{matrix.shape[1]}" + ("" if exact else " (block density)"),
                     fontsize=9)
        ax.set_xlabel("reduction", fontsize=8)
        ax.set_ylabel("output", fontsize=8)
        figs.append(_svg(fig))
        plt.close(fig)
        if layer.rank is not None and min(matrix.shape) <= 2048:
            s = np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)
            fig = plt.figure(figsize=(3.2, 3.0))
            ax = fig.add_subplot()
            index = np.unique(np.geomspace(1, s.size, num=min(s.size, 200)).astype(int) - 1)  # <= 200 points
            ax.semilogy(index, np.maximum(s[index], s[0] * 1e-12 if s.size and s[0] else 1e-30))
            ax.axvline(layer.rank - 0.5, color="tab:red", lw=0.8)
            ax.set_title(f"singular values (rank {layer.rank})", fontsize=9)
            figs.append(_svg(fig))
            plt.close(fig)
    if layer.block_zero_fraction or layer.nm:
        fig = plt.figure(figsize=(3.2, 3.0))
        ax = fig.add_subplot()
        labels = [f"{k} blocks" for k in layer.block_zero_fraction] + [f"{k} ok" for k in layer.nm]
        values = list(layer.block_zero_fraction.values()) + list(layer.nm.values())
        ax.barh(range(len(values)), values, color=["tab:blue"] * len(layer.block_zero_fraction)
                + ["tab:green"] * len(layer.nm))
        ax.set_yticks(range(len(values)), labels, fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_title("zero blocks / N:M compliance", fontsize=9)
        figs.append(_svg(fig))
        plt.close(fig)
    return figs


def _cell(value: Any, numeric: bool = False, sort: Any = None) -> str:
    v = "" if value is None else value
    attr = f' data-v="{html.escape(str(sort))}"' if sort is not None else ""
    cls = ' class="num"' if numeric else ""
    return f"<td{cls}{attr}>{html.escape(str(v))}</td>"


def _structure(layer) -> str:
    found = []
    if layer.dead_output_channels or layer.dead_input_channels:
        found.append(f"dead channels {len(layer.dead_output_channels)} out / {len(layer.dead_input_channels)} in")
    if layer.rank is not None and layer.rank < min(layer.shape):
        found.append(f"rank {layer.rank}")
    if layer.diagonal_blocks and layer.diagonal_blocks > 1:
        found.append(f"{layer.diagonal_blocks} diagonal blocks")
    if layer.monarch:
        found.append(f"Monarch {layer.monarch[0]}x{layer.monarch[1]}")
    if layer.sparse_low_rank:
        found.append(f"rank {layer.sparse_low_rank['rank']} + sparse {layer.sparse_low_rank['density']:.2f}")
    if layer.long_conv:
        found.append("long conv")
    return ", ".join(found)


def _layer_table(layers, decisions: dict[str, dict], measured: dict[str, float] | None = None) -> str:
    heads = [("layer", 0), ("op", 0), ("shape", 0), ("elements", 1), ("density", 1), ("best N:M", 0),
             ("best zero block", 0), ("rank", 1), ("structure", 0)]
    if decisions:
        heads += [("kernel", 0), ("predicted ms", 1), ("dense ms", 1)]
        if measured is not None:
            heads.append(("measured ms", 1))
        heads.append(("reason", 0))
    out = ['<input id="filter" placeholder="filter layers" oninput="sfFilter(this, document.getElementById(\'layers\'))">',
           '<table id="layers" class="sortable"><thead><tr>']
    out += [f'<th data-numeric="{num}">{html.escape(h)}</th>' for h, num in heads]
    out.append("</tr></thead><tbody>")
    for layer in layers:
        nm = layer.best_nm()
        block = layer.best_block()
        row = [_cell(layer.node), _cell(layer.op_type), _cell(f"{layer.shape[0]}x{layer.shape[1]}"),
               _cell(layer.shape[0] * layer.shape[1], True), _cell(f"{layer.density:.3f}", True),
               _cell("" if nm is None or nm[1] <= 0 else f"{nm[0]} ({nm[1]:.2f})"),
               _cell("" if block is None or block[1] <= 0 else f"{block[0]} ({block[1]:.2f} zero)"),
               _cell(layer.rank, True, "" if layer.rank is None else layer.rank), _cell(_structure(layer))]
        if decisions:
            d = decisions.get(layer.node, {})
            ms = (lambda s: None if s is None else round(s * 1e3, 4))
            row += [_cell(d.get("kernel", d.get("fmt", ""))), _cell(ms(d.get("predicted_s")), True),
                    _cell(ms(d.get("dense_s")), True)]
            if measured is not None:
                row.append(_cell(ms(measured.get(layer.node)), True))
            row.append(_cell(d.get("reason", "")))
        out.append(f'<tr id="layer-{html.escape(layer.node)}">' + "".join(row) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _passes(reports, timeline: list[dict[str, Any]] | None = None, dump: dict[str, str] | None = None) -> str:
    """Every pass: its time, whether it changed the model, its counts, every note; with a ``timeline``
    (:class:`~sparseforge.passes.timeline.PassTimeline` entries) the nodes, parameters and FLOPs after it and the
    nodes it added/removed; with ``dump`` (pass name -> file) a link to the model after it."""
    steps = {e["pass"]: e for e in timeline or []}
    heads = ["#", "pass", "seconds", "changed", "counts"]
    if timeline:
        heads += ["nodes", "parameters", "FLOPs", "added / removed"]
    if dump:
        heads.append("model after")
    heads.append("notes")
    out = ['<table class="sortable"><thead><tr>' + "".join(
        f'<th data-numeric="{int(h in ("#", "seconds", "nodes", "parameters", "FLOPs"))}">{html.escape(h)}</th>'
        for h in heads) + "</tr></thead><tbody>"]
    for i, r in enumerate(reports, 1):
        d = r.to_dict()
        notes = d.get("diagnostics", [])
        listed = "".join(f"<li><code>{html.escape(str(n.get('code', '')))}</code> "
                         f"{html.escape(str(n.get('node') or ''))}: {html.escape(str(n.get('message', '')))}</li>"
                         for n in notes)
        body = f"<details><summary>{len(notes)} note(s)</summary><ul>{listed}</ul></details>" if notes else ""
        cells = (f"{_cell(i, True)}{_cell(d.get('pass'))}{_cell(round(float(d.get('seconds') or 0), 4), True)}"
                 f"{_cell('yes' if d.get('modified') else '')}{_cell(json.dumps(d.get('counts', {})))}")
        if timeline:
            e = steps.get(d.get("pass"), {})
            changed = ""
            if e.get("added_count") or e.get("removed_count"):
                changed = (f"<details><summary>+{e['added_count']} / -{e['removed_count']}</summary>"
                           f"<p>added: {html.escape(', '.join(e['added']))}</p>"
                           f"<p>removed: {html.escape(', '.join(e['removed']))}</p></details>")
            cells += (f"{_cell(e.get('nodes'), True)}{_cell(e.get('parameters'), True)}{_cell(e.get('flops'), True)}"
                      f"<td>{changed}</td>")
        if dump:
            target = dump.get(d.get("pass"))
            cells += f'<td><a href="{html.escape(target)}">{html.escape(Path(target).name)}</a></td>' if target \
                else "<td></td>"
        out.append(f"<tr>{cells}<td>{body}</td></tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _summary(summary: dict[str, Any], decisions: dict[str, dict], target: str | None,
             profile: dict[str, Any] | None = None) -> str:
    rows = [("parameters", f"{summary['parameters']:,}"), ("FLOPs (dense)", f"{summary['flops']:,}"),
            ("FLOPs with nonzero weights", f"{summary['nonzero_flops']:,}"),
            ("weight density", f"{summary['density']:.3f}"), ("weights analysed", summary["weights"]),
            ("dead output / input channels", f"{summary['dead_output_channels']} / {summary['dead_input_channels']}"),
            ("layers fully 2:4", summary["layers_2_4"]), ("rank-deficient layers", summary["layers_low_rank"]),
            ("Monarch layers", summary.get("monarch_layers", 0)),
            ("long-convolution candidates", summary["long_conv_candidates"]),
            ("attention cores / dead heads", f"{summary['attention_cores']} / {summary['dead_heads']}")]
    if decisions:
        sparse = [d for d in decisions.values() if d.get("fmt") != "dense"]
        dense_s = sum(d.get("dense_s") or 0 for d in decisions.values())
        chosen_s = sum((d.get("predicted_s") if d.get("fmt") != "dense" else d.get("dense_s")) or 0
                       for d in decisions.values())
        rows += [("target", target or ""), ("layers on sparse kernels", f"{len(sparse)} of {len(decisions)}")]
        if dense_s and chosen_s:
            rows.append(("predicted speedup of the decided layers", f"{dense_s / chosen_s:.2f}x"))
    if profile:
        threads = profile.get("threads")
        rows.append(("measured latency (artifact" + (f", {threads} thread{'s' if threads != 1 else ''}"
                                                     if threads else "") + ")",
                     f"{profile['latency_s'] * 1e3:.3f} ms"))
        if profile.get("onnxruntime_s"):
            rows += [("measured ONNX Runtime latency (same inputs and threads)", f"{profile['onnxruntime_s'] * 1e3:.3f} ms"),
                     ("measured speedup over ONNX Runtime", f"{profile['measured_speedup']:.2f}x")]
        elif profile.get("onnxruntime_error"):
            rows.append(("ONNX Runtime not timed", profile["onnxruntime_error"]))
    return "<table>" + "".join(f"<tr><th>{html.escape(str(k))}</th>{_cell(v)}</tr>" for k, v in rows) + "</table>"


def _plots(plt, layers, decisions: dict[str, dict], profile: dict[str, Any] | None = None) -> list[str]:
    figs = []
    if layers:
        fig = plt.figure(figsize=(9, 2.6))
        ax = fig.add_subplot()
        ax.bar(range(len(layers)), [l.density for l in layers], color="tab:blue")
        ax.set_ylim(0, 1)
        ax.set_ylabel("density")
        ax.set_xlabel("layer (model order)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title("density per layer", fontsize=10)
        figs.append(_svg(fig))
        plt.close(fig)
    timed = [d for d in decisions.values() if d.get("dense_s")]
    if timed:
        fig = plt.figure(figsize=(9, 2.6))
        ax = fig.add_subplot()
        by_kernel: dict[str, float] = {}
        for d in timed:
            t = d.get("predicted_s") if d.get("fmt") != "dense" and d.get("predicted_s") else d["dense_s"]
            key = d.get("kernel", d.get("fmt", "?"))
            by_kernel[key] = by_kernel.get(key, 0.0) + t * 1e3
        ax.barh(list(by_kernel), list(by_kernel.values()), color="tab:orange")
        ax.set_xlabel("predicted ms (decided layers)")
        ax.set_title("where the time of the decided layers goes, per kernel", fontsize=10)
        figs.append(_svg(fig))
        plt.close(fig)
    if profile:
        figs += _profile_plots(plt, decisions, profile)
    return figs


def _profile_plots(plt, decisions: dict[str, dict], profile: dict[str, Any]) -> list[str]:
    """Where the measured time goes (per category), and per layer with its own kernel the predicted against the
    measured time (and the speedup over the predicted dense time each implies)."""
    figs = []
    categories = profile.get("by_category", {})
    if categories:
        fig = plt.figure(figsize=(9, 2.6))
        ax = fig.add_subplot()
        ax.barh(list(categories), [v * 1e3 for v in categories.values()], color="tab:green")
        ax.set_xlabel(f"measured ms (one inference, profiled; latency {profile['latency_s'] * 1e3:.2f} ms)")
        ax.set_title("where the measured time goes", fontsize=10)
        figs.append(_svg(fig))
        plt.close(fig)
    pairs = [(decisions[n], s) for n, s in profile.get("by_node", {}).items()
             if n in decisions and decisions[n].get("predicted_s") and decisions[n].get("dense_s")]
    if pairs:
        fig = plt.figure(figsize=(9, 3.2))
        ax1, ax2 = fig.subplots(1, 2)
        predicted = [d["predicted_s"] * 1e3 for d, _ in pairs]
        measured = [s * 1e3 for _, s in pairs]
        ax1.loglog(predicted, measured, "o", color="tab:purple", markersize=4)
        lo, hi = min(predicted + measured), max(predicted + measured)
        ax1.plot([lo, hi], [lo, hi], "--", color="gray", linewidth=1)
        ax1.set_xlabel("predicted ms")
        ax1.set_ylabel("measured ms")
        ax1.set_title("per layer: predicted vs measured kernel time", fontsize=10)
        p_speed = [d["dense_s"] / d["predicted_s"] for d, _ in pairs]
        m_speed = [d["dense_s"] / s for d, s in pairs]
        ax2.plot(p_speed, m_speed, "o", color="tab:red", markersize=4)
        lo, hi = min(p_speed + m_speed), max(p_speed + m_speed)
        ax2.plot([lo, hi], [lo, hi], "--", color="gray", linewidth=1)
        ax2.axhline(1.0, color="black", linewidth=0.5)
        ax2.set_xlabel("predicted speedup over dense")
        ax2.set_ylabel("measured kernel vs dense estimate")
        ax2.set_title("per layer: predicted vs measured speedup", fontsize=10)
        fig.tight_layout()
        figs.append(_svg(fig))
        plt.close(fig)
    return figs


def _kernel_table(profile: dict[str, Any], top: int = 30) -> str:
    """The slowest kernels of the profile, with their category and layer."""
    kernels = profile.get("kernels", [])
    total = sum(k["seconds"] for k in kernels) or 1.0
    out = ['<table class="sortable"><thead><tr><th>kernel</th><th>category</th><th>layer</th>'
           '<th data-numeric="1">ms</th><th data-numeric="1">calls</th><th data-numeric="1">%</th></tr></thead><tbody>']
    for k in kernels[:top]:
        out.append(f"<tr>{_cell(k['kernel'])}{_cell(k['category'])}{_cell(k.get('node') or '')}"
                   f"{_cell(round(k['seconds'] * 1e3, 4), True)}{_cell(k['calls'], True)}"
                   f"{_cell(round(100 * k['seconds'] / total, 1), True)}</tr>")
    out.append("</tbody></table>")
    if len(kernels) > top:
        out.append(f"<p>{len(kernels) - top} faster kernels not listed.</p>")
    return "\n".join(out)


def write(result, output: str | Path, *, manifest: dict[str, Any] | None = None, title: str = "model",
          passes=None, timeline: list[dict[str, Any]] | None = None, dump_dir: str | Path | None = None,
          profile: dict[str, Any] | None = None) -> Path:
    """Write the report of an :class:`~sparseforge.api.InspectResult` (and a compiled artifact's ``manifest``,
    if given) to ``output``; returns its path. ``passes``: the pass reports to show (default: the inspect's), with
    their ``timeline`` (:class:`~sparseforge.passes.timeline.PassTimeline` entries) and, from ``--dump-ir``,
    ``dump_dir`` (links to the model after each pass); ``profile``: the artifact's measured profile
    (:func:`sparseforge.driver.profile.profile_artifact`). The file is written whole, then moved into place."""
    plt = _require_matplotlib()
    decisions = {d["node"]: d for d in (manifest or {}).get("decisions", [])}
    nodes = {n.name: n for n in result.model.graph}
    sections = [f"<h1>sparseforge report: {html.escape(title)}</h1>", "<h2>Summary</h2>",
                _summary(result.summary(), decisions, (manifest or {}).get("target", {}).get("name")
                         if isinstance((manifest or {}).get("target"), dict) else (manifest or {}).get("target"),
                         profile)]
    sections += ["<h2>Plots</h2>", '<div class="figs">'] + [f'<div class="fig wide">{svg}</div>'
                                                         for svg in _plots(plt, result.layers, decisions, profile)]
    measured = profile.get("by_node", {}) if profile else None
    sections += ["</div>", "<h2>Layers</h2>", _layer_table(result.layers, decisions, measured)]
    if profile:
        sections += ["<h2>Kernels (measured)</h2>", _kernel_table(profile)]
    sections.append("<h2>Weights</h2>")
    drawn = sorted(result.layers, key=lambda l: -l.shape[0] * l.shape[1])[:MAX_PICTURES]
    keep = {id(l) for l in drawn}
    shown = 0
    for layer in result.layers:
        if id(layer) not in keep:
            continue
        shown += 1
        node = nodes.get(layer.node)
        view = view_of(node) if node is not None else None
        matrix = view.matrix() if view is not None else None
        figs = _weight_figures(plt, layer, matrix)
        opened = " open" if shown <= OPEN_PICTURES else ""  # the rest unfold on a click: the page opens faster
        sections.append(f'<details class="weight"{opened}><summary>{html.escape(layer.node)} '
                        f'({html.escape(layer.op_type)}, {layer.shape[0]}x{layer.shape[1]}, density '
                        f'{layer.density:.3f})</summary><div class="figs">'
                        + "".join(f'<div class="fig">{svg}</div>' for svg in figs) + "</div></details>")
    if len(result.layers) > len(drawn):
        sections.append(f"<p>{len(result.layers) - len(drawn)} smaller weights not drawn.</p>")
    links = None
    if dump_dir is not None and (Path(dump_dir) / "index.json").exists():
        entries = json.loads((Path(dump_dir) / "index.json").read_text())
        base = Path(output).resolve().parent
        links = {}
        for e in entries:
            if e.get("kind") == "onnx" and e.get("file"):
                target = (Path(dump_dir) / e["file"]).resolve()
                try:
                    links[e["name"]] = str(target.relative_to(base))
                except ValueError:
                    links[e["name"]] = target.as_uri()
    sections += ["<h2>Passes</h2>", _passes(passes if passes is not None else result.reports, timeline, links)]
    page = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>sparseforge report: {html.escape(title)}</title><style>{_STYLE}</style>"
            f"<script>{_SCRIPT}</script></head><body>\n" + "\n".join(sections) + "\n</body></html>\n")
    output = Path(output)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(output)
    return output


def node_data(result, manifest: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Model Explorer node-data documents (``{graph id: {"name", "results": {node: {"value"}}, ...}}``, the
    format of ``model_explorer.node_data_builder.ModelNodeData``), by file stem: ``density`` (every weight's
    density, coloured from red (dense) to green (sparse)); with a compiled artifact's ``manifest`` also
    ``kernel`` (the kernel each decided layer runs, a label) and ``speedup`` (predicted dense time over the chosen
    kernel's). Node keys are ONNX node names and the graph id the ONNX graph's name, as ``model-explorer-onnx``
    builds them: ``density`` matches the model given, ``kernel`` and ``speedup`` the artifact's ``model.onnx``
    (the optimized graph the decisions are about)."""
    graph = result.model.graph.name or "main_graph"
    docs = {"density": {graph: {"name": "weight density", "results": {
        l.node: {"value": round(float(l.density), 6)} for l in result.layers},
        "gradient": [{"stop": 0, "bgColor": "#2ca02c"}, {"stop": 1, "bgColor": "#d62728"}]}}}
    decisions = (manifest or {}).get("decisions", [])
    if decisions:
        docs["kernel"] = {graph: {"name": "kernel", "results": {
            d["node"]: {"value": str(d.get("kernel", d.get("fmt", "")))} for d in decisions},
            "showExpandedSummaryOnGroupNode": True}}
        speed = {d["node"]: {"value": round(d["dense_s"] / (d["predicted_s"] if d.get("fmt") != "dense" and
                                                             d.get("predicted_s") else d["dense_s"]), 4)}
                 for d in decisions if d.get("dense_s")}
        docs["speedup"] = {graph: {"name": "predicted speedup over dense", "results": speed,
                                   "thresholds": [{"value": 1.0, "bgColor": "#dddddd"},
                                                  {"value": 2.0, "bgColor": "#a1d99b"},
                                                  {"value": 1e9, "bgColor": "#31a354"}]}}
    return docs


def write_node_data(result, folder: str | Path, manifest: dict[str, Any] | None = None) -> list[Path]:
    """Write :func:`node_data` as ``<folder>/<name>.json``; returns the paths (for
    ``model-explorer MODEL --node_data_paths=a.json,b.json``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, doc in node_data(result, manifest).items():
        path = folder / f"{name}.json"
        path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        paths.append(path)
    return paths


def layer_nodes(page: str) -> Sequence[str]:
    """The layer names of a written report's table (for checks)."""
    return [html.unescape(m) for m in re.findall(r'<tr id="layer-([^"]*)">', page)]
