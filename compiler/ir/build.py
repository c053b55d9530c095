"""Quantised matrix graph -> integer IR (:class:`compiler.ir.nodes.IntGraph`)."""

from __future__ import annotations

import numpy as np

from compiler.graph import GemmNode, MatrixGraph
from compiler.ir.nodes import GemmPass, IntGraph, IntNode, Operand
from compiler.quant.quantize import NodeQuant, QuantizationError, QuantParams
from compiler.quant.wide import split_int16

__all__ = ["build_ir"]


def _const_planes(value, name: str, split: bool) -> dict[str, Operand]:
    v = np.asarray(value.numpy() if hasattr(value, "numpy") else value, dtype=np.int64)
    if not split:
        return {"int8": Operand(const=v, const_name=name)}
    hi, lo = split_int16(v)
    return {"hi": Operand(const=hi, plane="hi", const_name=name),
            "lo": Operand(const=lo, plane="lo", const_name=name)}


def _planes(graph: MatrixGraph, node: GemmNode, ref, value, side: str, split: str | None,
            qp: QuantParams, index: int) -> dict[str, Operand]:
    wide_side = split in (side, "ab", "hh")
    if value is not None:
        return _const_planes(value, f"{node.name}.t{index}.{side}", wide_side)
    bits = qp.bits.get(ref.source, 8)
    if bits != 8 and not wide_side:
        raise QuantizationError(
            f"node {node.name} ({node.module}, {node.aten}): operand {ref.source} is int{bits}; "
            "GEMM operands must be int8 or 16-bit operands split into int8 halves")
    if not wide_side:
        return {"int8": Operand(ref=ref)}
    return {"hi": Operand(ref=ref, plane="hi"), "lo": Operand(ref=ref, plane="lo")}


def _node(graph: MatrixGraph, node: GemmNode, nq: NodeQuant, qp: QuantParams) -> IntNode:
    passes: list[GemmPass] = []
    for i, (t, tq) in enumerate(zip(node.terms, nq.terms, strict=True)):
        a = _planes(graph, node, t.a, tq.a_int, "a", tq.split, qp, i)
        b = _planes(graph, node, t.b, tq.b_int, "b", tq.split, qp, i)
        if tq.split is None:
            passes.append(GemmPass(a["int8"], b["int8"], "pre" if tq.pre_shift else "post"))
        elif tq.split == "hh":
            passes.append(GemmPass(a["hi"], b["hi"], "pre" if tq.pre_shift else "post"))
        elif tq.split == "ab":
            passes += [GemmPass(a["hi"], b["hi"], "pre"), GemmPass(a["hi"], b["lo"], "post"),
                       GemmPass(a["lo"], b["hi"], "post")]
        elif tq.split == "a":
            passes += [GemmPass(a["hi"], b["int8"], "pre"), GemmPass(a["lo"], b["int8"], "post")]
        elif tq.split == "b":
            passes += [GemmPass(a["int8"], b["hi"], "pre"), GemmPass(a["int8"], b["lo"], "post")]
        else:
            raise QuantizationError(f"node {node.name}: unknown split {tq.split!r}")
    bias = None if nq.bias_int is None else np.asarray(nq.bias_int.numpy(), dtype=np.int64)
    mult = None if nq.multiplier is None else np.asarray(nq.multiplier, dtype=np.int64)
    return IntNode(
        name=node.name, module=node.module, aten=node.aten, shape=tuple(node.shape),
        passes=passes, bias=bias, multiplier=mult, shift=np.asarray(nq.shift, dtype=np.int64),
        row_scale=node.epilogue.row_scale, table=nq.table, out_bits=nq.out_bits,
        split_out=nq.split_out)


def build_ir(graph: MatrixGraph, qp: QuantParams) -> IntGraph:
    """The integer IR of ``graph`` quantised by ``qp``.

    Raises
    ------
    compiler.quant.quantize.QuantizationError
        If an operand is wider than int8 and not a split 16-bit operand.
    """
    nodes = [_node(graph, n, qp.nodes[n.name], qp) for n in graph.nodes]
    entering = {name: qp.scales[name] for name in
                [i.name for i in graph.inputs] + [h.name for h in graph.host_ops]
                if name in qp.scales}
    return IntGraph(nodes=nodes, inputs=entering, scales=dict(qp.scales), bits=dict(qp.bits),
                    outputs=list(graph.outputs), wide=list(qp.wide))
