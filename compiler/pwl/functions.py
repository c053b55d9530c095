"""The element-wise functions the compiler approximates with piecewise-linear (PWL) segments.

Each :class:`PwlFunction` bundles a float64 NumPy implementation (the reference the fit minimises
against), the PyTorch implementation (what the float network computes), its natural domain, a
default calibrated range, the straight lines it follows beyond that range (its asymptotes, used for
the end segments so that out-of-range inputs stay sensible) and, for functions that are themselves
piecewise linear, their kinks (added to the fitting grid so the fit can be exact).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["FUNCTIONS", "PARAMETERISED", "Line", "PwlFunction", "function_name", "parameterised"]

#: A straight line ``y = slope * x + intercept``, as ``(slope, intercept)``.
Line = tuple[float, float]


@dataclass(frozen=True)
class PwlFunction:
    """One element-wise function that the epilogue approximates by PWL segments.

    Parameters
    ----------
    name : str
        Key in :data:`FUNCTIONS` (the name ``nmx pwl`` and the compiler use).
    numpy_fn : callable
        float64 array -> float64 array; the reference the fit is measured against.
    torch_fn : callable
        Tensor -> Tensor; the same function in PyTorch.
    default_range : (float, float)
        The calibrated input range used when none is given, and why it is that range in
        ``range_note``.
    domain : (float, float)
        Natural domain; ``domain_open`` says whether its lower end is excluded (``log`` at 0).
    left, right : Line or None
        The line the function approaches for ``x -> -inf`` / ``x -> +inf`` (exactly or
        asymptotically). When set, the end segment on that side *is* this line (and extends past
        the fitting range); when None, the end segment extrapolates its fitted line.
    kinks : tuple of float
        Points where an exactly piecewise-linear part changes slope; they join the fitting grid.
    exact : bool
        True if the function is piecewise linear everywhere (the fit can be exact).
    """

    name: str
    numpy_fn: Callable[[np.ndarray], np.ndarray]
    torch_fn: Callable[[torch.Tensor], torch.Tensor]
    default_range: tuple[float, float]
    range_note: str
    domain: tuple[float, float] = (-math.inf, math.inf)
    domain_open: bool = False
    left: Line | None = None
    right: Line | None = None
    kinks: tuple[float, ...] = ()
    exact: bool = False

    def __call__(self, x) -> np.ndarray:
        """Evaluate the reference (float64 NumPy) implementation."""
        return self.numpy_fn(np.asarray(x, dtype=np.float64))

    def torch(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate the PyTorch implementation."""
        return self.torch_fn(x)

    def in_domain(self, lo: float, hi: float) -> bool:
        """Whether the closed interval ``[lo, hi]`` lies inside the natural domain."""
        dlo, dhi = self.domain
        low_ok = lo > dlo if self.domain_open else lo >= dlo
        return low_ok and hi <= dhi


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free form of 1 / (1 + exp(-x))


#: ``erf`` from the C library (NumPy has none; torch's is slow on busy machines for small arrays).
_erf_scalar = np.vectorize(math.erf, otypes=[np.float64])


def _erf(x: np.ndarray) -> np.ndarray:
    return _erf_scalar(x) if x.size else np.zeros_like(x)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 6.0)


def _elu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


def _positive_only(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    def numpy_fn(x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return fn(x)

    return numpy_fn


_SYMMETRIC = "symmetric range where the function has reached its asymptotes to within ~1e-3"
_ZERO_AND_IDENTITY = ((0.0, 0.0), (1.0, 0.0))

FUNCTIONS: dict[str, PwlFunction] = {
    f.name: f
    for f in (
        PwlFunction(
            "gelu", _gelu, F.gelu, (-8.0, 8.0),
            "transformer FFN pre-activations; |gelu(x) - relu(x)| < 5e-15 beyond |x| = 8",
            left=(0.0, 0.0), right=(1.0, 0.0),
        ),
        PwlFunction(
            "gelu_tanh", _gelu_tanh, lambda x: F.gelu(x, approximate="tanh"), (-8.0, 8.0),
            "as gelu", left=(0.0, 0.0), right=(1.0, 0.0),
        ),
        PwlFunction(
            "silu", lambda x: x * _sigmoid(x), F.silu, (-16.0, 16.0),
            "|silu(x) - relu(x)| = |x| sigmoid(-|x|) < 2e-6 beyond |x| = 16 (2.7e-3 at 8)",
            left=(0.0, 0.0), right=(1.0, 0.0),
        ),
        PwlFunction(
            "sigmoid", _sigmoid, torch.sigmoid, (-8.0, 8.0),
            f"{_SYMMETRIC} (3.4e-4 at |x| = 8)", left=(0.0, 0.0), right=(0.0, 1.0),
        ),
        PwlFunction(
            "tanh", np.tanh, torch.tanh, (-8.0, 8.0),
            "as sigmoid; 1 - tanh(8) = 2.3e-7", left=(0.0, -1.0), right=(0.0, 1.0),
        ),
        PwlFunction(
            "erf", _erf, torch.special.erf, (-4.0, 4.0),
            "1 - erf(4) = 1.5e-8", left=(0.0, -1.0), right=(0.0, 1.0),
        ),
        PwlFunction(
            "exp", np.exp, torch.exp, (-16.0, 0.0),
            "softmax after subtracting the row maximum: x <= 0; exp(-16) = 1.1e-7, far below "
            "an int8 step of a [0, 1] output (1/127) and below 2**-16",
            left=(0.0, 0.0),
        ),
        PwlFunction(
            "reciprocal", _positive_only(np.reciprocal), torch.reciprocal, (1.0, 16.0),
            "one binade-spread of positive denominators; scale inputs into it (the error is "
            "absolute, and 1/x grows without bound at 0)",
            domain=(0.0, math.inf), domain_open=True,
        ),
        PwlFunction(
            "rsqrt", _positive_only(lambda x: 1.0 / np.sqrt(x)), torch.rsqrt, (0.25, 16.0),
            "LayerNorm variance (after eps) of normalised activations; extrapolates outside",
            domain=(0.0, math.inf), domain_open=True,
        ),
        PwlFunction(
            "log", _positive_only(np.log), torch.log, (1.0, 256.0),
            "softmax's log-sum-exp: a row sum of exp(x - max) lies in [1, row length]",
            domain=(0.0, math.inf), domain_open=True,
        ),
        PwlFunction(
            "sqrt", _positive_only(np.sqrt), torch.sqrt, (0.0, 16.0),
            "non-negative statistics such as variances", domain=(0.0, math.inf),
        ),
        PwlFunction(
            "softplus", lambda x: np.logaddexp(0.0, x), F.softplus, (-16.0, 16.0),
            "|softplus(x) - relu(x)| < 1.2e-7 beyond |x| = 16", left=(0.0, 0.0),
            right=(1.0, 0.0),
        ),
        PwlFunction(
            "elu", _elu, F.elu, (-16.0, 8.0),
            "exp(-16) = 1.1e-7 on the left; exactly the identity for x > 0", left=(0.0, -1.0),
            right=(1.0, 0.0), kinks=(0.0,),
        ),
        PwlFunction(
            "hardswish", lambda x: x * _relu6(x + 3.0) / 6.0, F.hardswish, (-8.0, 8.0),
            "quadratic on [-3, 3], exactly 0 / x outside", left=(0.0, 0.0), right=(1.0, 0.0),
            kinks=(-3.0, 3.0),
        ),
        PwlFunction(
            "hardsigmoid", lambda x: _relu6(x + 3.0) / 6.0, F.hardsigmoid, (-8.0, 8.0),
            "exact with 3 segments", kinks=(-3.0, 3.0), exact=True,
        ),
        PwlFunction(
            "hardtanh", lambda x: np.clip(x, -1.0, 1.0), F.hardtanh, (-8.0, 8.0),
            "exact with 3 segments", kinks=(-1.0, 1.0), exact=True,
        ),
        PwlFunction(
            "relu", lambda x: np.maximum(x, 0.0), F.relu, (-8.0, 8.0),
            "exact with 2 segments", kinks=(0.0,), exact=True,
        ),
        PwlFunction(
            "relu6", _relu6, F.relu6, (-8.0, 8.0),
            "exact with 3 segments", kinks=(0.0, 6.0), exact=True,
        ),
        PwlFunction(
            "leaky_relu", lambda x: np.where(x >= 0, x, 0.01 * x),
            lambda x: F.leaky_relu(x, 0.01), (-8.0, 8.0),
            "negative slope 0.01; exact with 2 segments", kinks=(0.0,), exact=True,
        ),
        PwlFunction(
            "mish", lambda x: x * np.tanh(np.logaddexp(0.0, x)), F.mish, (-16.0, 16.0),
            "|mish(x) - relu(x)| < 2e-6 beyond |x| = 16", left=(0.0, 0.0), right=(1.0, 0.0),
        ),
        PwlFunction(
            "identity", lambda x: np.array(x, dtype=np.float64, copy=True), lambda x: x,
            (-8.0, 8.0), "exact with 1 segment", exact=True,
        ),
    )
}


# ---- parameterised families -----------------------------------------------------------------


def _leaky_relu(negative_slope: float) -> PwlFunction:
    a = float(negative_slope)
    return PwlFunction(
        function_name("leaky_relu", negative_slope=a),
        lambda x: np.where(x >= 0, x, a * x), lambda x: F.leaky_relu(x, a), (-8.0, 8.0),
        f"negative slope {a:g}; exact with 2 segments", kinks=(0.0,), exact=True,
    )


def _elu(alpha: float) -> PwlFunction:
    a = float(alpha)
    return PwlFunction(
        function_name("elu", alpha=a),
        lambda x: np.where(x > 0, x, a * np.expm1(np.minimum(x, 0.0))),
        lambda x: F.elu(x, a), (-16.0, 8.0),
        "as elu", left=(0.0, -a), right=(1.0, 0.0), kinks=(0.0,),
    )


def _softplus(beta: float, threshold: float) -> PwlFunction:
    b, t = float(beta), float(threshold)
    return PwlFunction(
        function_name("softplus", beta=b, threshold=t),
        lambda x: np.where(b * x > t, x, np.logaddexp(0.0, b * x) / b),
        lambda x: F.softplus(x, b, t), (-16.0 / b, 16.0 / b),
        "as softplus, in units of 1/beta", left=(0.0, 0.0), right=(1.0, 0.0),
    )


def _hardtanh(min_val: float, max_val: float) -> PwlFunction:
    lo, hi = float(min_val), float(max_val)
    return PwlFunction(
        function_name("hardtanh", min_val=lo, max_val=hi),
        lambda x: np.clip(x, lo, hi), lambda x: F.hardtanh(x, lo, hi),
        (min(-8.0, 2 * lo), max(8.0, 2 * hi)), "exact with 3 segments", kinks=(lo, hi),
        exact=True,
    )


#: Function families with parameters: family -> (builder, parameter names, defaults). Their
#: names carry the parameters, ``"leaky_relu(negative_slope=0.2)"``, so a name alone rebuilds
#: the function in any process (:func:`parameterised`).
PARAMETERISED: dict[str, tuple] = {
    "leaky_relu": (_leaky_relu, ("negative_slope",), (0.01,)),
    "elu": (_elu, ("alpha",), (1.0,)),
    "softplus": (_softplus, ("beta", "threshold"), (1.0, 20.0)),
    "hardtanh": (_hardtanh, ("min_val", "max_val"), (-1.0, 1.0)),
}
_BUILT: dict[str, PwlFunction] = {}


def function_name(family: str, **params: float) -> str:
    """The name of ``family`` with ``params``: the plain family name when every parameter has
    its default (the entry of :data:`FUNCTIONS`), else ``"family(p=v, ...)"``."""
    builder, names, defaults = PARAMETERISED[family]
    values = {n: float(params.get(n, d)) for n, d in zip(names, defaults, strict=True)}
    if all(values[n] == float(d) for n, d in zip(names, defaults, strict=True)):
        return family
    return f"{family}(" + ", ".join(f"{n}={values[n]!r}" for n in names) + ")"


def parameterised(name: str) -> PwlFunction | None:
    """The function a parameterised name denotes (built once), or None if ``name`` is not one."""
    if name in _BUILT:
        return _BUILT[name]
    if not isinstance(name, str) or "(" not in name or not name.endswith(")"):
        return None
    family, _, rest = name[:-1].partition("(")
    if family not in PARAMETERISED:
        return None
    builder, names, defaults = PARAMETERISED[family]
    values = dict(zip(names, defaults, strict=True))
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, val = item.partition("=")
        if not eq or key.strip() not in values:
            return None
        try:
            values[key.strip()] = float(val)
        except ValueError:
            return None
    fn = builder(*(values[n] for n in names))
    if fn.name != name:
        return None
    _BUILT[name] = fn
    return fn
