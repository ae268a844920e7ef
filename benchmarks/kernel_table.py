"""Markdown tables from kernel_suite.py JSON results: sparse-kernel speedup over the fastest dense peer.

usage: python benchmarks/kernel_table.py benchmarks/results/kernel_suite_2t.json [more.json ...]
Peers: ONNX Runtime, PyTorch and NumPy (external); "tir" is sparseforge's own dense kernel. Each cell is
``external / tir`` speedup (sparse kernel time against the faster of the peers, and against our dense kernel).
"""

from __future__ import annotations

import json
import sys

EXTERNAL = ("ort", "torch", "numpy")


def table(path: str) -> str:
    data = json.load(open(path))
    rows = [r for r in data["results"] if r["pattern"] != "dense"]
    cols = []
    for r in data["results"]:
        key = (tuple(r["shape"]), r["m"])
        if key not in cols:
            cols.append(key)
    patterns = []
    for r in rows:
        if r["pattern"] not in patterns:
            patterns.append(r["pattern"])
    cell = {}
    for r in rows:
        external = min(v for k, v in r["dense_ms"].items() if k in EXTERNAL)
        tir = r["dense_ms"].get("tir-dense", external)
        cell[(r["pattern"], tuple(r["shape"]), r["m"])] = f"{external / r['sparse_ms']:.1f} / {tir / r['sparse_ms']:.1f}"
    head = "| pattern | " + " | ".join(f"{s[0]}x{s[1]} M={m}" for s, m in cols) + " |"
    lines = [f"{data['threads']} thread(s): speedup of the sparse kernel over the fastest external dense peer / over "
             "sparseforge's dense kernel", "", head, "|" + "---|" * (len(cols) + 1)]
    for p in patterns:
        lines.append(f"| {p} | " + " | ".join(cell.get((p, s, m), "-") for s, m in cols) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(table(path))
        print()
