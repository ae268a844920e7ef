"""In-process MetaSchedule builder and runner.

MetaSchedule's stock ``LocalBuilder``/``LocalRunner`` fork worker processes through a popen pool
that needs ``cloudpickle`` (and ``psutil`` to size it), which are not dependencies here. These two
classes build candidates with ``tvm.compile`` and time them with ``time_evaluator`` in the calling
process instead (candidates stay in memory, keyed by a placeholder path in an empty temporary
directory). Slower than a process pool for large searches, fine for the small trial budgets used
on a 2-core machine.
"""

from __future__ import annotations

import itertools
import os
import tempfile

import numpy as np

from .. import _tvm

tvm = _tvm.tvm
ms = _tvm.s_tir.meta_schedule

_ARTIFACTS: dict[str, object] = {}
_COUNTER = itertools.count()


@tvm.ir.utils.derived_object
class InProcessBuilder(ms.builder.PyBuilder):
    """Builds each candidate with ``tvm.compile``; the artifact stays in memory."""

    def build(self, build_inputs):
        results = []
        for inp in build_inputs:
            try:
                lib = tvm.compile(inp.mod, target=inp.target)
            except Exception as err:  # noqa: BLE001 - a failing candidate is a result, not an error
                results.append(ms.builder.BuilderResult(None, f"{type(err).__name__}: {err}"))
                continue
            # A real (empty) directory, because MetaSchedule's RemoveBuildArtifact callback
            # deletes the artifact's parent directory after measuring.
            key = os.path.join(tempfile.mkdtemp(prefix="sparseforge_ms_"), f"candidate{next(_COUNTER)}")
            _ARTIFACTS[key] = lib
            results.append(ms.builder.BuilderResult(key, None))
        return results


@tvm.ir.utils.derived_object
class _Ready(ms.runner.PyRunnerFuture):
    def __init__(self, result):
        super().__init__()
        self._result = result

    def done(self):
        return True

    def result(self):
        return self._result


@tvm.ir.utils.derived_object
class InProcessRunner(ms.runner.PyRunner):
    """Times each built candidate (median-free: MetaSchedule takes the mean of ``repeat`` runs)."""

    def __init__(self, number: int = 3, repeat: int = 3):
        super().__init__()
        self.number = number
        self.repeat = repeat

    def run(self, runner_inputs):
        futures = []
        dev = _tvm.cpu_device()
        for inp in runner_inputs:
            lib = _ARTIFACTS.pop(str(inp.artifact_path), None)
            try:
                if lib is None:
                    raise RuntimeError(f"unknown artifact {inp.artifact_path}")
                args = [
                    _tvm.to_tvm_tensor(np.random.uniform(-1, 1, [int(s) for s in info.shape]).astype(str(info.dtype)), dev)
                    for info in inp.args_info
                ]
                timer = lib.mod.time_evaluator("main", dev, number=self.number, repeat=self.repeat)
                result = ms.runner.RunnerResult(list(timer(*args).results), None)
            except Exception as err:  # noqa: BLE001
                result = ms.runner.RunnerResult(None, f"{type(err).__name__}: {err}")
            futures.append(_Ready(result))
        return futures
