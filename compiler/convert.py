"""``convert()``: capture -> lower -> calibrate -> fit PWLs, quantise -> :class:`ConvertedModel`."""

from __future__ import annotations

import time
from collections.abc import Iterable

import torch
from torch import nn

from compiler.determinism import thread_independent
from compiler.execute import MODES, Stats, run
from compiler.frontend.capture import capture
from compiler.frontend.lowering import lower
from compiler.graph import ConvertError, MatrixGraph, UnsupportedShapeError
from compiler.quant.precision import (
    DEFAULT_BUDGET,
    WIDE_POLICIES,
    choose_wide,
    layernorm_tensors,
    resolve_wide,
    set_wide,
    transformer_tensors,
)
from compiler.quant.quantize import DEFAULT_SEGMENTS, QuantParams, check_segments, quantize_graph

__all__ = ["ConvertedModel", "convert"]

#: Samples per executor call (bounds memory; each call is vectorised over its samples).
CHUNK = 64


class ConvertedModel:
    """A network converted to a matrix graph, callable like the original.

    ``model(*inputs)`` runs the integer-exact reference (``mode="int"``); pass
    ``mode="float-pwl"``, ``"fake-quant"`` or ``"float"`` for the other executors. Inputs are shaped
    like the example inputs, or stack several such batches along dim 0 (any multiple of the example
    batch, or any batch size at all: the last chunk is zero-padded and trimmed; only for models
    whose samples are independent along dim 0, which is the usual batch semantics).

    Attributes
    ----------
    graph : MatrixGraph
    quant : QuantParams
    stats : Stats
        Calibration statistics.
    example_shapes : list of tuple
    segments : int or dict
    timings : dict
        Seconds spent in capture/lowering, calibration and quantisation (incl. PWL fits).
    wide_search : compiler.quant.precision.WideSearch or None
        What ``wide="auto"`` measured.
    finetune_history : dict or None
        Set by :func:`compiler.quant.finetune`: validation losses per epoch and the epoch kept.
    """

    def __init__(self, graph: MatrixGraph, quant: QuantParams, stats: Stats,
                 example_inputs: tuple, *, segments: int | dict, mode: str = "int",
                 timings: dict | None = None, float_model: nn.Module | None = None,
                 capture_note: str = "") -> None:
        self.graph = graph
        self.quant = quant
        self.stats = stats
        self.example_shapes = [tuple(x.shape) for x in example_inputs]
        self.example_dtypes = [x.dtype for x in example_inputs]
        self.segments = segments
        self.clipping = "mse"
        self.mode = mode
        self.timings = dict(timings or {})
        self.float_model = float_model
        self.capture_note = capture_note
        self.example_inputs = example_inputs
        #: :class:`compiler.quant.precision.WideSearch` of ``convert(..., wide="auto")``, else None.
        self.wide_search = None
        #: ``quantize_graph``'s cache for :attr:`stats` (re-quantising with other 16-bit tensors).
        self.fit_cache: dict = {}
        self.finetune_history: dict | None = None

    # ---- calling ------------------------------------------------------------------------

    def to_samples(self, inputs: tuple) -> tuple[list[torch.Tensor], int | None]:
        """Stack ``inputs`` into sample-major tensors; returns them and the original batch."""
        if len(inputs) != len(self.example_shapes):
            raise ConvertError(f"expected {len(self.example_shapes)} inputs, got {len(inputs)}")
        if all(tuple(x.shape) == s for x, s in zip(inputs, self.example_shapes, strict=True)):
            return [x.unsqueeze(0) for x in inputs], None
        batch = None
        for i, (x, s) in enumerate(zip(inputs, self.example_shapes, strict=True)):
            if x.ndim != len(s) or tuple(x.shape[1:]) != s[1:] or len(s) == 0:
                raise UnsupportedShapeError(
                    f"input {i} has shape {tuple(x.shape)}; the model was converted for "
                    f"{s} (only the batch dim 0 may change)"
                )
            if batch is None:
                batch = x.shape[0]
            elif x.shape[0] != batch:
                raise UnsupportedShapeError(f"inputs disagree on the batch size: {batch} vs "
                                            f"{x.shape[0]}")
        b0 = self.example_shapes[0][0]
        k = -(-batch // b0)
        out = []
        for x, s in zip(inputs, self.example_shapes, strict=True):
            pad = k * b0 - batch
            if pad:
                x = torch.cat([x, x[:1].expand(pad, *x.shape[1:])], dim=0)
            out.append(x.reshape(k, *s))
        return out, batch

    def run_samples(self, samples: list[torch.Tensor], mode: str, *, keep: bool = False,
                    consts: dict | None = None, stats: Stats | None = None):
        """Run the executor over sample-stacked inputs in chunks of :data:`CHUNK` samples."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} unknown; choose one of {', '.join(MODES)}")
        n = samples[0].shape[0]
        outs: list[list[torch.Tensor]] = []
        kept: list[dict] = []
        for i in range(0, n, CHUNK):
            chunk = [s[i : i + CHUNK] for s in samples]
            r = run(self.graph, chunk, mode, self.quant, keep=keep, consts=consts, stats=stats)
            if keep:
                outs.append(r[0])
                kept.append(r[1])
            else:
                outs.append(r)
        merged = [torch.cat([o[j] for o in outs]) for j in range(len(outs[0]))]
        if keep:
            keys = kept[0].keys()
            return merged, {k: torch.cat([d[k] for d in kept]) for k in keys}
        return merged

    def __call__(self, *inputs: torch.Tensor, mode: str | None = None):
        mode = mode or self.mode
        samples, batch = self.to_samples(tuple(inputs))
        with torch.set_grad_enabled(mode == "fake-quant" and torch.is_grad_enabled()):
            outs = self.run_samples(samples, mode)
        outs = [self._unstack(o, batch) for o in outs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _unstack(self, o: torch.Tensor, batch: int | None) -> torch.Tensor:
        if batch is None:
            return o[0]
        b0 = self.example_shapes[0][0]
        if o.ndim < 2 or o.shape[1] != b0:
            raise UnsupportedShapeError(
                f"output of shape {tuple(o.shape[1:])} has no batch dim of size {b0}; call the "
                "model with inputs shaped like the example inputs"
            )
        return o.reshape(-1, *o.shape[2:])[:batch]

    # ---- information --------------------------------------------------------------------

    def report(self, inputs: tuple | None = None):
        """Per-node and per-function errors (:class:`compiler.report.ConversionReport`)."""
        from compiler.report import build_report

        return build_report(self, inputs)

    def node_kinds(self) -> set[str]:
        """Class names of the graph's nodes (always ``{"GemmNode"}``)."""
        return {type(n).__name__ for n in self.graph.nodes}

    def __repr__(self) -> str:
        return (f"ConvertedModel({len(self.graph.nodes)} GEMM nodes, mode={self.mode!r}, "
                f"segments={self.segments}, capture={self.graph.capture_method!r})")


def _calibrate(cm: ConvertedModel, calibration: Iterable) -> Stats:
    stats = Stats()
    n = 0
    with torch.no_grad():
        for item in calibration:
            item = tuple(item) if isinstance(item, (tuple, list)) else (item,)
            samples, _ = cm.to_samples(item)
            cm.run_samples(samples, "float", stats=stats)
            n += 1
    if n == 0:
        raise ConvertError("the calibration set is empty")
    return stats.finish()


@thread_independent
def convert(model: nn.Module, example_inputs: tuple, calibration: Iterable, *,
            segments: int | dict[str, int] | None = None, host_inputs: set[int] | None = None,
            mode: str = "int",
            clipping: str = "mse", check_tolerance: float = 1e-3,
            wide: str | Iterable[str] = "auto", wide_budget: float | None = None,
            wide_samples: int = 4, wide_max: int | None = None) -> ConvertedModel:
    """Convert ``model`` into GEMMs + PWL epilogues, int8, calibrated on ``calibration``.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode.
    example_inputs : tuple of torch.Tensor
        Inputs the graph is captured with (their shapes are the graph's shapes).
    calibration : iterable of tuple of torch.Tensor
        Input tuples (each shaped like ``example_inputs`` or a batch multiple of them).
    segments : int or dict
        PWL segment budget per function (1..64, the hardware's table size): one for every
        function, or a mapping function name -> budget with ``"*"`` for the rest (16 if absent).
        Default :data:`compiler.quant.quantize.DEFAULT_SEGMENTS`: 16, but 64 for ``exp``,
        ``reciprocal`` and ``rsqrt`` (softmax and LayerNorm, where 16 segments cost
        measurable transformer accuracy) and for functions whose output is 16 bits wide (key
        ``"16-bit"``).
    host_inputs : set of int, optional
        Positions of inputs that are host data (masks, ids): ops on them may run as host
        pre-processing (non-float inputs always are).
    mode : str
        Default executor of the result (``"int"``).
    clipping : str
        int8 activation scales: ``"mse"`` (MSE-optimal clipping) or ``"max"`` (no clipping).
    check_tolerance : float
        The lowered graph run in float must reproduce ``model(*example_inputs)`` within this
        relative max error, else :class:`ConvertError` (a lowering bug, never silent).
    wide : str or iterable of str
        Per-tensor precision (:mod:`compiler.quant.precision`, docs/compiler.md "Precision
        beyond int8"): ``"auto"`` (the default: the ``"transformer"`` tensors, then a measured
        search that adds the tensors whose int8 rounding costs the most at the output until
        the output error is within ``wide_budget``; a model already within it is unchanged),
        ``"transformer"`` (the residual stream around every LayerNorm, the FFN hidden layer,
        the sublayer outputs and embeddings feeding it, and the attention queries, keys,
        scores, exp and ``P·V`` outputs 16-bit; models without LayerNorm and softmax stay
        all-int8; no measurement), ``"layernorm"`` (the residual stream and FFN hidden layer
        only), ``"none"`` (every GEMM operand int8) or tensor names / fnmatch patterns (over
        node names and module paths) to hold at 16 bits (two accumulating int8 GEMMs each).
    wide_budget : float, optional
        ``"auto"``'s budget: mean per-row ``1 - cosine`` of the outputs against the float graph
        on the search samples (default :data:`compiler.quant.precision.DEFAULT_BUDGET`).
    wide_samples : int
        ``"auto"`` measures on the first this many calibration samples.
    wide_max : int, optional
        ``"auto"`` adds at most this many 16-bit tensors to the ``"transformer"`` ones
        (default: no limit).

    Returns
    -------
    ConvertedModel
        The same integers (scales, tables, outputs) whatever the thread count: it runs on one
        thread (:mod:`compiler.determinism`).
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} unknown; choose one of {', '.join(MODES)}")
    if wide_budget is not None and not wide_budget >= 0:
        raise ValueError(f"wide_budget must be >= 0, got {wide_budget}")
    if wide_max is not None and (isinstance(wide_max, bool) or not isinstance(wide_max, int)
                                 or wide_max < 0):
        raise ValueError(f"wide_max must be an int >= 0, got {wide_max!r}")
    if not isinstance(example_inputs, (tuple, list)):
        raise ConvertError(f"example_inputs must be a tuple of tensors, e.g. (x,); got a bare "
                           f"{type(example_inputs).__name__}")
    segments = dict(DEFAULT_SEGMENTS) if segments is None else segments
    check_segments(segments)
    t0 = time.perf_counter()
    captured = capture(model, tuple(example_inputs))
    graph = lower(captured, host_inputs=host_inputs, segments=segments)
    t1 = time.perf_counter()
    cm = ConvertedModel(graph, QuantParams(), Stats(), tuple(example_inputs), segments=segments,
                        mode=mode, float_model=model, capture_note=captured.note)
    cm.clipping = clipping
    with torch.no_grad():
        ref = model(*example_inputs)
        ref = list(ref) if isinstance(ref, (tuple, list)) else [ref]
        got = cm(*example_inputs, mode="float")
        got = list(got) if isinstance(got, tuple) else [got]
    for i, (r, g) in enumerate(zip(ref, got, strict=True)):
        err = float((r.float() - g).abs().max())
        tol = check_tolerance * max(float(r.abs().max()), 1.0)
        if err > tol:
            raise ConvertError(f"internal: the lowered graph's output {i} differs from the model "
                               f"by {err:.3g} (tolerance {tol:.3g})")
    calibration = list(calibration)
    stats = _calibrate(cm, calibration)
    t2 = time.perf_counter()
    cm.stats = stats
    if isinstance(wide, str) and wide not in WIDE_POLICIES:
        raise ValueError(f"wide={wide!r}: use one of {', '.join(WIDE_POLICIES)} or an iterable "
                         "of tensor names or patterns")
    if not isinstance(wide, str):
        set_wide(graph, resolve_wide(graph, wide))
    elif wide == "layernorm":
        set_wide(graph, layernorm_tensors(graph))
    elif wide in ("transformer", "auto"):
        set_wide(graph, transformer_tensors(graph))
    fit_cache: dict = {}
    cm.fit_cache = fit_cache
    cm.quant = quantize_graph(graph, stats, fit_cache=fit_cache, segments=segments,
                              clipping=clipping)
    t3 = time.perf_counter()
    cm.timings = {"capture+lower": t1 - t0, "calibrate": t2 - t1, "quantize+fit": t3 - t2}
    if wide == "auto":
        cm.wide_search = choose_wide(cm, _search_samples(cm, calibration, wide_samples),
                                     budget=DEFAULT_BUDGET if wide_budget is None
                                     else wide_budget, fit_cache=fit_cache,
                                     max_tensors=wide_max)
        cm.timings["precision search"] = time.perf_counter() - t3
    return cm


def _search_samples(cm: ConvertedModel, calibration: list, n: int) -> list[torch.Tensor]:
    """The first ``n`` sample stacks of the calibration set (at least one item)."""
    parts: list[list[torch.Tensor]] = []
    have = 0
    for item in calibration:
        item = tuple(item) if isinstance(item, (tuple, list)) else (item,)
        samples, _ = cm.to_samples(item)
        parts.append(samples)
        have += samples[0].shape[0]
        if have >= n:
            break
    return [torch.cat([p[i] for p in parts])[:max(n, 1)] for i in range(len(parts[0]))]
