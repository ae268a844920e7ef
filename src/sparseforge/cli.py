"""The ``sparseforge`` command line.

Every command takes MODEL as an ``.onnx`` file, a ``.pt2`` file saved by ``torch.export.save``, or
``path/to/file.py:factory`` where ``factory()`` returns ``(torch_module, example_inputs)``.
User errors print one message and exit with code 2; a failed ``--verify`` exits with code 1.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from sparseforge import api, render
from sparseforge import report as html_report
from sparseforge.passes.timeline import PassTimeline
from sparseforge._version import __version__
from sparseforge.errors import SparseforgeError

MODEL_HELP = "MODEL is an .onnx file, a .pt2 file from torch.export.save, or FILE.py:FACTORY returning (module, inputs)."

# markup=False: names, paths and messages from a model are printed literally (a node named ``x[/y]`` is not markup)
out = Console(highlight=False, soft_wrap=False, width=160, markup=False)


def _shape_option(f: Callable) -> Callable:
    return click.option("--shape", "shapes", multiple=True, metavar="NAME=D0,D1,...",
                        help="Fix the shape of a graph input with dynamic dimensions (repeatable).")(f)


def _allow_invalid_option(f: Callable) -> Callable:
    return click.option("--allow-invalid-input", "allow_invalid", is_flag=True,
                        help="Go on when the ONNX checker rejects the input model (says what is wrong); every file "
                             "written is still checked.")(f)


def _freeze_option(f: Callable) -> Callable:
    return click.option("--freeze-initializer-inputs", "freeze", is_flag=True,
                        help="Treat graph inputs that have an initializer as constants (IR version >= 4 makes them "
                             "overridable inputs; below 4 they always are constants).")(f)


def _input_shapes(shapes: tuple[str, ...]) -> dict[str, list[int]] | None:
    return api.parse_shapes(shapes)


def _write_report(report_file: str | None, model: str, reports, timeline: PassTimeline, dump_ir: str | None,
                  manifest: dict | None, shapes: tuple[str, ...], allow_invalid: bool,
                  artifact_dir: Path | None = None) -> Path | None:
    """``--report FILE``: the HTML report of ``model`` with this run's passes (and the artifact's decisions and,
    for an artifact that runs here, its measured profile)."""
    if report_file is None:
        return None
    inspected = api.inspect(model, input_shapes=_input_shapes(shapes), allow_invalid_input=allow_invalid)
    profile = _profile(artifact_dir, manifest, inspected.model)
    return html_report.write(inspected, report_file, manifest=manifest, title=Path(model).name, passes=reports,
                             timeline=timeline.entries, dump_dir=dump_ir, profile=profile)


def _profile(artifact_dir, manifest: dict | None, reference) -> dict | None:
    """The artifact's measured profile (and ONNX Runtime on ``reference``) when it runs on this machine."""
    if artifact_dir is None or manifest is None or manifest.get("target", {}).get("name") != "x86":
        return None
    with out.status("profiling the artifact (per-kernel times, ONNX Runtime side by side)"):
        return api.profile(artifact_dir, reference)


def _print_report_path(written: Path | None) -> None:
    if written is not None:
        out.print(f"report: {escape(str(written))} (open it in a browser)", highlight=False)


def _run(debug: bool, body: Callable[[], int | None]) -> None:
    """Run a command body: user errors -> one message + exit 2 (or the error's code); bugs -> one message + exit 3."""
    try:
        with render.pass_progress():
            code = body()
    except SparseforgeError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug in sparseforge: one line unless --debug
        if debug:
            traceback.print_exc()
        else:
            click.echo(f"internal error: {type(exc).__name__}: {exc}\n  hint: rerun with --debug for the traceback "
                       "and please report it", err=True)
        sys.exit(3)
    sys.exit(code or 0)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="sparseforge")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """sparseforge finds sparsity and structure in trained networks and turns it into speed.

    \b
    Typical session:
      sparseforge inspect model.onnx                 what structure is in the weights?
      sparseforge prune model.onnx -o p.onnx --method channel --sparsity 0.5
      sparseforge export p.onnx -o small.onnx --verify   remove dead channels exactly, check with ONNX Runtime
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(name)s: %(message)s")
    if not debug:  # library warnings (with tracebacks) are not the user's concern; our errors say what matters
        for name in ("onnx_ir", "onnxscript", "torch", "tvm"):
            logging.getLogger(name).setLevel(logging.ERROR)


@main.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of the table.")
@click.option("--no-rank", is_flag=True, help="Skip the SVD-based rank analysis (faster on big models).")
@click.option("--max-svd-dim", default=2048, show_default=True,
              help="Exact SVD up to this matrix size; larger weights get a randomized low-rank test.")
@click.option("--verbose", is_flag=True, help="Show every pass diagnostic.")
@_shape_option
@_freeze_option
@_allow_invalid_option
@click.pass_context
def inspect(ctx: click.Context, model: str, as_json: bool, no_rank: bool, max_svd_dim: int, verbose: bool,
            shapes: tuple[str, ...], allow_invalid: bool,
          freeze: bool) -> None:
    """Show the structure found in every weight of MODEL.

    For each MatMul/Gemm/Conv weight, in its (output, reduction) view: density (exact zeros), the best N:M
    pattern, the best zero-block shape, dead output/input channels and the numerical rank (fp32 tolerance) /
    the rank holding 99% of the spectral energy. Nothing is changed or written.

    \b
    MODEL is an .onnx file, a .pt2 file from torch.export.save, or FILE.py:FACTORY returning (module, inputs).
    """

    def body() -> None:
        result = api.inspect(model, with_rank=not no_rank, max_svd_dim=max_svd_dim,
                             input_shapes=_input_shapes(shapes), allow_invalid_input=allow_invalid,
                             freeze_initializer_inputs=freeze)
        if as_json:
            click.echo(json.dumps({"model": model, **result.to_dict()}, indent=1))
            return
        out.print(render.layers_table(result.layers))
        if verbose:
            render.pass_reports(out, result.reports, verbose=True)
        else:
            render.skipped_layers(out, result.reports)
        out.print(render.inspect_summary(result.summary()))

    _run(ctx.obj["debug"], body)


_report_option = click.option("--report", "report_file", default=None, type=click.Path(dir_okay=False),
                              help="Also write the HTML report (sparseforge report) with this run's pass timeline "
                                   "and, for compile, its decisions.")
_dump_ir_option = click.option("--dump-ir", "dump_ir", default=None, type=click.Path(file_okay=False),
                               help="Write the model after every pass (NN-Pass.onnx, opens in Netron), "
                                    "for compile also the Relax module before/after and each kernel's TIR, "
                                    "with index.md, into this folder.")


@main.command()
@click.argument("model")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Where to write the HTML file.")
@click.option("--artifact", "artifact_dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="A compiled artifact of MODEL (from `compile -o`): adds its per-layer decisions and reasons.")
@click.option("--no-rank", is_flag=True, help="Skip the SVD-based rank analysis (faster on big models).")
@click.option("--node-data", "node_data_dir", default=None, type=click.Path(file_okay=False),
              help="Also write Model Explorer node-data files (density; with --artifact kernel and speedup) here.")
@click.option("--no-profile", is_flag=True, help="With --artifact: do not run it (no measured times per layer, no "
              "measured speedup over ONNX Runtime).")
@_shape_option
@_allow_invalid_option
@click.pass_context
def report(ctx: click.Context, model: str, output: str, artifact_dir: str | None, no_rank: bool,
           node_data_dir: str | None, no_profile: bool, shapes: tuple[str, ...], allow_invalid: bool) -> None:
    """Write one self-contained HTML report about MODEL: summary, sortable layer table, a picture of every
    weight (nonzero pattern, singular values, zero blocks, N:M), plots, every pass with all its notes.

    The file needs no network and opens from disk. Figures need matplotlib: pip install 'sparseforge[report]'.
    """

    def body() -> None:
        manifest = None
        if artifact_dir is not None:
            path = Path(artifact_dir) / "manifest.json"
            try:
                manifest = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise SparseforgeError(f"cannot read the artifact's manifest: {exc}", where=str(path),
                                       hint="pass a folder written by `sparseforge compile -o`") from None
        result = api.inspect(model, with_rank=not no_rank, input_shapes=_input_shapes(shapes),
                             allow_invalid_input=allow_invalid)
        profile = None if no_profile else _profile(artifact_dir, manifest, result.model)
        written = html_report.write(result, output, manifest=manifest, title=Path(model).name, profile=profile)
        out.print(f"wrote {escape(str(written))} ({written.stat().st_size / 1e6:.2f} MB, {len(result.layers)} "
                  "layers); open it in a browser")
        if node_data_dir is not None:
            paths = html_report.write_node_data(result, node_data_dir, manifest)
            out.print(f"Model Explorer overlays: model-explorer {escape(model)} --node_data_paths="
                      + escape(str(paths[0])), highlight=False)
            if len(paths) > 1:
                out.print(f"  and: model-explorer {escape(str(Path(artifact_dir) / 'model.onnx'))} "
                          f"--node_data_paths={escape(','.join(str(p) for p in paths[1:]))}", highlight=False)

    _run(ctx.obj["debug"], body)


@main.command()
@click.argument("model")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Where to write the ONNX file.")
@click.option("--verify", is_flag=True, help="Run original and exported models in ONNX Runtime on random inputs; "
              "exit 1 (writing nothing) if the max relative error exceeds --rtol.")
@click.option("--rtol", type=float, default=None,
              help="Tolerance for --verify (relative to output magnitude; default by output dtype: 1e-5 for fp32, "
                   "1e-2 for fp16/bf16).")
@click.option("--sparse-storage", is_flag=True,
              help="Store sparse weights as ONNX sparse initializers (smaller file; ONNX Runtime loads it, "
                   "some other tools cannot).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
@click.option("--verbose", is_flag=True, help="Show every pass diagnostic.")
@_shape_option
@_freeze_option
@_allow_invalid_option
@_dump_ir_option
@_report_option
@click.pass_context
def export(ctx: click.Context, model: str, output: str, verify: bool, rtol: float, sparse_storage: bool,
           as_json: bool, verbose: bool, shapes: tuple[str, ...], allow_invalid: bool,
           freeze: bool, dump_ir: str | None, report_file: str | None) -> None:
    """Write an optimized ONNX file: canonicalized, dead channels removed exactly.

    Folds constants and BatchNorm, then removes channels that carry no information (all-zero weights, or
    constants folded into the next layer's bias), carrying the change through elementwise ops, BatchNorm,
    Reshape/Flatten, residual Add and Concat. Prints parameters, FLOPs and file size before/after and what each
    pass did. The file is written atomically and never over MODEL.

    \b
    MODEL is an .onnx file, a .pt2 file from torch.export.save, or FILE.py:FACTORY returning (module, inputs).
    """

    def body() -> int:
        timeline = PassTimeline()
        result = api.export(model, output, verify=verify, sparse_storage=sparse_storage, rtol=rtol,
                            input_shapes=_input_shapes(shapes), allow_invalid_input=allow_invalid,
                            freeze_initializer_inputs=freeze, dump_ir=dump_ir, instruments=[timeline])
        written = _write_report(report_file, model, result.reports, timeline, dump_ir, None, shapes, allow_invalid)
        if as_json:
            click.echo(json.dumps(result.to_dict(), indent=1))
            return 0
        out.print(render.stats_table(result.before, result.after))
        render.pass_reports(out, result.reports, verbose=verbose)
        if result.comparison is not None:
            out.print(f"verify: max abs error {result.comparison.max_abs:.3g}, max relative error "
                      f"{result.comparison.max_rel:.3g} (tolerance {result.comparison.rtol:g}) -- OK")
        out.print(f"wrote {result.output}")
        _print_report_path(written)
        return 0

    _run(ctx.obj["debug"], body)


@main.command()
@click.argument("model")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Where to write the ONNX file.")
@click.option("--method", type=click.Choice(["magnitude", "nm", "block", "channel", "group", "wanda", "sparsegpt"]),
              required=True, help="magnitude: unstructured; nm: N:M groups; block: zero blocks; channel: whole output "
              "channels, each layer on its own; group: coupled channel groups (DepGraph), all removed by `export`; "
              "wanda / sparsegpt: with --calibration data (Wanda's |w|*||x|| scores; SparseGPT's OBS pruning with "
              "weight updates), in the --pattern given.")
@click.option("--pattern", type=click.Choice(["unstructured", "nm", "block"]), default="unstructured",
              show_default=True, help="What wanda / sparsegpt prune: single weights (--sparsity), N:M groups (--nm) "
              "or blocks (--block, --sparsity).")
@click.option("--calibration", default=None, metavar="DATA",
              help="Calibration samples: data.npz (arrays by input name, first axis = samples), FILE.py:LOADER "
                   "(returns that mapping), or random[:N] (random inputs, with a warning). Needed by wanda and "
                   "sparsegpt; with any method it gives the accuracy report on held-out samples.")
@click.option("--holdout", type=float, default=0.25, show_default=True,
              help="Fraction of the calibration samples kept for the accuracy report (never used to prune).")
@click.option("--sequential", is_flag=True, help="wanda / sparsegpt: prune stage by stage, each stage's layer "
              "inputs collected from the model with the earlier stages pruned (one calibration pass per stage; "
              "slower, usually more accurate at high sparsity).")
@click.option("--sparsity", type=float, help="Fraction of weights (blocks, channels) to zero, e.g. 0.9. "
              "Not used by --method nm.")
@click.option("--nm", default="2:4", show_default=True, help="N:M pattern for --method nm (keep N of every M).")
@click.option("--block", default="4x1", show_default=True, help="Block shape ROWSxCOLS for --method block "
              "(rows = output channels, cols = reduction).")
@click.option("--global", "global_scope", is_flag=True, help="One threshold over all layers instead of per layer.")
@click.option("--skip", multiple=True, metavar="PATTERN",
              help="Leave layers whose node or weight name matches this glob pattern (repeatable).")
@click.option("--max-weight-error", type=float, default=None,
              help="Error budget: leave a layer unpruned if its relative weight error would exceed this.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
@_shape_option
@_freeze_option
@_allow_invalid_option
@click.pass_context
def prune(ctx: click.Context, model: str, output: str, method: str, pattern: str, calibration: str | None,
          holdout: float, sequential: bool, sparsity: float | None, nm: str, block: str, global_scope: bool,
          skip: tuple[str, ...],
          max_weight_error: float | None, as_json: bool, shapes: tuple[str, ...], allow_invalid: bool,
          freeze: bool) -> None:
    """Zero weights of MODEL to create sparsity (APPROXIMATE: changes the model's outputs).

    Prints each layer's sparsity and relative weight error ||W - W'|| / ||W||, and the output deviation on
    random inputs. Check accuracy on your own data before using the result. Follow with `sparseforge export`
    to remove pruned channels physically.

    \b
    MODEL is an .onnx file, a .pt2 file from torch.export.save, or FILE.py:FACTORY returning (module, inputs).
    """

    def body() -> int:
        config = api.prune_config(method, sparsity, nm, block, global_scope, skip, max_weight_error, pattern)
        result = api.prune(model, output, config, input_shapes=_input_shapes(shapes),
                           allow_invalid_input=allow_invalid, freeze_initializer_inputs=freeze,
                           calibration=calibration, holdout=holdout, sequential=sequential)
        if as_json:
            click.echo(json.dumps(result.to_dict(), indent=1))
            return 0
        out.print(render.prune_table(result.prune_report.details["layers"], result.layer_errors))
        render.pass_reports(out, [result.prune_report])
        weight_error = result.prune_report.details["relative_weight_error"]
        if result.output_deviation is not None:
            out.print(f"APPROXIMATE: overall relative weight error {weight_error:.3g}; output deviation on random "
                      f"inputs: max relative {result.output_deviation.max_rel:.3g}. Validate accuracy on your own "
                      "data.")
        else:
            info = result.calibration
            out.print(f"calibration: {info['source']}: {info['calibration_samples']} samples to prune, "
                      f"{info['heldout_samples']} held out", highlight=False)
            if result.accuracy:
                out.print(render.accuracy_table(result.accuracy))
            out.print(f"APPROXIMATE: overall relative weight error {weight_error:.3g}"
                      + ("; accuracy measured on held-out calibration samples" if result.accuracy else
                         "; no held-out samples (--holdout 0): accuracy not measured")
                      + (" (RANDOM inputs: not your data)" if info["random"] else "") + ".")
        out.print(f"wrote {result.output}")
        return 0

    _run(ctx.obj["debug"], body)


@main.command()
@click.argument("model")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Where to write the ONNX file.")
@click.option("--calibration", required=True, metavar="DATA",
              help="Calibration samples: data.npz (arrays by input name, first axis = samples), FILE.py:LOADER, "
                   "or random[:N] (random inputs, with a warning).")
@click.option("--target", default="x86", show_default=True, help="Whose cost model predicts the layer times.")
@click.option("--threads", type=int, default=None, help="Threads the target runs with (default: all cores).")
@click.option("--max-output-error", type=float, default=None,
              help="Budget: the largest relative L2 error of any output, measured on the calibration samples.")
@click.option("--speedup", type=float, default=None,
              help="Goal instead of a budget: the predicted speedup of the weight layers to reach, at the least error.")
@click.option("--holdout", type=float, default=0.25, show_default=True,
              help="Fraction of the samples kept for the accuracy report (never used to choose).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
@_shape_option
@_allow_invalid_option
@click.pass_context
def compress(ctx: click.Context, model: str, output: str, calibration: str, target: str, threads: int | None,
             max_output_error: float | None, speedup: float | None, holdout: float, as_json: bool,
             shapes: tuple[str, ...], allow_invalid: bool) -> None:
    """Choose per layer the sparsity (SparseGPT: 50-95% unstructured or 2:4) that makes MODEL fastest on the target
    within an output-error budget (--max-output-error E), or the least error for a speedup (--speedup S)
    (APPROXIMATE). Layer times come from the compiler's cost model; the error is measured with ONNX Runtime on the
    calibration samples, and reported on held-out ones.
    """

    def body() -> int:
        result = api.compress(model, output, calibration=calibration, target=target, threads=threads,
                              max_output_error=max_output_error, speedup=speedup, holdout=holdout,
                              input_shapes=_input_shapes(shapes), allow_invalid_input=allow_invalid)
        if as_json:
            click.echo(json.dumps(result.to_dict(), indent=1))
            return 0
        rep = result.report
        out.print(render.compress_table(rep["layers"]))
        info = result.calibration
        out.print(f"calibration: {info['source']}: {info['calibration_samples']} samples to choose, "
                  f"{info['heldout_samples']} held out; error on them {rep['calibration_error']:.3g} (max over "
                  f"outputs, relative L2)", highlight=False)
        if rep["accuracy"]:
            out.print(render.accuracy_table(rep["accuracy"]))
        out.print(f"APPROXIMATE: predicted speedup of the weight layers on {target}: {rep['predicted_speedup']:.2f}x"
                  + (" (RANDOM calibration inputs: not your data)" if info["random"] else "")
                  + f". Measure it: sparseforge bench {result.output}")
        out.print(f"wrote {result.output}")
        return 0

    _run(ctx.obj["debug"], body)


@main.command(name="compile")
@click.argument("model")
@click.option("--target", default="x86", show_default=True,
              help="x86 (this CPU), arm (aarch64 NEON), wasm (wasm32 SIMD128) or cuda.")
@click.option("--cpu", default=None, help="ARM core (cortex-a76, cortex-a55, neoverse-n1, ...) or x86 CPU name.")
@click.option("--arch", default=None, help="CUDA architecture (sm_80, sm_90, ...).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Artifact folder to write (model.so, model.onnx, manifest.json).")
@click.option("--dense", is_flag=True, help="Disable sparse rewrites (the dense control).")
@click.option("--no-fuse", is_flag=True, help="No cross-layer fusion (a 1x1 expansion and the depthwise conv after "
              "it, and the two sparse Linears of an MLP, otherwise run as one kernel on CPU targets where that "
              "pays).")
@click.option("--threads", type=int, default=None, help="Threads the artifact runs with (default: all CPUs).")
@click.option("--tune", type=int, default=0, metavar="N", help="MetaSchedule trials (0: no tuning).")
@click.option("--verify", is_flag=True, help="Run the artifact and ONNX Runtime on random inputs and report the "
              "max error; exit 1 if above --rtol, and then nothing is written.")
@click.option("--rtol", type=float, default=None,
              help="Tolerance for --verify (relative to output magnitude; default by output dtype: 1e-4 for fp32, "
                   "1e-2 for fp16/bf16).")
@click.option("--no-calibrate", is_flag=True, help="Do not measure missing kernel timings: layers without "
              "calibration data stay dense.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@click.option("--bind", "bindings", multiple=True, metavar="NAME=V0,V1,...",
              help="Fix a graph input to a value (shape/axes/sizes inputs; NAME=@file.npy for an array); the "
                   "artifact refuses other values (repeatable).")
@_shape_option
@_freeze_option
@_allow_invalid_option
@_dump_ir_option
@_report_option
@click.pass_context
def compile_cmd(ctx: click.Context, model: str, target: str, cpu: str | None, arch: str | None, output: str,
                dense: bool, no_fuse: bool, threads: int | None, tune: int, verify: bool, rtol: float,
                no_calibrate: bool, as_json: bool, bindings: tuple[str, ...], shapes: tuple[str, ...], allow_invalid: bool,
                freeze: bool, dump_ir: str | None, report_file: str | None) -> None:
    """Compile MODEL for a target device into an artifact folder.

    Canonicalizes the model, removes dead channels, then decides per layer between the dense kernel and sparse
    kernels (CSR, BSR blocks, N:M): for x86 from kernel timings measured on this CPU (cached; measured on first
    use), for other targets from published crossover densities. Compiles everything with TVM and prints each
    layer's decision and the reason. Artifacts: x86 and arm a TVM runtime library (model.so); wasm a
    self-contained model.wasm plus a JavaScript loader (model.mjs); cuda a library with device code for --arch.

    \b
    MODEL is an .onnx file, a .pt2 file from torch.export.save, or FILE.py:FACTORY returning (module, inputs).
    """

    def body() -> int:
        timeline = PassTimeline()
        result = api.compile(model, output, target=target, threads=threads, dense=dense, tune=tune,
                             input_shapes=_input_shapes(shapes), allow_invalid_input=allow_invalid,
                             freeze_initializer_inputs=freeze, calibrate=not no_calibrate, cpu=cpu, arch=arch,
                             verify=verify, rtol=rtol, bind=api.parse_bindings(bindings), dump_ir=dump_ir,
                             instruments=[timeline], fuse=not no_fuse)
        written = _write_report(report_file, model, result.reports, timeline, dump_ir, result.manifest, shapes,
                                allow_invalid, result.outdir)
        code = 0 if not verify or result.manifest["verify"]["ok"] else 1
        if as_json:
            click.echo(json.dumps(result.manifest, indent=1))
            return code
        out.print(render.decisions_table(result.manifest["decisions"]))
        render.structured_changes(out, result.manifest.get("structured", []))
        sparse = sum(1 for d in result.manifest["decisions"] if d["fmt"] != "dense")
        t = result.manifest["target"]
        detail = t.get("arch") or f"{t.get('mcpu')}, {t.get('threads')} threads"
        fused = [k.get("info", {}) for k in result.manifest.get("kernels", []) if k.get("info", {}).get("fused")]
        mlps = sum(1 for info in fused if info.get("variant") == "fused-mlp")
        if len(fused) - mlps:
            out.print(f"{len(fused) - mlps} expansion + depthwise conv pair(s) fused into one kernel each "
                      "(--no-fuse: apart)")
        if mlps:
            out.print(f"{mlps} sparse MLP pair(s) (Linear -> activation -> Linear) fused into one kernel each "
                      "(--no-fuse: apart)")
        out.print(f"{sparse} of {len(result.manifest['decisions'])} weight layers use sparse kernels; compiled in "
                  f"{result.seconds:.1f} s for {target} ({detail})")
        if verify:
            render.verify_report(out, result.manifest["verify"])
        if result.outdir is None:
            out.print("verification failed: nothing was written")
            return code
        files = ", ".join(sorted(p.name for p in result.outdir.iterdir()))
        out.print(f"wrote {result.outdir}/ ({files})")
        _print_report_path(written)
        return code

    _run(ctx.obj["debug"], body)


@main.command(name="verify")
@click.argument("artifact", type=click.Path())
@click.option("--rtol", type=float, default=None,
              help="Tolerance (relative to the output magnitude; default by output dtype: 1e-4 for fp32, 1e-2 for "
                   "fp16/bf16).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def verify_cmd(ctx: click.Context, artifact: str, rtol: float, as_json: bool) -> None:
    """Run a compiled ARTIFACT where its code really runs and compare with ONNX Runtime on random inputs.

    \b
    x86   in this process;
    arm   the whole model under qemu-aarch64 with TVM's aarch64 runtime;
    wasm  model.wasm in wasmtime and, through model.mjs, in Node.js;
    cuda  on the GPU when one is present, otherwise it says it only checked the compiled device code.
    ONNX Runtime runs the artifact's model.onnx (the exact rewrite it was compiled from). Exit 1 on a mismatch.
    """

    def body() -> int:
        report = api.verify_artifact(artifact, rtol=rtol)
        if as_json:
            click.echo(json.dumps(report.to_dict(), indent=1))
        else:
            render.verify_report(out, report.to_dict())
        return 0 if report.ok else 1

    _run(ctx.obj["debug"], body)


@main.command()
@click.argument("artifact", type=click.Path())
@click.option("--inputs", "inputs_path", required=True, type=click.Path(), help=".npz of inputs by ONNX input name.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help=".npz to write outputs to.")
@click.option("--threads", type=int, default=None, help="Threads to run with (default: as compiled).")
@click.pass_context
def run(ctx: click.Context, artifact: str, inputs_path: str, output: str, threads: int | None) -> None:
    """Run a compiled ARTIFACT folder on inputs from an .npz file; write the outputs to an .npz file."""

    def body() -> None:
        outputs = api.run(artifact, inputs_path, output=output, threads=threads)
        for name, array in outputs.items():
            out.print(f"{name}: shape {list(array.shape)} {array.dtype}")
        out.print(f"wrote {output}")

    _run(ctx.obj["debug"], body)


@main.command()
@click.argument("model")
@click.option("--target", default="x86", show_default=True, help="Target device family (x86).")
@click.option("--threads", type=int, default=1, show_default=True, help="Threads for every engine (pinned).")
@click.option("--rounds", type=int, default=5, show_default=True, help="Interleaved rounds (median of rounds).")
@click.option("--repeat", type=int, default=10, show_default=True, help="Calls per engine per round.")
@click.option("--dense-only", is_flag=True, help="Skip the sparse build.")
@click.option("--no-torch-compile", is_flag=True, help="Do not time torch.compile (PyTorch models; it compiles "
              "for a while first).")
@click.option("--check-scaling", is_flag=True, help="With --threads > 1: time every engine at 1 thread too, show "
              "the 1-thread ratios beside and flag engines not faster with more threads (a busy machine).")
@click.option("--rpc", "rpc_address", default=None, metavar="HOST:PORT",
              help="Measure on a remote device through a TVM RPC server (or tracker, with --rpc-key).")
@click.option("--rpc-key", default=None, help="Device key when --rpc points to an RPC tracker.")
@click.option("--cpu", default=None, help="ARM core for --target arm (cortex-a76, ...).")
@click.option("--json", "as_json", is_flag=True, help='Print {"results": [{"engine", "median_ms"}, ...]}.')
@_shape_option
@_allow_invalid_option
@click.pass_context
def bench(ctx: click.Context, model: str, target: str, threads: int, rounds: int, repeat: int, dense_only: bool,
          no_torch_compile: bool, check_scaling: bool, rpc_address: str | None, rpc_key: str | None, cpu: str | None, as_json: bool,
          shapes: tuple[str, ...], allow_invalid: bool) -> None:
    """Median latency of ONNX Runtime, OpenVINO, PyTorch eager and torch.compile (for PyTorch models), sparseforge
    dense and sparse, in one process.

    All engines use the same inputs and thread count (the process is pinned to that many CPUs) and are run in
    interleaved rounds. Speedups are relative to the fastest dense peer (ONNX Runtime, OpenVINO, PyTorch eager or
    torch.compile); a peer that cannot run (OpenVINO not installed, torch.compile failing) is skipped, with a note.

    \b
    MODEL is an .onnx file, a .pt2 file from torch.export.save, or FILE.py:FACTORY returning (module, inputs).
    """

    def body() -> None:
        result = api.bench(model, target=target, threads=threads, rounds=rounds, repeat=repeat,
                           sparse=not dense_only, rpc=rpc_address, rpc_key=rpc_key, cpu=cpu,
                           input_shapes=_input_shapes(shapes), allow_invalid_input=allow_invalid,
                           torch_compile=not no_torch_compile, check_scaling=check_scaling)
        if as_json:
            click.echo(json.dumps(result, indent=1))
            return
        out.print(render.bench_table(result))

    _run(ctx.obj["debug"], body)


@main.command()
@click.argument("model")
@click.argument("layer")
@click.option("--target", default="x86", show_default=True, help="Target device family (x86, arm, wasm, cuda).")
@click.option("--threads", type=int, default=None, help="Threads the kernels are predicted for.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--no-calibrate", is_flag=True, help="Do not measure anything: use what is cached.")
@_shape_option
@_allow_invalid_option
@click.pass_context
def explain(ctx: click.Context, model: str, layer: str, target: str, threads: int | None, as_json: bool,
            no_calibrate: bool, shapes: tuple[str, ...], allow_invalid: bool) -> None:
    """Explain the decision for one LAYER of MODEL (its node name).

    Every fact of its weight; every structured form (low rank, block-diagonal, Monarch, sparse + low rank) with
    what its detector found; every sparse kernel with its stored fraction and predicted time against dense, or why
    it is not allowed; the choice; and what would have to change (for example "at density <= 0.18 CSR wins at
    M = 128").
    """

    def body() -> None:
        result = api.explain(model, layer, target=target, threads=threads, input_shapes=_input_shapes(shapes),
                             allow_invalid_input=allow_invalid, calibrate=not no_calibrate)
        if as_json:
            click.echo(json.dumps(result.to_dict(), indent=1, default=str))
            return
        render.explanation(out, result)

    _run(ctx.obj["debug"], body)


@main.command()
@click.argument("model")
@click.option("--target", default="x86", show_default=True, help="Target device family (x86).")
@click.option("--threads", type=int, default=None, help="Threads the kernels are measured with.")
@click.option("--fresh", is_flag=True, help="Forget the cached timings for these shapes and the performance model's "
              "fits, and measure again.")
@_shape_option
@_allow_invalid_option
@click.pass_context
def calibrate(ctx: click.Context, model: str, target: str, threads: int | None, fresh: bool,
              shapes: tuple[str, ...], allow_invalid: bool) -> None:
    """Measure every layer of MODEL at its shape (its best sparse option against dense), and cache the timings.

    `compile` predicts with a per-CPU performance model (fitted once from a fixed grid) and measures only close
    calls; after this, MODEL's decisions are all measured ones. --fresh also refits the performance model (after
    a hardware or driver change).
    """

    def body() -> None:
        table, decisions = api.calibrate(model, target=target, threads=threads, fresh=fresh,
                                         input_shapes=_input_shapes(shapes), allow_invalid_input=allow_invalid)
        out.print(render.decisions_table(decisions))
        out.print(f"calibration table: {escape(str(table.path))} ({len(table.entries)} entries)")

    _run(ctx.obj["debug"], body)


def entry(argv: list[str] | None = None) -> Any:  # pragma: no cover - thin wrapper for python -m
    return main(argv)


if __name__ == "__main__":  # pragma: no cover
    main()
