"""Run a model in ONNX Runtime over calibration batches and hand chosen intermediate values to a callback.

The values are added to a copy of the model as extra graph outputs (the model given is not changed); each batch
is one run; nothing is kept between batches but what the callback keeps (memory stays bounded by one batch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx

from .compare import session


def with_outputs(proto: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """A copy of ``proto`` that also outputs the values ``names`` (graph inputs, initializers and node outputs)."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    present = {o.name for o in model.graph.output}
    infos = {v.name: v for v in list(model.graph.value_info) + list(model.graph.input)}
    for name in names:
        if name in present:
            continue
        info = infos.get(name)
        if info is not None:
            model.graph.output.append(info)
        else:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        present.add(name)
    return model


def run_batches(proto: onnx.ModelProto, names: Sequence[str], batches: Iterable[Mapping[str, np.ndarray]],
                callback: Callable[[dict[str, np.ndarray]], None], *, threads: int = 1) -> int:
    """Run every batch; ``callback({name: value})`` gets the model's outputs and ``names``. Returns the runs."""
    sess = session(with_outputs(proto, names), threads=threads)
    outputs = [o.name for o in sess.get_outputs()]
    runs = 0
    for feeds in batches:
        values = sess.run(outputs, dict(feeds))
        callback(dict(zip(outputs, values)))
        runs += 1
    return runs
