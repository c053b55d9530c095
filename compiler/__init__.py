"""Compiler: PyTorch capture, NeuralMatrix conversion, quantisation and the back end.

Public API::

    from compiler import convert, finetune
    cm = convert(model.eval(), example_inputs, calibration)
    cm(*inputs)                     # integer-exact reference (int8, int32 accumulation, PWL)
    cm(*inputs, mode="float-pwl")   # or "fake-quant", "float"
    cm.report().render()            # per-node and per-function errors
    cm2 = finetune(cm, data, epochs=2, lr=1e-4)
"""

from compiler.convert import ConvertedModel, convert
from compiler.graph import (
    ConvertError,
    UnsupportedDtypeError,
    UnsupportedOpError,
    UnsupportedShapeError,
)
from compiler.quant.finetune import finetune
from compiler.quant.quantize import QuantizationError

__all__ = [
    "ConvertError",
    "ConvertedModel",
    "QuantizationError",
    "UnsupportedDtypeError",
    "UnsupportedOpError",
    "UnsupportedShapeError",
    "convert",
    "finetune",
]
