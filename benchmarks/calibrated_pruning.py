"""Calibration-aware pruning against magnitude pruning, on two small models trained here from scratch.

* ``digits``: a CNN on scikit-learn's bundled 8x8 digits (1797 images; 1200 to train, the rest to test);
* ``sequence``: a 2-layer transformer encoder on a synthetic task: is the count of token 1 larger than the count of
  token 2 in a random sequence of 32 tokens from 8 (classes: no / yes).

Each model is trained to a stated test accuracy, exported to ONNX by sparseforge, pruned with ``sparseforge
prune`` (API) by magnitude, Wanda and SparseGPT at 50% unstructured, 2:4 and 70% unstructured (calibration: 256
training samples, none of the test samples), and evaluated in ONNX Runtime on the test set: top-1 accuracy and
the relative L2 error of the logits against the dense model.

With ``--sequential`` the data methods also run in sequential mode (``wanda-seq``, ``sparsegpt-seq``). With
``--seeds 0,1,2`` every model is trained once per seed (seed = weight init and train/test split) and the summary
gives each method's mean accuracy change and logits error over the seeds beside the worst seed.

usage: python benchmarks/calibrated_pruning.py [--models digits,sequence] [--seeds 0] [--sequential] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

CASES = [("50%", dict(sparsity=0.5)), ("2:4", dict(pattern="nm")), ("70%", dict(sparsity=0.7))]
METHODS = ("magnitude", "wanda", "sparsegpt")
#: with ``--sequential``: the data methods again, statistics re-collected stage by stage (``prune --sequential``)
SEQUENTIAL = ("wanda-seq", "sparsegpt-seq")


def digits_model(seed: int = 0):
    import torch
    from sklearn.datasets import load_digits
    from torch import nn

    torch.manual_seed(seed)
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]  # [N, 1, 8, 8]
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(64 * 16, 128), nn.ReLU(), nn.Linear(128, 10))
    return _train(model, x[:1200], y[:1200], x[1200:], y[1200:], epochs=30, lr=2e-3)


class SeqClassifier:
    """Factory for the transformer (defined in a function so torch is imported lazily)."""

    @staticmethod
    def make(vocab=8, d=64, seq=32):
        import torch
        from torch import nn

        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = nn.Embedding(vocab, d)
                self.pos = nn.Parameter(torch.randn(1, seq, d) * 0.02)
                layer = nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True)
                self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
                self.head = nn.Linear(d, 2)

            def forward(self, tokens):
                h = self.encoder(self.embed(tokens) + self.pos)
                return self.head(h.mean(dim=1))

        return Model()


def sequence_model(seed: int = 0):
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 8, size=(6000, 32)).astype(np.int64)
    labels = ((tokens == 1).sum(1) > (tokens == 2).sum(1)).astype(np.int64)
    model = SeqClassifier.make()
    return _train(model, tokens[:5000], labels[:5000], tokens[5000:], labels[5000:], epochs=25, lr=1e-3)


def _train(model, x_train, y_train, x_test, y_test, *, epochs: int, lr: float):
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    return model.eval(), (x_train, y_train), (x_test, y_test), acc


def evaluate(path: Path, x: np.ndarray, y: np.ndarray, reference: np.ndarray | None, batch: int):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    logits = np.concatenate([sess.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x) - batch + 1, batch)])
    n = len(logits)
    acc = float((logits.argmax(1) == y[:n]).mean())
    err = None if reference is None else float(np.linalg.norm(logits - reference) / np.linalg.norm(reference))
    return acc, err, logits


def run_model(name: str, build, batch: int, out_dir: Path, sequential: bool = False, seed: int = 0) -> list[dict]:
    import torch

    from sparseforge import api

    start = time.time()
    model, (x_train, _), (x_test, y_test), torch_acc = build(seed)
    print(f"{name} (seed {seed}): trained in {time.time() - start:.0f} s, test accuracy {100 * torch_acc:.1f}%",
          flush=True)
    dense_path = out_dir / f"{name}.onnx"
    api.export(model, dense_path, example_inputs=(torch.from_numpy(x_train[:batch]),))
    n_test = len(x_test) // batch * batch
    dense_acc, _, dense_logits = evaluate(dense_path, x_test[:n_test], y_test[:n_test], None, batch)
    calib = out_dir / f"{name}-calib.npz"
    input_name = api.inspect(str(dense_path)).model.graph.inputs[0].name
    np.savez(calib, **{input_name: x_train[:256]})
    rows = [dict(model=name, seed=seed, method="dense", case="-", accuracy=dense_acc, logits_error=0.0)]
    print(f"  dense (ONNX): accuracy {100 * dense_acc:.2f}%", flush=True)
    for case, options in CASES:
        for method in METHODS + (SEQUENTIAL if sequential else ()):
            opts = dict(options)
            base = method.removesuffix("-seq")
            if method == "magnitude" and opts.get("pattern") == "nm":
                config = api.prune_config("nm")
            else:
                config = api.prune_config(base, opts.get("sparsity"), pattern=opts.get("pattern", "unstructured"))
            out = out_dir / f"{name}-{method}-{case.replace(':', '_').replace('%', '')}.onnx"
            api.prune(str(dense_path), out, config, calibration=str(calib), holdout=0.0,
                      sequential=method.endswith("-seq"))
            acc, err, _ = evaluate(out, x_test[:n_test], y_test[:n_test], dense_logits, batch)
            rows.append(dict(model=name, seed=seed, method=method, case=case, accuracy=acc, logits_error=err,
                             accuracy_change=acc - dense_acc))
            print(f"  {case:4s} {method:10s} accuracy {100 * acc:6.2f}% ({100 * (acc - dense_acc):+.2f}) "
                  f"logits rel. error {err:.4f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="digits,sequence")
    parser.add_argument("--sequential", action="store_true", help="also run the data methods sequentially")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds (default 0)")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    builders = {"digits": (digits_model, 16), "sequence": (sequence_model, 16)}
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            build, batch = builders[name]
            for seed in seeds:
                rows += run_model(name, build, batch, Path(tmp), args.sequential, seed)
    if len(seeds) > 1:
        summarize(rows)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1))


def summarize(rows: list[dict]) -> None:
    """Per model, case and method: mean accuracy change and logits error over the seeds, and the worst seed."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        if r["method"] != "dense":
            groups.setdefault((r["model"], r["case"], r["method"]), []).append(r)
    print("\nmean over seeds (worst seed): accuracy change in points, logits rel. error")
    for (model, case, method), rs in groups.items():
        change = [100 * r["accuracy_change"] for r in rs]
        err = [r["logits_error"] for r in rs]
        print(f"  {model:9s} {case:4s} {method:14s} {np.mean(change):+6.2f} ({min(change):+6.2f})  "
              f"{np.mean(err):.3f} ({max(err):.3f})", flush=True)


if __name__ == "__main__":
    main()
