"""Config limits added with the artifact stamps: the address width cap and ConfigStamp."""

from __future__ import annotations

import numpy as np
import pytest

from hw.config import AcceleratorConfig, ConfigError, ConfigMismatchError, ConfigStamp, preset
from hw.isa import Dmacfg, Halt, Load, MemSpace, Program, Setbase, Store, Sync, SyncTarget
from sim.dram_image import DramImage
from sim.golden import GoldenModel, StatusCode


def test_addr_bits_is_capped_at_48():
    assert AcceleratorConfig(addr_bits=48).addr_bits == 48
    with pytest.raises(ConfigError, match=r"'addr_bits' = 64: allowed range is 32..48"):
        AcceleratorConfig(addr_bits=64)


def test_huge_base_address_is_a_status_not_an_overflow():
    """The audit's case: a base near the top of the address space plus an offset."""
    cfg = preset("tiny").replace(addr_bits=48)
    img = DramImage.zeros(256)
    prefix = [
        Setbase(reg=1, value=(1 << 48) - 16),
        Dmacfg(slot=0, height=1, width=1, pix=4),
        Load(dst=0, inner=1, length=4, push_next=True),  # a written row for the store
        Sync(target=SyncTarget.COMPUTE, pop_prev=True, push_next=True),
    ]
    for ins in (
        Load(base=1, offset=0xFFFF_FFFF, inner=1, length=4),
        Store(mem=MemSpace.SPAD, base=1, offset=0xFFFF_FFFF, rows=1, stride=4, length=4,
              pop_prev=True),
    ):
        res = GoldenModel(cfg).run(Program([*prefix, ins, Halt()]), img)
        assert res.status.code == StatusCode.DRAM_RANGE, res.status
        assert res.status.pc == len(prefix) and "outside 0..0xff" in res.status.message
    res = GoldenModel(cfg).run(Program([Setbase(value=1 << 48), Halt()]), img)
    assert res.status.code == StatusCode.FIELD_RANGE


def test_config_stamp_validates_and_names_both_configs():
    a, b = preset("default"), preset("default").replace(rows=8)
    assert a.stamp == ConfigStamp(a.fingerprint, 16, 16) and str(a.stamp).endswith("(16x16)")
    a.stamp.check(a, "x")
    with pytest.raises(ConfigMismatchError) as e:
        a.stamp.check(b, "program file 'p.bin'")
    msg = str(e.value)
    assert f"program file 'p.bin' was built for config {a.fingerprint} (16x16)" in msg
    assert f"this run uses config {b.fingerprint} (8x16)" in msg
    for bad in ("ABCDEF0123", "12345", "zzzzzzzzzz"):
        with pytest.raises(ConfigError, match="10 lowercase hex digits"):
            ConfigStamp(bad, 1, 1)
    with pytest.raises(ConfigError, match="rows = 0"):
        ConfigStamp("0123456789", 0, 4)
    assert np.all([len(p.fingerprint) == 10 for p in map(preset, ("tiny", "ecp5"))])
