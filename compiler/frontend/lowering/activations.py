"""Element-wise functions as PWL epilogues: ELU, LeakyReLU, Softplus, Mish, Hardtanh with their
parameters, and every other function ``nmx pwl`` knows (``exp``, ``log``, ``sqrt``, ``rsqrt``,
``reciprocal``, ``erf``, ...) applied to a data tensor.

A function with parameters gets a name that carries them (``"elu(alpha=0.5)"``,
:func:`compiler.pwl.functions.function_name`); with default parameters it is the plain entry of
:data:`compiler.pwl.FUNCTIONS`. Piecewise-linear ones (LeakyReLU, Hardtanh) are fitted exactly.
"""

from __future__ import annotations

from compiler.frontend.lowering.registry import LoweringContext, register
from compiler.pwl.functions import function_name


@register("aten.elu.default", "aten.elu_.default")
def _elu(ctx: LoweringContext, x, alpha=1.0, scale=1.0, input_scale=1.0):
    if scale != 1.0 or input_scale != 1.0:
        raise ctx.unsupported(f"elu with scale={scale}, input_scale={input_scale} (SELU-style); "
                              "supported: scale = input_scale = 1")
    return ctx.pointwise(x, function_name("elu", alpha=alpha))


@register("aten.leaky_relu.default", "aten.leaky_relu_.default")
def _leaky_relu(ctx: LoweringContext, x, negative_slope=0.01):
    return ctx.pointwise(x, function_name("leaky_relu", negative_slope=negative_slope))


@register("aten.softplus.default")
def _softplus(ctx: LoweringContext, x, beta=1.0, threshold=20.0):
    if beta <= 0:
        raise ctx.unsupported(f"softplus with beta={beta}; beta must be positive")
    return ctx.pointwise(x, function_name("softplus", beta=beta, threshold=threshold))


@register("aten.hardtanh.default", "aten.hardtanh_.default")
def _hardtanh(ctx: LoweringContext, x, min_val=-1.0, max_val=1.0):
    if (float(min_val), float(max_val)) == (0.0, 6.0):
        return ctx.pointwise(x, "relu6")
    if not min_val < max_val:
        raise ctx.unsupported(f"hardtanh({min_val}, {max_val}): min_val must be < max_val")
    return ctx.pointwise(x, function_name("hardtanh", min_val=min_val, max_val=max_val))


def _plain(name: str):
    def lower(ctx: LoweringContext, x):
        return ctx.pointwise(x, name)

    lower.__name__ = f"_{name}"
    return lower


for _fn, _ops in {
    "mish": ("aten.mish.default", "aten.mish_.default"),
    "exp": ("aten.exp.default",),
    "log": ("aten.log.default",),
    "sqrt": ("aten.sqrt.default",),
    "rsqrt": ("aten.rsqrt.default",),
    "reciprocal": ("aten.reciprocal.default",),
    "erf": ("aten.erf.default",),
}.items():
    register(*_ops)(_plain(_fn))
