"""Dead attention heads: found through the attention pattern and removed exactly (part of ShrinkChannels).

An attention core is ``ctx = MatMul(Softmax(scores), V4)`` with ``scores`` computed from ``MatMul(Q4, K4)``
through elementwise ops (scale, mask). ``Q4``, ``K4`` and ``V4`` come from projections (``MatMul``/``Gemm`` with a
constant weight, optionally ``+ bias``, one fused ``in_proj`` or three) through data-movement ops only (Reshape,
Transpose, Squeeze, Unsqueeze, Gather/Slice/Split with constant parameters, Identity, Mul/Div by a scalar):
the shapes PyTorch's ``nn.MultiheadAttention`` and Hugging Face exporters emit. ``ctx`` reaches the output
projection through data-movement ops too.

Which projection channel ends up in which head is found by *labelling*: the channel index of every projection
output element is pushed through the movement ops with NumPy (:func:`_propagate`), so no layout is assumed. The
head axis is the batch axis of ``V4`` along which the channel sets are pairwise disjoint.

A head is removed when its value rows (and bias) are all zero (its output is 0 whatever the softmax does) or its
output-projection columns are all zero (nothing reads it): its Q, K and V rows, its bias entries and its
output-projection columns go, and every Reshape / Split on the way gets the smaller head count. Q or K rows alone
being zero is not enough (the softmax turns uniform and the head still averages V): such heads are reported.
Exact: only heads that contribute exactly zero are dropped.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from sparseforge.ir.weights import WeightView, constant_array, view_of
from sparseforge.passes import labels as labels_
from sparseforge.passes.canonicalize import new_initializer
from sparseforge.passes.infra import PassReport

#: Pure data-movement ops the labels are pushed through.
MOVEMENT_OPS = labels_.MOVEMENT_OPS | {"Identity", "Cast", "Dropout"}
#: Elementwise ops allowed between ``MatMul(Q4, K4)`` and the Softmax (their constants must not vary by head).
SCORE_OPS = frozenset({"Mul", "Div", "Add", "Sub", "Where", "Cast", "Identity"})


class NotAttention(Exception):
    """The pattern does not hold (the reason says where)."""


@dataclasses.dataclass
class Source:
    """A projection feeding Q, K or V: its weight view and the value it produces (after the bias Add, if any)."""

    view: WeightView
    output: ir.Value
    bias_add: ir.Node | None  # MatMul + Add(bias)

    def bias(self) -> np.ndarray | None:
        if self.bias_add is not None:
            return constant_array(self.bias_add.inputs[1])
        return self.view.bias_array()


@dataclasses.dataclass
class Chain:
    """Movement ops from ``start`` to ``end``: ``steps`` in forward order, each a node and the output of it the
    chain continues with."""

    start: ir.Value
    end: ir.Value
    steps: list[tuple[ir.Node, ir.Value]]


@dataclasses.dataclass
class Attention:
    av: ir.Node  # MatMul(P, V4)
    qk: ir.Node  # MatMul(Q4, K4)
    sources: dict[str, Source]  # "q", "k", "v"
    chains: dict[str, Chain]
    out_chain: Chain
    out_view: WeightView
    score_nodes: list[ir.Node]
    head_axis: int
    heads: int
    channels: dict[str, list[np.ndarray]]  # per role: source channels of each head
    columns: list[np.ndarray]  # output-projection reduction columns of each head

    @property
    def name(self) -> str:
        return self.av.name or self.qk.name or "attention"


# ------------------------------------------------------------------ finding the pattern


def _constant(value: ir.Value | None) -> np.ndarray | None:
    return None if value is None else constant_array(value)


def _is_scalar_scale(node: ir.Node) -> bool:
    if node.op_type not in ("Mul", "Div") or len(node.inputs) != 2:
        return False
    c = _constant(node.inputs[1])
    return c is not None and c.size == 1


def _source_of(value: ir.Value) -> Source | None:
    producer = value.producer()
    if producer is None:
        return None
    view = view_of(producer)
    if view is not None and view.data_index == 0 and producer.op_type in ("MatMul", "Gemm"):
        return Source(view, value, None)
    if producer.op_type == "Add" and len(producer.inputs) == 2:
        base, bias = producer.inputs
        inner = base.producer() if base is not None else None
        b = _constant(bias)
        view = view_of(inner) if inner is not None else None
        if view is not None and view.data_index == 0 and inner.op_type == "MatMul" and b is not None \
                and b.ndim == 1 and b.size == view.shape[0] and len(base.uses()) == 1:
            return Source(view, value, producer)
    return None


def _trace_back(value: ir.Value) -> tuple[Source, Chain]:
    steps: list[tuple[ir.Node, ir.Value]] = []
    current = value
    for _ in range(64):
        source = _source_of(current)
        if source is not None:
            return source, Chain(current, value, steps[::-1])
        producer = current.producer()
        if producer is None or not (producer.op_type in MOVEMENT_OPS or _is_scalar_scale(producer)):
            what = "a graph input" if producer is None else f"{producer.op_type} '{producer.name}'"
            raise NotAttention(f"'{value.name}' comes from {what}, not a projection through data-movement ops")
        steps.append((producer, current))
        current = producer.inputs[0]
    raise NotAttention(f"'{value.name}': movement chain too long")


def _trace_forward(value: ir.Value) -> tuple[WeightView, Chain]:
    steps: list[tuple[ir.Node, ir.Value]] = []
    current = value
    for _ in range(64):
        users = list(current.uses())
        if len(users) != 1 or current.is_graph_output():
            raise NotAttention(f"'{current.name}' is read by {len(users)} nodes (or is a graph output)")
        user, index = users[0]
        view = view_of(user)
        if view is not None and view.data_index == 0 and index == 0 and user.op_type in ("MatMul", "Gemm"):
            return view, Chain(value, current, steps)
        if index != 0 or not (user.op_type in MOVEMENT_OPS or _is_scalar_scale(user)) or len(user.outputs) != 1:
            raise NotAttention(f"'{current.name}' reaches {user.op_type} '{user.name}', not the output projection")
        steps.append((user, user.outputs[0]))
        current = user.outputs[0]
    raise NotAttention(f"'{value.name}': movement chain too long")


def _softmax_before(value: ir.Value) -> ir.Node | None:
    producer = value.producer()
    while producer is not None and producer.op_type in ("Cast", "Identity", "Dropout"):
        producer = producer.inputs[0].producer()
    return producer if producer is not None and producer.op_type == "Softmax" else None


def _scores_path(softmax: ir.Node) -> tuple[ir.Node, list[ir.Node], list[ir.Value]]:
    """The ``MatMul(Q4, K4)`` before ``softmax``, the elementwise nodes between them and their other run-time
    inputs (masks)."""
    path: list[ir.Node] = []
    sides: list[ir.Value] = []
    current = softmax.inputs[0]
    for _ in range(16):
        producer = current.producer()
        if producer is None:
            break
        if producer.op_type == "MatMul" and all(_constant(v) is None for v in producer.inputs):
            return producer, path, sides
        if producer.op_type not in SCORE_OPS:
            break
        path.append(producer)
        live = [v for v in producer.inputs if v is not None and _constant(v) is None]
        main = [v for v in live if v.producer() is not None and v.shape is not None
                and producer.outputs[0].shape is not None and list(v.shape) == list(producer.outputs[0].shape)]
        if not main:
            break
        current = main[0]
        sides += [v for v in live if v is not current]
    raise NotAttention(f"no MatMul(Q, K) before Softmax '{softmax.name}' through scale/mask ops")


# ------------------------------------------------------------------ labels


def _shape(value: ir.Value) -> tuple[int, ...]:
    if value.shape is None or not value.shape.is_static():
        raise NotAttention(f"'{value.name}' has no static shape")
    return tuple(int(d) for d in value.shape)


def _propagate(chain: Chain, labels: np.ndarray) -> dict[ir.Value, np.ndarray]:
    """Label arrays of every value on ``chain`` (its start holds ``labels``)."""
    arrays = {chain.start: labels}
    current = chain.start
    for node, out in chain.steps:
        try:
            arrays[out] = labels_.move(node, arrays[current], out, _shape(out))
        except ValueError as exc:
            raise NotAttention(str(exc)) from None
        if arrays[out].shape != _shape(out):
            raise NotAttention(f"'{out.name}': label shape {arrays[out].shape} != {_shape(out)}")
        current = out
    return arrays


def _channel_labels(source: Source) -> np.ndarray:
    shape = _shape(source.output)
    return np.broadcast_to(np.arange(shape[-1], dtype=np.int64), shape)


def _head_sets(labels: np.ndarray, axis: int) -> list[np.ndarray]:
    return [np.unique(np.take(labels, i, axis=axis)) for i in range(labels.shape[axis])]


def _find_head_axis(labels: np.ndarray) -> int:
    """The batch axis of a ``[..., S, D]`` operand whose channel sets are pairwise disjoint."""
    for axis in range(labels.ndim - 2):
        if labels.shape[axis] < 2:
            continue
        sets = _head_sets(labels, axis)
        total = sum(s.size for s in sets)
        if np.unique(np.concatenate(sets)).size == total:
            return axis
    raise NotAttention("no batch axis of V separates the projection channels into heads")


def find(model: ir.Model) -> tuple[list[Attention], list[tuple[str, str]]]:
    """Attention cores of ``model`` with their head maps; ``(node, reason)`` for softmax-attention MatMuls whose
    pattern does not hold."""
    found, skipped = [], []
    for node in model.graph:
        if node.op_type != "MatMul" or len(node.inputs) != 2 or any(_constant(v) is not None for v in node.inputs):
            continue
        softmax = _softmax_before(node.inputs[0])
        if softmax is None:
            continue
        try:
            found.append(_attention(node, softmax))
        except NotAttention as exc:
            skipped.append((node.name or "attention", str(exc)))
    return found, skipped


def _attention(av: ir.Node, softmax: ir.Node) -> Attention:
    axis_attr = int(softmax.attributes["axis"].value) if "axis" in softmax.attributes else -1
    rank = len(_shape(softmax.outputs[0]))
    if axis_attr % rank != rank - 1:
        raise NotAttention(f"Softmax '{softmax.name}' is not over the last axis")
    qk, score_nodes, masks = _scores_path(softmax)
    sources, chains, channels = {}, {}, {}
    for role, value in (("q", qk.inputs[0]), ("k", qk.inputs[1]), ("v", av.inputs[1])):
        sources[role], chains[role] = _trace_back(value)
    v_labels = _propagate(chains["v"], _channel_labels(sources["v"]))[chains["v"].end]
    if v_labels.ndim < 3:
        raise NotAttention("V has no batch axis")
    head_axis = _find_head_axis(v_labels)
    heads = v_labels.shape[head_axis]
    for role in ("q", "k", "v"):
        labels = _propagate(chains[role], _channel_labels(sources[role]))[chains[role].end]
        if labels.ndim != v_labels.ndim or labels.shape[head_axis] != heads:
            raise NotAttention(f"{role.upper()} does not have the {heads} heads of V on the same axis")
        sets = _head_sets(labels, head_axis)
        if np.unique(np.concatenate(sets)).size != sum(s.size for s in sets):
            raise NotAttention(f"{role.upper()}'s heads share projection channels")
        channels[role] = sets
    for node in score_nodes:
        for value in node.inputs:
            c = _constant(value)
            if c is not None and c.ndim >= rank - head_axis and c.shape[head_axis - rank] != 1:
                raise NotAttention(f"{node.op_type} '{node.name}' has a constant that differs by head")
    for mask in masks:
        dims = _shape(mask)
        if len(dims) >= rank - head_axis and dims[head_axis - rank] != 1:
            raise NotAttention(f"the mask '{mask.name}' differs by head")
    out_view, out_chain = _trace_forward(av.outputs[0])
    ctx_shape = _shape(av.outputs[0])
    head_ids = np.broadcast_to(np.arange(heads).reshape([heads if a == head_axis else 1
                                                         for a in range(len(ctx_shape))]), ctx_shape)
    at_proj = _propagate(out_chain, head_ids)[out_chain.end]
    flat = at_proj.reshape(-1, at_proj.shape[-1])
    if not np.all(flat == flat[:1]):
        raise NotAttention("the output projection's columns do not each read one head")
    column_heads = flat[0]
    columns = [np.flatnonzero(column_heads == h) for h in range(heads)]
    if out_view.shape[1] != at_proj.shape[-1]:
        raise NotAttention("the output projection does not reduce over the heads' features")
    return Attention(av, qk, sources, chains, out_chain, out_view, score_nodes, head_axis, heads, channels, columns)


# ------------------------------------------------------------------ deciding and removing


def _rows_zero(att: Attention, role: str, head: int) -> bool:
    """Whether the projection rows (and bias entries) of ``head`` for ``role`` ("q", "k", "v") are all zero."""
    src = att.sources[role]
    chans = att.channels[role][head]
    bias = src.bias()
    return not np.any(src.view.matrix()[chans]) and (bias is None or not np.any(bias.reshape(-1)[chans]))


def dead_heads(att: Attention) -> tuple[list[int], list[str]]:
    """Heads whose value rows and bias are zero or whose output-projection columns are zero; notes for heads
    with zero Q or K rows only."""
    dead, notes = [], []
    out = att.out_view.matrix()
    for h in range(att.heads):
        if _rows_zero(att, "v", h) or not np.any(out[:, att.columns[h]]):
            dead.append(h)
        elif _rows_zero(att, "q", h) or _rows_zero(att, "k", h):
            which = "Q" if _rows_zero(att, "q", h) else "K"
            notes.append(f"head {h}: its {which} weights are zero, so its softmax is uniform and it still averages "
                         "V: not removed (only zero V rows or zero output columns make a head dead)")
    return dead, notes


def summary(model: ir.Model) -> list[dict]:
    """Per attention core: ``{node, heads, dead, zero_q, zero_k}`` (head indices): what ``inspect`` reports."""
    attentions, _ = find(model)
    out = []
    for att in attentions:
        dead, _ = dead_heads(att)
        out.append(dict(node=att.name, heads=att.heads, dead=dead,
                        zero_q=[h for h in range(att.heads) if h not in dead and _rows_zero(att, "q", h)],
                        zero_k=[h for h in range(att.heads) if h not in dead and _rows_zero(att, "k", h)]))
    return out


def _varying_axes(labels: np.ndarray) -> list[int]:
    return [a for a in range(labels.ndim) if labels.shape[a] > 1 and np.any(np.diff(labels, axis=a) != 0)]


def _scaled(value: ir.Value, axis: int, keep: int, total: int) -> list[int]:
    shape = list(_shape(value))
    shape[axis] = shape[axis] * keep // total
    return shape


@dataclasses.dataclass
class HeadEdit:
    """Everything :func:`apply` changes, computed (and checked) before anything is."""

    shapes: dict[ir.Value, list[int]]
    reshapes: list[ir.Node]
    splits: list[ir.Node]
    row_keep: dict[int, tuple[Source, np.ndarray]]  # per projection node
    col_keep: np.ndarray


def plan(att: Attention, dead: list[int]) -> HeadEdit:
    """The edit removing heads ``dead``; :class:`NotAttention` when a shape on the way cannot follow."""
    keep, total = att.heads - len(dead), att.heads
    head_of: dict[int, tuple[Source, np.ndarray]] = {}
    for role, src in att.sources.items():  # one labelling per projection, over all the roles it feeds
        _, labels = head_of.setdefault(id(src.view.node), (src, np.full(src.view.shape[0], -1)))
        for h, chans in enumerate(att.channels[role]):
            labels[chans] = h
    for src, labels in head_of.values():
        if np.any(labels < 0):
            raise NotAttention(f"the projection '{src.view.name}' has outputs outside the heads")
    shapes: dict[ir.Value, list[int]] = {}
    reshapes, splits = [], []
    chains = [(c, head_of[id(att.sources[r].view.node)][1][_channel_labels(att.sources[r])])
              for r, c in att.chains.items()]
    ctx_shape = _shape(att.av.outputs[0])
    chains.append((att.out_chain, np.broadcast_to(np.arange(total).reshape(
        [total if a == att.head_axis else 1 for a in range(len(ctx_shape))]), ctx_shape)))
    for chain, start in chains:
        for value, labels in _propagate(chain, start).items():
            present = np.unique(labels)
            varying = _varying_axes(labels)
            if present.size != total or len(varying) != 1:
                raise NotAttention(f"'{value.name}' does not carry every head on one axis")
            shapes[value] = _scaled(value, varying[0], keep, total)
            producer = value.producer()
            if value is chain.start or producer is None:
                continue
            if producer.op_type == "Reshape":
                reshapes.append(producer)
            elif producer.op_type == "Split":
                splits.append(producer)
            elif producer.op_type in ("Gather", "Slice"):
                heads_axes = _varying_axes(_propagate_input(chain, value, start))
                rank_in = len(_shape(producer.inputs[0]))
                if producer.op_type == "Gather":
                    picked = [int(producer.attributes["axis"].value) if "axis" in producer.attributes else 0]
                else:
                    axes = _constant(producer.inputs[3]) if len(producer.inputs) > 3 else None
                    starts = _constant(producer.inputs[1])
                    picked = list(axes) if axes is not None else list(range(len(starts)))
                if any(int(a) % rank_in in heads_axes for a in picked):
                    raise NotAttention(f"{producer.op_type} '{producer.name}' selects along the head axis")
    for src, _ in head_of.values():  # the product before a bias Add
        if src.bias_add is not None:
            inner = src.bias_add.inputs[0]
            shapes[inner] = _scaled(inner, len(_shape(inner)) - 1, keep, total)
    region = [att.qk.outputs[0], *(n.outputs[0] for n in att.score_nodes)]
    value = att.av.inputs[0]
    while value is not None and value not in region:
        region.append(value)
        producer = value.producer()
        value = producer.inputs[0] if producer is not None and producer.op_type != "MatMul" else None
    region.append(att.av.outputs[0])
    rank = len(ctx_shape)
    for value in region:
        if len(_shape(value)) != rank or _shape(value)[att.head_axis] != total:
            raise NotAttention(f"'{value.name}' does not have the heads on axis {att.head_axis}")
        shapes[value] = _scaled(value, att.head_axis, keep, total)
    members = {id(n) for c in att.chains.values() for n, _ in c.steps} | {id(n) for n, _ in att.out_chain.steps}
    members |= {id(att.qk), id(att.av), id(att.out_view.node)} | {id(n) for n in att.score_nodes}
    members |= {id(v.producer()) for v in region if v.producer() is not None}
    for src, _ in head_of.values():
        members |= {id(src.view.node)} | ({id(src.bias_add)} if src.bias_add is not None else set())
    for value in shapes:
        outside = [u for u, _ in value.uses() if id(u) not in members]
        if outside or value.is_graph_output():
            what = "a graph output" if value.is_graph_output() else f"read by {outside[0].op_type} '{outside[0].name}'"
            raise NotAttention(f"'{value.name}' is {what} outside the attention: its shape must not change")
    row_keep = {}
    for key, (src, labels) in head_of.items():
        row_keep[key] = (src, ~np.isin(labels, dead))
    col_keep = np.ones(att.out_view.shape[1], bool)
    for h in dead:
        col_keep[att.columns[h]] = False
    return HeadEdit(shapes, list({id(n): n for n in reshapes}.values()), list({id(n): n for n in splits}.values()),
                    row_keep, col_keep)


def _propagate_input(chain: Chain, value: ir.Value, start: np.ndarray) -> np.ndarray:
    """The label array of the input of ``value``'s producer on ``chain``."""
    arrays = _propagate(chain, start)
    producer = value.producer()
    return arrays.get(producer.inputs[0], start)


def apply(model: ir.Model, att: Attention, edit: HeadEdit) -> None:
    """Carry out ``edit`` (from :func:`plan`)."""
    for node in edit.reshapes:
        out = node.outputs[0]
        node.replace_input_with(1, new_initializer(model, f"{node.name or 'reshape'}_heads",
                                                   np.array(edit.shapes[out], np.int64)))
        if "allowzero" in node.attributes:
            node.attributes.pop("allowzero")
    for node in edit.splits:
        axis = int(node.attributes["axis"].value) if "axis" in node.attributes else 0
        axis = axis % len(_shape(node.inputs[0]))
        sizes = [edit.shapes.get(o, list(_shape(o)))[axis] for o in node.outputs]
        if len(node.inputs) > 1 and node.inputs[1] is not None:
            node.replace_input_with(1, new_initializer(model, f"{node.name or 'split'}_heads",
                                                       np.array(sizes, np.int64)))
    for src, keep in edit.row_keep.values():
        view = src.view
        matrix = view.matrix()[keep]
        view.node.replace_input_with(view.weight_index, new_initializer(
            model, f"{view.weight.name}_heads", np.ascontiguousarray(matrix if view.out_axis == 0 else matrix.T)))
        if src.bias_add is not None:
            bias = constant_array(src.bias_add.inputs[1])[keep]
            src.bias_add.replace_input_with(1, new_initializer(model, f"{src.bias_add.inputs[1].name}_heads", bias))
        elif view.bias is not None:
            bias = view.bias_array()[keep]
            view.node.replace_input_with(2, new_initializer(model, f"{view.bias.name}_heads", bias))
    out = att.out_view
    matrix = out.matrix()[:, edit.col_keep]
    out.node.replace_input_with(out.weight_index, new_initializer(
        model, f"{out.weight.name}_heads", np.ascontiguousarray(matrix if out.out_axis == 0 else matrix.T)))
    for value, shape in edit.shapes.items():
        value.shape = ir.Shape(shape)


def shrink_heads(model: ir.Model, report: PassReport) -> int:
    """Find attention cores, remove their dead heads, report; returns the number of heads removed."""
    attentions, skipped = find(model)
    for name, reason in skipped:
        report.note("heads.not-attention", reason, name)
    planned = []
    for att in attentions:
        dead, notes = dead_heads(att)
        for note in notes:
            report.note("heads.kept", note, att.name)
        if not dead:
            continue
        if len(dead) == att.heads:
            dead = dead[1:]  # never remove every head: shapes would be empty
        shared = [s.view.name for s in att.sources.values()
                  if any(u is not s.view.node for u, _ in s.view.weight.uses())] + \
            ([att.out_view.name] if any(u is not att.out_view.node for u, _ in att.out_view.weight.uses()) else [])
        if shared:
            report.note("heads.kept", f"heads {dead} are dead but the weight of '{shared[0]}' is shared", att.name)
            continue
        try:
            planned.append((att, dead, plan(att, dead)))
        except NotAttention as exc:
            report.note("heads.kept", f"heads {dead} are dead but cannot be removed: {exc}", att.name)
    for att, dead, edit in planned:  # every plan is made before any model change
        apply(model, att, edit)
        report.changed("heads", f"removed {len(dead)} of {att.heads} heads ({', '.join(map(str, dead))}): zero "
                       "value rows or zero output-projection columns (exact)", att.name)
    return sum(len(d) for _, d, _ in planned)
