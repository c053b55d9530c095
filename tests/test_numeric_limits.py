"""hw.numeric additions: wrap() and quantize_multiplier's refusal of unrepresentable scales."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw.errors import NmxError
from hw.numeric import MAX_SHIFT, NumericError, quantize_multiplier, wrap


def test_wrap_is_twos_complement():
    assert wrap([2**31, -(2**31) - 1, 5, -7], 32).tolist() == [-(2**31), 2**31 - 1, 5, -7]
    assert int(wrap(200, 8)) == -56 and int(wrap(-129, 8)) == 127 and int(wrap(3, 1)) == -1
    assert wrap(np.int64(2**40 + 3), 32).dtype == np.int64
    with pytest.raises(ValueError, match="bits must be an integer in 1..63"):
        wrap(1, 64)


@given(st.integers(-(2**62), 2**62), st.integers(1, 62))
@settings(max_examples=200, deadline=None)
def test_wrap_matches_int_arithmetic(v, bits):
    want = (v + (1 << (bits - 1))) % (1 << bits) - (1 << (bits - 1))
    assert int(wrap(v, bits)) == want


def test_tiny_scale_is_an_error_not_zero():
    with pytest.raises(NumericError, match=r"scale 1e-20 too small.*multiplier would be 0"):
        quantize_multiplier(1e-20)
    with pytest.raises(NmxError):
        quantize_multiplier(-1e-12)
    smallest = 2**14 / 2**MAX_SHIFT
    assert quantize_multiplier(smallest) == (16384, MAX_SHIFT)
    with pytest.raises(NumericError):
        quantize_multiplier(smallest * 0.999)
    # with a smaller max_shift the limit moves up accordingly
    with pytest.raises(NumericError, match="largest shift 10"):
        quantize_multiplier(2**-20, max_shift=10)


@given(st.floats(2**14 / 2**MAX_SHIFT, 32767.0))
@settings(max_examples=300, deadline=None)
def test_representable_scales_use_the_full_multiplier_range(scale):
    m, s = quantize_multiplier(scale)
    assert 2**14 <= m < 2**15 or (s == 0 and m >= 2**14)
    assert abs(m / 2**s - scale) <= 0.5 / 2**s
    assert quantize_multiplier(-scale) == (-m, s)
