"""Convert one architecture and measure it: does it convert, how close is int mode to float, and
what blocks it if not.

The int-vs-float figure is the cosine similarity of the converted model's integer-exact output
(``mode="int"``) to the float model's on held-out random inputs:

- ``"logits"`` cases: per sample, over the flattened output; the worst sample is reported;
- ``"tokens"`` cases: per token over the hidden size, unpadded tokens only; the mean is reported
  (``compiler.report.token_cosines``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from compiler.convert import convert
from compiler.coverage.architectures import ARCHITECTURES, Case
from compiler.graph import ConvertError
from compiler.report import token_cosines
from hw.errors import NmxError

__all__ = ["SENSITIVITY_NOISE", "Row", "float_sensitivity", "int_cosine", "measure",
           "requantised"]


@dataclass
class Row:
    """One line of the coverage table."""

    name: str
    family: str
    converts: bool
    cosine: float | None
    metric: str
    blocking: str
    seconds: float
    nodes: int
    description: str
    sensitivity: float | None = None
    wide: int = 0
    int8_cosine: float | None = None
    wide_weights: int = 0

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)


def int_cosine(cm, case: Case) -> float:
    """The int-vs-float cosine of a converted case (see the module docstring)."""
    values = []
    with torch.no_grad():
        for inputs in case.evaluation:
            ref = case.model(*inputs).float()
            got = cm(*inputs, mode="int").float()
            if case.kind == "tokens":
                mask = inputs[1].bool()
                values.append(token_cosines(got, ref, mask).mean())
            else:
                r, g = ref.reshape(ref.shape[0], -1), got.reshape(got.shape[0], -1)
                values.append(torch.nn.functional.cosine_similarity(
                    g.double(), r.double(), dim=-1).min())
    t = torch.stack(values)
    return float(t.mean() if case.kind == "tokens" else t.min())


#: Input noise of :func:`float_sensitivity`, relative to the input's standard deviation: about
#: one int8 step of a tensor quantised over +-4 standard deviations.
SENSITIVITY_NOISE = 4.0 / 127


def float_sensitivity(case: Case, seed: int = 0) -> float:
    """The float model's own cosine (same statistic as :func:`int_cosine`) when Gaussian noise
    of one int8 step (:data:`SENSITIVITY_NOISE`) is added to its feature inputs: how much a
    random-weight network amplifies a quantisation-sized perturbation, before any conversion."""
    gen = torch.Generator().manual_seed(seed)
    values = []
    with torch.no_grad():
        for inputs in case.evaluation:
            x = inputs[0]
            if not x.dtype.is_floating_point:
                return float("nan")
            noisy = (x + SENSITIVITY_NOISE * x.std() * torch.randn(x.shape, generator=gen),
                     *inputs[1:])
            ref, got = case.model(*inputs).float(), case.model(*noisy).float()
            r, g = ref.reshape(ref.shape[0], -1), got.reshape(got.shape[0], -1)
            values.append(torch.nn.functional.cosine_similarity(g.double(), r.double(),
                                                                dim=-1).min())
    return float(torch.stack(values).min())


def _blocking(err: Exception) -> str:
    problems = getattr(err, "problems", None)
    if problems:
        direct = [p for p in problems if not p.downstream] or problems
        seen: dict[str, int] = {}
        for p in direct:
            seen[p.op] = seen.get(p.op, 0) + 1
        return ", ".join(f"{op} x{n}" for op, n in seen.items())
    first = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {first[:160]}"


def measure(name: str, size: str = "table", seed: int = 0) -> Row:
    """Build architecture ``name`` at ``size``, convert it and measure it."""
    arch = ARCHITECTURES[name]
    case = arch.build(size, seed)
    t0 = time.perf_counter()
    try:
        cm = convert(case.model, case.example_inputs, case.calibration)
    except (ConvertError, NmxError) as e:
        return Row(name, arch.family, False, None, "", _blocking(e), time.perf_counter() - t0, 0,
                   case.description)
    seconds = time.perf_counter() - t0
    metric = "token cosine (mean)" if case.kind == "tokens" else "logit cosine (worst)"
    sens = float_sensitivity(case) if case.kind == "logits" else None
    from compiler.quant.precision import wide_choices

    wide = wide_choices(cm.graph)
    int8 = None
    if wide:  # the same conversion with every GEMM operand int8, for comparison
        int8 = int_cosine(requantised(cm, []), case)
        requantised(cm, wide)
    return Row(name, arch.family, True, int_cosine(cm, case), metric, "", seconds,
               len(cm.graph.nodes), case.description, sens, len(cm.quant.wide), int8,
               len(cm.quant.wide_weights))


def requantised(cm, wide: list[str]):
    """``cm`` re-quantised with exactly the tensors (and ``"<node>:weights"``) ``wide`` held at
    16 bits (same calibration statistics); returns ``cm``."""
    from compiler.quant.precision import set_wide, wide_choices
    from compiler.quant.quantize import quantize_graph

    set_wide(cm.graph, wide_choices(cm.graph), wide=False)
    set_wide(cm.graph, wide)
    cm.quant = quantize_graph(cm.graph, cm.stats, segments=cm.segments, clipping=cm.clipping,
                              fit_cache=cm.fit_cache)
    return cm
