"""``--dump-ir DIR``: the model after every pass, the Relax module before and after sparseforge's passes and the TIR
of every sparse/structured kernel, with an index.

Files, numbered in the order they were made:

* ``00-input.onnx`` (the model as loaded), ``NN-<Pass>.onnx`` after each pass that changed the model (a pass that
  changed nothing is listed in the index only); they open in Netron and load in onnx / ONNX Runtime;
* ``relax-imported.txt`` (TVMScript of the Relax module the importer built) and ``relax-optimized.txt`` (after
  legalization, fusion and scheduling, for targets that have that step), given by the compile flow;
* ``tir/<kernel>.txt``: the TIR of each of sparseforge's kernels in the module;
* ``index.json`` and ``index.md``: every entry with what it is (pass, changed or not, counts, file).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import onnx
import onnx_ir as ir


#: Models larger than this are written with their weights in one external data file beside them.
EXTERNAL_ABOVE = 1 << 30


def _safe(name: str) -> str:
    """A file-name-safe form of a pass or kernel name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:120] or "unnamed"


class IRDump:
    """Writes the dumps into ``directory`` (created; existing files of the same names are replaced)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.entries: list[dict[str, Any]] = []
        self.count = 0

    def _number(self) -> str:
        number = f"{self.count:02d}"
        self.count += 1
        return number

    def model(self, label: str, model: ir.Model, *, note: str = "") -> Path:
        """Write ``model`` as ``NN-<label>.onnx``."""
        path = self.directory / f"{self._number()}-{_safe(label)}.onnx"
        proto = ir.to_proto(model)
        if proto.ByteSize() > EXTERNAL_ABOVE:  # protobuf cannot hold 2 GiB: weights beside the file
            onnx.save_model(proto, path, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=path.name + ".data")
        else:
            onnx.save(proto, path)
        self.entries.append({"kind": "onnx", "name": label, "file": path.name, "note": note})
        self._write_index()
        return path

    def instrument(self, pass_name: str, model: ir.Model, report) -> None:
        """A :class:`~sparseforge.passes.infra.Pipeline` instrument: the model after each pass that changed it."""
        counts = dict(getattr(report, "counts", {}) or {})
        if getattr(report, "modified", True):
            self.model(pass_name, model, note=json.dumps(counts) if counts else "")
        else:
            self.entries.append({"kind": "onnx", "name": pass_name, "file": None, "note": "unchanged"})
            self._write_index()

    def text(self, name: str, text: str, *, kind: str = "text") -> Path:
        """Write ``text`` (TVMScript or any IR printed as text) as ``<name>.txt`` (a ``/`` makes a sub-folder)."""
        parts = [_safe(p) for p in name.split("/")]
        path = self.directory.joinpath(*parts[:-1], parts[-1] + ".txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        self.entries.append({"kind": kind, "name": name, "file": str(path.relative_to(self.directory)), "note": ""})
        self._write_index()
        return path

    def skipped(self, name: str, why: str) -> None:
        """Record that a dump was not made, and why."""
        self.entries.append({"kind": "skipped", "name": name, "file": None, "note": why})
        self._write_index()

    def _write_index(self) -> None:
        (self.directory / "index.json").write_text(json.dumps(self.entries, indent=1), encoding="utf-8")
        lines = ["# sparseforge IR dump", "", "| # | kind | name | file | note |", "|---|---|---|---|---|"]
        lines += [f"| {i} | {e['kind']} | {e['name']} | {e['file'] or '-'} | {e['note']} |"
                  for i, e in enumerate(self.entries)]
        (self.directory / "index.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def start_instruments(model: ir.Model, dump_ir: str | Path | None, instruments=()) -> tuple[IRDump | None, list]:
    """Before a pipeline runs on ``model``: the :class:`IRDump` for ``dump_ir`` (None without one; it writes
    ``00-input.onnx`` now), every instrument with a ``start(model)`` method told the model, and the list of
    instruments to give :class:`~sparseforge.passes.infra.Pipeline`."""
    dump = IRDump(dump_ir) if dump_ir is not None else None
    if dump is not None:
        dump.model("input", model)
    for instrument in instruments:
        if hasattr(instrument, "start"):
            instrument.start(model)
    return dump, [*([dump.instrument] if dump is not None else []), *instruments]
