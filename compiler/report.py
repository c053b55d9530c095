"""Conversion report: how far each GEMM node and each PWL function is from the float network.

:func:`build_report` runs the graph three ways on the same inputs (``float`` = the original
network's arithmetic, ``float-pwl``, ``int``) and compares every node's output with the float one:
max/mean absolute error and cosine similarity (over all of the node's values). PWL errors come
from each fit's own dense evaluation (:meth:`compiler.pwl.PwlFit.errors`): ``fixed`` is the
hardware PWL at the epilogue's internal precision, ``output`` after the final rounding. ``wide``
lists the 16-bit operand tensors and their extra work (:func:`compiler.wide.wide_cost`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import torch

from compiler.wide import wide_cost

__all__ = ["ConversionReport", "FunctionError", "NodeError", "build_report", "compare"]


@dataclass
class NodeError:
    """Error of one node's output against the float network."""

    name: str
    module: str
    aten: str
    function: str
    shape: tuple[int, ...]
    out_bits: int
    terms: int
    pwl_max: float
    pwl_cos: float
    int_max: float
    int_mean: float
    int_cos: float


@dataclass
class FunctionError:
    """Error of one fitted PWL table over its calibrated range."""

    function: str
    nodes: list[str]
    lo: float
    hi: float
    segments: int
    float_max: float
    fixed_max: float
    fixed_mean: float
    output_max: float
    output_mean: float
    out_lsb: float


@dataclass
class ConversionReport:
    """Per-node and per-function errors plus what was folded or pre-processed."""

    nodes: list[NodeError] = field(default_factory=list)
    functions: list[FunctionError] = field(default_factory=list)
    folded: list[str] = field(default_factory=list)
    host_ops: list[str] = field(default_factory=list)
    capture: str = ""
    timings: dict = field(default_factory=dict)
    output_cosine: float = 1.0
    wide: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        import dataclasses

        return dataclasses.asdict(self)

    def render(self, width: int = 160) -> str:
        """The report as text tables (rendered with :mod:`rich`)."""
        from rich.console import Console
        from rich.table import Table

        buf = io.StringIO()
        con = Console(file=buf, width=width, force_terminal=False, color_system=None)
        con.print(f"capture: {self.capture}")
        t = Table(title="GEMM nodes: output error vs float (int = integer-exact reference)")
        for col in ("node", "module", "aten", "fn", "shape", "bits", "terms", "pwl max",
                    "pwl cos", "int max", "int mean", "int cos"):
            t.add_column(col, overflow="fold")
        for n in self.nodes:
            t.add_row(n.name, n.module, n.aten.replace("aten.", "").replace(".default", ""),
                      n.function, "x".join(map(str, n.shape)), str(n.out_bits), str(n.terms),
                      f"{n.pwl_max:.2e}", f"{n.pwl_cos:.5f}", f"{n.int_max:.2e}",
                      f"{n.int_mean:.2e}", f"{n.int_cos:.5f}")
        con.print(t)
        if self.functions:
            f = Table(title="PWL functions (errors over the calibrated range; output = after "
                            "rounding to the output format)")
            for col in ("function", "nodes", "range", "segs", "float max", "fixed max",
                        "fixed mean", "output max", "output mean", "out lsb"):
                f.add_column(col, overflow="fold")
            for e in self.functions:
                f.add_row(e.function, ", ".join(e.nodes), f"[{e.lo:.3g}, {e.hi:.3g}]",
                          str(e.segments), f"{e.float_max:.2e}", f"{e.fixed_max:.2e}",
                          f"{e.fixed_mean:.2e}", f"{e.output_max:.2e}", f"{e.output_mean:.2e}",
                          f"{e.out_lsb:.2e}")
            con.print(f)
        if self.wide:
            w = Table(title="16-bit operand tensors (256 hi + lo, two accumulating int8 GEMMs): "
                            "extra work per sample")
            for col in ("tensor", "module", "shape", "consumer GEMM passes", "consumer MACs",
                        "split GEMM passes", "split MACs", "epilogue passes"):
                w.add_column(col, overflow="fold")
            for r in self.wide:
                w.add_row(r["tensor"], r["module"], "x".join(map(str, r["shape"])),
                          str(r["consumer_passes"]), str(r["consumer_macs"]),
                          str(r["split_passes"]), str(r["split_macs"]),
                          str(r["epilogue_passes"]))
            con.print(w)
        else:
            con.print("16-bit operand tensors: none (every GEMM operand is int8)")
        con.print("folded at conversion time: " + ("; ".join(self.folded) or "nothing"))
        con.print("host pre-processing: " + ("; ".join(self.host_ops) or "none"))
        return buf.getvalue()


def compare(ref: torch.Tensor, got: torch.Tensor) -> tuple[float, float, float]:
    """``(max abs, mean abs, cosine)`` of ``got`` against ``ref`` (flattened, float64)."""
    r = ref.detach().double().reshape(-1)
    g = got.detach().double().reshape(-1)
    d = (r - g).abs()
    den = float(r.norm() * g.norm())
    cos = float(r @ g) / den if den > 0 else float(torch.equal(r, g))
    return float(d.max()) if d.numel() else 0.0, float(d.mean()) if d.numel() else 0.0, cos


def function_errors(graph) -> list[FunctionError]:
    """Errors of every distinct PWL fit in ``graph`` (fits shared by nodes are listed once)."""
    out: dict[int, FunctionError] = {}
    for node in graph.nodes:
        fit = node.epilogue.fit
        if fit is None:
            continue
        if id(fit) in out:
            out[id(fit)].nodes.append(node.name)
            continue
        e = fit.errors()
        out[id(fit)] = FunctionError(
            function=fit.name, nodes=[node.name], lo=fit.lo, hi=fit.hi, segments=fit.segments,
            float_max=e["float"]["max_abs"], fixed_max=e["fixed"]["max_abs"],
            fixed_mean=e["fixed"]["mean_abs"], output_max=e["output"]["max_abs"],
            output_mean=e["output"]["mean_abs"], out_lsb=e["out_lsb"])
    return list(out.values())


def build_report(cm, inputs: tuple | None = None) -> ConversionReport:
    """Build the :class:`ConversionReport` of a converted model on ``inputs`` (default: the
    example inputs)."""
    inputs = cm.example_inputs if inputs is None else tuple(inputs)
    samples, _ = cm.to_samples(inputs)
    with torch.no_grad():
        fo, fv = cm.run_samples(samples, "float", keep=True)
        _, pv = cm.run_samples(samples, "float-pwl", keep=True)
        io_, iv = cm.run_samples(samples, "int", keep=True)
    rep = ConversionReport(folded=list(cm.graph.folded), capture=cm.graph.capture_method
                           + (f" ({cm.capture_note})" if cm.capture_note else ""),
                           timings=dict(cm.timings))
    rep.host_ops = [f"{h.name} = {h.description} ({h.module or '<top>'})"
                    for h in cm.graph.host_ops]
    for node in cm.graph.nodes:
        ref = fv[node.name]
        p = compare(ref, pv[node.name])
        i = compare(ref, iv[node.name].double() * cm.quant.scales[node.name])
        rep.nodes.append(NodeError(
            name=node.name, module=node.module, aten=node.aten,
            function=node.epilogue.function or "id", shape=tuple(node.shape),
            out_bits=node.epilogue.out_bits, terms=len(node.terms),
            pwl_max=p[0], pwl_cos=p[2], int_max=i[0], int_mean=i[1], int_cos=i[2]))
    rep.functions = function_errors(cm.graph)
    rep.wide = wide_cost(cm.graph, cm.quant.wide)
    rep.output_cosine = min(compare(f, o)[2] for f, o in zip(fo, io_, strict=True))
    return rep
