"""The integer IR run with integers only (``compiler.execute``'s ``int`` mode)."""

from __future__ import annotations

import numpy as np
import torch

from compiler.graph import TensorRef
from compiler.ir.nodes import IntGraph, IntNode, Operand
from compiler.quant.quantize import QuantizationError
from compiler.quant.wide import join_int16, split_int16, split_saturating
from hw.numeric import PwlTable, epilogue, int_range, pwl_apply, requantize

__all__ = ["interpret", "interpret_node", "view"]

_ACC_LO, _ACC_HI = int_range(32)
_IDENTITY = PwlTable.identity()


def view(ref: TensorRef, t: torch.Tensor) -> torch.Tensor:
    """``t`` (sample-stacked values of ``ref.source``) seen through ``ref``'s views."""
    nd = len(ref.source_shape)
    for v in ref.views:
        nd_before = t.ndim
        t = v.apply(t, nd)
        nd = nd + (t.ndim - nd_before)
    return t


def _operand(op: Operand, vals: dict) -> torch.Tensor:
    if op.const is not None:
        return torch.from_numpy(op.const)
    v = view(op.ref, vals[op.ref.source])
    if v.dtype != torch.int64:
        raise QuantizationError(f"operand {op.ref.source} is not integer")
    if op.plane == "int8":
        return v
    hi, lo = split_int16(v.numpy())
    return torch.from_numpy(hi if op.plane == "hi" else lo)


def interpret_node(node: IntNode, vals: dict) -> torch.Tensor:
    """One node's output (int64 tensor with the sample dim) from the values it reads."""
    acc = None
    pre = None
    for p in node.passes:
        prod = torch.matmul(_operand(p.a, vals), _operand(p.b, vals))
        if p.stage == "pre":
            pre = prod if pre is None else pre + prod
        else:
            acc = prod if acc is None else acc + prod
    if pre is not None:
        if int(pre.max()) * 256 > _ACC_HI or int(pre.min()) * 256 < _ACC_LO:
            raise QuantizationError(
                f"{node.what}: int32 accumulator overflow in the x256 epilogue of a 16-bit "
                f"operand (|hi-stage sum| {int(pre.abs().max())} > {_ACC_HI // 256})")
        shifted = torch.from_numpy(epilogue(pre.numpy(), 256, 0, _IDENTITY, 32))
        acc = shifted if acc is None else shifted + acc
    if node.bias is not None:
        acc = acc + torch.from_numpy(node.bias)
    if int(acc.max()) > _ACC_HI or int(acc.min()) < _ACC_LO:
        raise QuantizationError(f"node {node.name} ({node.module}): int32 accumulator overflow")
    acc_np = acc.numpy()
    if node.row_scale is None:
        x = requantize(acc_np, node.multiplier, node.shift)
    else:
        r = view(node.row_scale, vals[node.row_scale.source]).numpy()
        x = requantize(acc_np, r, node.shift)
    if node.split_out:
        y = join_int16(*split_saturating(pwl_apply(x, node.table, 32)))
    else:
        y = pwl_apply(x, node.table, node.out_bits)
    return torch.from_numpy(np.ascontiguousarray(y))


def interpret(ir: IntGraph, vals: dict) -> dict:
    """Run every node of ``ir``; ``vals`` holds the int64 inputs (sample dim first) and gets
    every node output added. Returns ``vals``."""
    for node in ir.nodes:
        vals[node.name] = interpret_node(node, vals)
    return vals
