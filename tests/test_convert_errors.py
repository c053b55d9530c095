"""Conversion errors: unsupported ops, dtypes and shapes are named, never silently run in float."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compiler import (
    ConvertError,
    UnsupportedDtypeError,
    UnsupportedOpError,
    UnsupportedShapeError,
    convert,
)
from hw.errors import NmxError


class Inner(nn.Module):
    def forward(self, x):
        return torch.cumsum(x, dim=-1)


class Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.block = nn.Sequential(nn.ReLU(), Inner())

    def forward(self, x):
        return self.block(self.fc(x))


def _cal(shape, n=2):
    return [(torch.randn(shape),) for _ in range(n)]


def test_unsupported_op_names_op_module_and_location_not_the_whole_supported_set():
    with pytest.raises(UnsupportedOpError) as info:
        convert(Outer().eval(), (torch.randn(2, 4),), _cal((2, 4)))
    err = info.value
    assert err.op == "aten.cumsum.default"
    assert err.module == "block.1"
    msg = str(err)
    assert "aten.cumsum.default" in msg and "'block.1'" in msg
    assert "nmx ops" in msg and "Adding a lowering" in msg
    assert "aten.linear.default" in err.supported  # on request, not in the message
    assert "aten.conv2d.default" not in msg
    assert isinstance(err, NmxError)


def test_transposed_conv_is_unsupported():
    m = nn.Sequential(nn.ConvTranspose2d(2, 2, 3)).eval()
    with pytest.raises(UnsupportedOpError, match="conv_transpose2d"):
        convert(m, (torch.randn(1, 2, 4, 4),), _cal((1, 2, 4, 4)))


class IntMul(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x, idx):
        return self.fc(x) * idx


def test_integer_tensor_in_a_gemm_is_a_dtype_error():
    x, idx = torch.randn(2, 3), torch.ones(2, 3, dtype=torch.int64)
    with pytest.raises(UnsupportedDtypeError, match="int64"):
        convert(IntMul().eval(), (x, idx), [(x, idx)])


def test_unsupported_input_dtype():
    with pytest.raises(UnsupportedDtypeError, match="complex64"):
        convert(nn.Identity().eval(), (torch.randn(2, 2, dtype=torch.complex64),), [])


def test_unsupported_argument_is_a_shape_error_naming_op_and_module():
    m = nn.Sequential(nn.Conv2d(1, 2, 1), nn.MaxPool2d(3, padding=1, dilation=2)).eval()
    with pytest.raises(UnsupportedShapeError, match=r"max_pool2d.*'1'.*padding.*dilation"):
        convert(m, (torch.randn(1, 1, 7, 7),), _cal((1, 1, 7, 7)))


def test_product_of_two_broadcasting_data_tensors_is_rejected():
    class Outer2(nn.Module):
        def forward(self, x, y):
            return x * y

    x, y = torch.randn(2, 1), torch.randn(1, 3)
    with pytest.raises(UnsupportedShapeError, match="does not broadcast"):
        convert(Outer2().eval(), (x, y), [(x, y)])


def test_wrong_call_shape_is_an_error():
    m = nn.Linear(4, 2).eval()
    cm = convert(m, (torch.randn(2, 4),), _cal((2, 4)))
    with pytest.raises(UnsupportedShapeError, match="only the batch dim"):
        cm(torch.randn(2, 5))
    with pytest.raises(ConvertError, match="expected 1 inputs"):
        cm(torch.randn(2, 4), torch.randn(2, 4))


def test_training_mode_and_empty_calibration_are_errors():
    m = nn.Linear(4, 2)
    with pytest.raises(ConvertError, match="training mode"):
        convert(m, (torch.randn(2, 4),), _cal((2, 4)))
    with pytest.raises(ConvertError, match="calibration set is empty"):
        convert(m.eval(), (torch.randn(2, 4),), [])


def test_unknown_mode_is_an_error():
    cm = convert(nn.Linear(4, 2).eval(), (torch.randn(2, 4),), _cal((2, 4)))
    with pytest.raises(ValueError, match="float-pwl"):
        cm(torch.randn(2, 4), mode="float16")


class CollapsedSilu(nn.Module):
    """Activations at ~1e-12 (as in a deep random CNN with its initial BatchNorm statistics):
    the SiLU's int8 output step is ~1e7 times finer than its accumulator step."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 4)
        self.fc2 = nn.Linear(4, 3)
        with torch.no_grad():
            self.fc1.weight.mul_(1e-12)
            self.fc1.bias.mul_(1e-12)

    def forward(self, x):
        return self.fc2(nn.functional.silu(self.fc1(x)))


def test_collapsed_activations_are_a_conversion_error_naming_the_node():
    torch.manual_seed(0)
    cal = [(torch.randn(4, 8),) for _ in range(4)]
    with pytest.raises(ConvertError, match=r"node fc1 \(fc1, .*silu.*int8 output step .*"
                                           r"collapsed to ~0"):
        convert(CollapsedSilu().eval(), cal[0], cal)
