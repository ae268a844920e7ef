// Time sparseforge model.wasm artifacts and ONNX Runtime Web (WebAssembly backend, 1 thread) in one Node process.
// usage: node bench_wasm.mjs plan.json
// plan.json: {"rounds": R, "repeat": N, "inputs": [{"name", "shape", "dtype", "file"}],
//             "engines": [{"engine": "...", "kind": "sparseforge" | "onnxruntime-web", "path": "..."}]}
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import * as ort from "onnxruntime-web";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
ort.env.wasm.numThreads = 1;
ort.env.logLevel = "error";

const arrays = {};
for (const s of plan.inputs) {
  const buf = readFileSync(s.file);
  arrays[s.name] = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
}

const runners = [];
for (const e of plan.engines) {
  if (e.kind === "sparseforge") {
    const { load } = await import(pathToFileURL(`${e.path}/model.mjs`).href);
    const model = await load(`${e.path}/model.wasm`);
    runners.push({ engine: e.engine, run: () => model.run(arrays) });
  } else {
    const session = await ort.InferenceSession.create(readFileSync(e.path),
      { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
    const feeds = {};
    for (const s of plan.inputs) feeds[s.name] = new ort.Tensor("float32", arrays[s.name], s.shape);
    runners.push({ engine: e.engine, run: async () => session.run(feeds) });
  }
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const rounds = Object.fromEntries(runners.map((r) => [r.engine, []]));
for (const r of runners) for (let i = 0; i < 3; i++) await r.run();
for (let round = 0; round < plan.rounds; round++) {
  for (const r of runners) {
    const samples = [];
    for (let i = 0; i < plan.repeat; i++) {
      const t0 = performance.now();
      await r.run();
      samples.push(performance.now() - t0);
    }
    rounds[r.engine].push(median(samples));
  }
}
console.log(JSON.stringify({ results: runners.map((r) => ({ engine: r.engine, median_ms: median(rounds[r.engine]),
                                                          rounds_ms: rounds[r.engine] })) }));
