"""Executors of a matrix graph: the same graph run four ways.

=============  ==============================================================================
mode           what it computes
=============  ==============================================================================
``float``      float32, every function exact (PyTorch): equals the original network; used for
               calibration and as the per-node error reference.
``float-pwl``  float32, every function replaced by its fitted float PWL.
``fake-quant`` float simulation of the integer path: int8 (16-bit) operands and outputs, per-column
               int8 constants, int32-grid accumulator, requantisation to the PWL input grid, the
               float PWL, output rounding and saturation. Rounding uses straight-through
               estimators, so it is differentiable (fine-tuning trains through it).
``int``        the integer-exact reference: the integer IR (:mod:`compiler.ir`) interpreted, the
               same passes the back end lowers to instructions: int8 operands, int64 accumulation
               checked to stay in int32, and the epilogue only through :mod:`hw.numeric`
               (``requantize``, ``pwl_apply``). No float touches the data path; host pre-processing
               and the input quantisation run before it and dequantisation of the outputs after it.
               A 16-bit operand (:mod:`compiler.quant.wide`) is split into int8 ``hi``/``lo``
               halves: ``hi`` GEMMs (and the node's other terms) accumulate first, an ``x256``
               epilogue (``hw.numeric.epilogue``, checked not to saturate) scales them in place,
               then the ``lo`` GEMMs and the bias accumulate; its producer writes the int32 epilogue
               result and splits it with saturating epilogues. A term with two 16-bit operands runs
               ``hi·hi`` before and ``hi·lo + lo·hi`` after that epilogue. Never an int16 matmul.
=============  ==============================================================================

Every executor takes inputs with one extra leading *sample* dimension (a stack of inputs shaped
like the example inputs) and runs all samples at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from compiler.graph import GemmNode, MatrixGraph, TensorRef
from compiler.ir import build_ir, interpret
from compiler.quant.quantize import NodeQuant, QuantParams
from compiler.quant.wide import (
    HI_STEP,
    WIDE_MAX,
    WIDE_MIN,
)
from hw.numeric import int_range

__all__ = ["MODES", "Stats", "exact_function", "run"]

MODES = ("float", "float-pwl", "fake-quant", "int")
_SAMPLES_PER_TENSOR = 1 << 16


def exact_function(name: str | None, x: torch.Tensor) -> torch.Tensor:
    """The exact (PyTorch) element-wise function ``name`` (None = identity)."""
    if name is None:
        return x
    if name == "relu":
        return torch.relu(x)
    if name == "relu6":
        return torch.clamp(x, 0.0, 6.0)
    from compiler.pwl import get_function

    return get_function(name).torch(x)


@dataclass
class Stats:
    """Calibration statistics of every data tensor.

    ``amax``: max |value|; ``samples``: a random subsample of values (for MSE-optimal scales);
    ``fn_range``: (min, max) of the input of each node's PWL function.
    """

    amax: dict[str, float] = field(default_factory=dict)
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    fn_range: dict[str, tuple[float, float]] = field(default_factory=dict)
    _parts: dict[str, list[np.ndarray]] = field(default_factory=dict)
    _rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def observe(self, name: str, t: torch.Tensor) -> None:
        """Record the values of tensor ``name``."""
        v = t.detach().float().reshape(-1).numpy()
        if v.size == 0:
            return
        self.amax[name] = max(self.amax.get(name, 0.0), float(np.abs(v).max()))
        if v.size > _SAMPLES_PER_TENSOR // 4:
            v = self._rng.choice(v, _SAMPLES_PER_TENSOR // 4, replace=False)
        self._parts.setdefault(name, []).append(v.copy())

    def observe_fn(self, name: str, x: torch.Tensor) -> None:
        """Record the range of the function input of node ``name``."""
        lo, hi = float(x.min()), float(x.max())
        if name in self.fn_range:
            plo, phi = self.fn_range[name]
            lo, hi = min(lo, plo), max(hi, phi)
        self.fn_range[name] = (lo, hi)

    def finish(self) -> Stats:
        """Merge the recorded parts into ``samples`` (bounded size)."""
        for name, parts in self._parts.items():
            v = np.concatenate(parts)
            if v.size > _SAMPLES_PER_TENSOR:
                v = self._rng.choice(v, _SAMPLES_PER_TENSOR, replace=False)
            self.samples[name] = v
        self._parts = {}
        return self


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def _fq(x: torch.Tensor, scale, bits: int, *, split: bool = False) -> torch.Tensor:
    lo, hi = (WIDE_MIN, WIDE_MAX) if split else int_range(bits)
    s = torch.as_tensor(np.asarray(scale, dtype=np.float64), dtype=x.dtype)
    return torch.clamp(_round_ste(x / s), lo, hi) * s


def _hi_half(x: torch.Tensor, scale: float) -> torch.Tensor:
    """A 16-bit tensor on the grid of its ``hi`` halves (``round_shift(v, 8)``, half up), STE."""
    scale = torch.as_tensor(np.asarray(scale, dtype=np.float64), dtype=x.dtype)
    v = torch.round(x / scale).detach()
    hi = torch.floor((v + HI_STEP // 2) / HI_STEP)
    return x + (hi * HI_STEP * scale - x).detach()


def _get(graph: MatrixGraph, ref: TensorRef, vals: dict, consts: dict) -> torch.Tensor:
    if ref.source in consts:
        t = consts[ref.source]
        for v in ref.views:
            t = v.apply(t, t.ndim)
        return t
    t = vals[ref.source]
    nd = len(ref.source_shape)
    for v in ref.views:
        nd_before = t.ndim
        t = v.apply(t, nd)
        nd = nd + (t.ndim - nd_before)
    return t


def _run_host(graph: MatrixGraph, vals: dict) -> None:
    """Host pre-processing, per sample (ops see one sample's tensors, as when traced)."""
    for h in graph.host_ops:
        n = next(iter(vals.values())).shape[0]
        outs = []
        for s in range(n):
            def res(a, s=s):
                if isinstance(a, TensorRef):
                    return _get(graph, a, {k: v[s : s + 1] for k, v in vals.items()}, {})[0]
                if isinstance(a, (list, tuple)):
                    return type(a)(res(x) for x in a)
                return a

            outs.append(h.fn(*[res(a) for a in h.args],
                             **{k: res(v) for k, v in h.kwargs.items()}))
        vals[h.name] = torch.stack(outs)


def _float_node(graph, node: GemmNode, vals, consts, mode, qp: QuantParams | None,
                stats: Stats | None) -> torch.Tensor:
    nq: NodeQuant | None = qp.nodes[node.name] if qp is not None and mode == "fake-quant" else None
    acc = None
    for i, t in enumerate(node.terms):
        a = _get(graph, t.a, vals, consts)
        b = _get(graph, t.b, vals, consts)
        if nq is not None:
            tq = nq.terms[i]
            if tq.split == "hh":
                a, b = (_hi_half(v, qp.scales[t.a.source]) for v in (a, b))
            a_wide, b_wide = tq.split in ("a", "ab"), tq.split in ("b", "ab")
            if tq.a_scale is not None:  # a constant (a 16-bit one: "a", or "ab" with data b)
                a = _fq(a, tq.a_scale, 16 if a_wide else 8, split=a_wide)
            if tq.b_scale is not None:
                b = _fq(b, tq.b_scale, 16 if b_wide else 8, split=b_wide)
            sa = tq.a_scale if graph.is_const(t.a) else qp.scales.get(t.a.source)
            sb = tq.b_scale if graph.is_const(t.b) else qp.scales.get(t.b.source)
            # the integer path drops lo_a . lo_b (an operand left unquantised, as the
            # diagnosis does, has no halves)
            if tq.split == "ab" and sa is not None and sb is not None:
                ha, hb = _hi_half(a, sa), _hi_half(b, sb)
                acc_t = torch.matmul(ha, b) + torch.matmul(a - ha, hb)
                acc = acc_t if acc is None else acc + acc_t
                continue
        p = torch.matmul(a, b)
        acc = p if acc is None else acc + p
    if node.bias is not None:
        bias = consts[node.bias]
        if nq is not None:
            bias = _fq(bias, nq.acc_scale, 32)
        acc = acc + bias
    ep = node.epilogue
    x = acc
    if ep.col_scale is not None:
        cs = ep.col_scale if isinstance(ep.col_scale, torch.Tensor) else torch.tensor(
            float(ep.col_scale))
        x = x * cs.to(x.dtype)
    if ep.row_scale is not None:
        x = x * _get(graph, ep.row_scale, vals, consts)
    if nq is not None:
        x = _round_ste(x / nq.x_scale) * nq.x_scale
    if stats is not None and ep.function is not None:
        stats.observe_fn(node.name, x)
    if mode == "float" or ep.fit is None:
        y = exact_function(ep.function, x)
    else:
        y = ep.fit.eval_torch(x)
    if nq is not None:
        y = _fq(y, nq.out_scale, nq.out_bits, split=nq.split_out)
    return y


def _quantize_input(x: torch.Tensor, scale: float, bits: int = 8) -> torch.Tensor:
    """A float input on its integer grid: int8, or (``bits=16``) the split range of a 16-bit
    operand (:data:`compiler.quant.wide.WIDE_MIN` .. ``WIDE_MAX``)."""
    lo, hi = (WIDE_MIN, WIDE_MAX) if bits == 16 else int_range(8)
    return torch.clamp(torch.round(x.double() / scale), lo, hi).to(torch.int64)


def run(graph: MatrixGraph, inputs: list[torch.Tensor], mode: str, qp: QuantParams | None = None,
        *, stats: Stats | None = None, keep: bool = False, consts: dict | None = None):
    """Run ``graph`` on sample-stacked ``inputs`` (one tensor per graph input).

    Parameters
    ----------
    mode : str
        One of :data:`MODES`.
    qp : QuantParams
        Needed for ``fake-quant`` and ``int`` (and for the PWL fits of ``float-pwl``).
    stats : Stats, optional
        Calibration observer (``float`` mode): records every tensor.
    keep : bool
        Also return every tensor (float modes: real values; int: integers).
    consts : dict, optional
        Replacement constants (float tensors, e.g. trainable parameters in fine-tuning).

    Returns
    -------
    list of torch.Tensor, or (list, dict)
        Outputs in real units (int mode: dequantised int8/int32 outputs), with the sample dim.
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} unknown; choose one of {', '.join(MODES)}")
    if mode in ("fake-quant", "int") and qp is None:
        raise ValueError(f"mode {mode!r} needs quantisation parameters")
    consts = graph.constants if consts is None else consts
    raw: dict[str, torch.Tensor] = {}
    for gi, x in zip(graph.inputs, inputs, strict=True):
        raw[gi.name] = x
    _run_host(graph, raw)
    vals: dict[str, torch.Tensor] = {}
    for name, v in raw.items():
        if not v.dtype.is_floating_point:
            vals[name] = v
            continue
        if stats is not None:
            stats.observe(name, v)
        if mode == "int" and name in qp.scales:
            vals[name] = _quantize_input(v, qp.scales[name], qp.bits.get(name, 8))
        elif mode == "fake-quant" and name in qp.scales:
            wide = qp.bits.get(name, 8) == 16
            vals[name] = _fq(v.float(), qp.scales[name], 16 if wide else 8, split=wide)
        else:
            vals[name] = v.float()
    if mode == "int":
        interpret(build_ir(graph, qp), vals)
    for node in graph.nodes if mode != "int" else ():
        y = _float_node(graph, node, vals, consts, mode, qp, stats)
        if stats is not None:
            stats.observe(node.name, y)
        vals[node.name] = y
    outs = []
    for o in graph.outputs:
        v = _get(graph, o, vals, consts)
        if mode == "int":
            v = v.double() * qp.scales[o.source]
            v = v.float()
        outs.append(v)
    return (outs, vals) if keep else outs
