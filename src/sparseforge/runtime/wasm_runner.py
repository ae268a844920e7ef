"""Run a ``model.wasm`` artifact in wasmtime (PyPI, in process) or in Node.js through the generated loader."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from sparseforge.errors import SparseforgeError

_NODE_SCRIPT = r"""
import { load } from __LOADER__;
import { readFileSync, writeFileSync } from "node:fs";
const [wasm, dir] = process.argv.slice(2);
const model = await load(wasm);
const inputs = {};
model.spec.inputs.forEach((s, i) => {
  const buf = readFileSync(`${dir}/in${i}.bin`);
  const Kind = { float32: Float32Array, int64: BigInt64Array, int32: Int32Array }[s.dtype];
  inputs[s.name] = new Kind(buf.buffer, buf.byteOffset, buf.byteLength / Kind.BYTES_PER_ELEMENT);
});
const t0 = performance.now();
const outputs = model.run(inputs);
const ms = performance.now() - t0;
model.spec.outputs.forEach((s, i) => {
  const arr = outputs[s.name];
  writeFileSync(`${dir}/out${i}.bin`, Buffer.from(arr.buffer, arr.byteOffset, arr.byteLength));
});
console.log(JSON.stringify({ ms }));
"""


def _ordered(spec: list[dict], inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    arrays = []
    for s in spec:
        if s["name"] not in inputs:
            raise SparseforgeError(f"missing input '{s['name']}'")
        arrays.append(np.ascontiguousarray(inputs[s["name"]], dtype=np.dtype(s["dtype"])).reshape(s["shape"]))
    return arrays


def run_wasmtime(outdir: str | Path, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``outdir/model.wasm`` with the ``wasmtime`` package (WASI provided, nothing preopened)."""
    import wasmtime

    outdir = Path(outdir)
    manifest = json.loads((outdir / "manifest.json").read_text())
    engine = wasmtime.Engine()
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    instance = linker.instantiate(store, wasmtime.Module.from_file(engine, str(outdir / "model.wasm")))
    ex = instance.exports(store)
    if "_initialize" in ex:
        ex["_initialize"](store)
    memory = ex["memory"]
    for i, array in enumerate(_ordered(manifest["inputs"], inputs)):
        memory.write(store, array.tobytes(), ex["sf_input"](store, i))
    if ex["sf_run"](store) != 0:
        ptr = ex["sf_error"](store)
        message = bytes(memory.read(store, ptr, ptr + 512)).split(b"\0")[0].decode(errors="replace")
        raise SparseforgeError(f"model.wasm failed: {message}")
    outputs = {}
    for i, spec in enumerate(manifest["outputs"]):
        dtype = np.dtype(spec["dtype"])
        ptr = ex["sf_output"](store, i)
        nbytes = int(np.prod(spec["shape"])) * dtype.itemsize
        outputs[spec["name"]] = np.frombuffer(bytes(memory.read(store, ptr, ptr + nbytes)), dtype).reshape(spec["shape"])
    return outputs


def node_available() -> bool:
    return shutil.which("node") is not None


def run_node(outdir: str | Path, inputs: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
    """Run the artifact through its own ``model.mjs`` loader in Node.js; returns (outputs, milliseconds)."""
    outdir = Path(outdir).resolve()
    if not node_available():
        raise SparseforgeError("Node.js not found", hint="install Node.js >= 18 (Debian: apt-get install nodejs)")
    manifest = json.loads((outdir / "manifest.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        for i, array in enumerate(_ordered(manifest["inputs"], inputs)):
            (tmpdir / f"in{i}.bin").write_bytes(array.tobytes())
        script = tmpdir / "run.mjs"
        script.write_text(_NODE_SCRIPT.replace("__LOADER__", json.dumps((outdir / "model.mjs").as_uri())))
        result = subprocess.run(["node", str(script), str(outdir / "model.wasm"), str(tmpdir)],
                                capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise SparseforgeError(f"running model.wasm in Node.js failed: {result.stderr.strip()[-800:]}")
        ms = float(json.loads(result.stdout.strip().splitlines()[-1])["ms"])
        outputs = {}
        for i, spec in enumerate(manifest["outputs"]):
            data = (tmpdir / f"out{i}.bin").read_bytes()
            outputs[spec["name"]] = np.frombuffer(data, np.dtype(spec["dtype"])).reshape(spec["shape"]).copy()
    return outputs, ms
