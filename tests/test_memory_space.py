# amaranth: UnusedElaboratable=no
"""The memory-space front shared by the scratchpad and the accumulator (``hw.memory_space``)."""

# (The linter line above: the tests construct components they never elaborate.)

from __future__ import annotations

import pytest

from hw.accumulator import ACC_BANKS, Accumulator
from hw.config import preset
from hw.memory_space import MemorySpace
from hw.scratchpad import Scratchpad


@pytest.mark.parametrize("cls", [Scratchpad, Accumulator])
def test_rejects_a_config_that_is_not_one(cls):
    with pytest.raises(TypeError, match="config must be an AcceleratorConfig, got 'tiny'"):
        cls("tiny")


def test_the_base_class_needs_a_banked_memory():
    with pytest.raises(NotImplementedError, match="MemorySpace must define banked_memory"):
        MemorySpace(preset("tiny"))


@pytest.mark.parametrize("cls, ports, banks, rows", [
    (Scratchpad, {"weights", "operands", "store", "load_write", "epi_write"},
     lambda c: c.scratchpad_banks, lambda c: c.scratchpad_rows),
    (Accumulator, {"gemm", "epi_read", "store", "epi_write", "load_write"},
     lambda c: ACC_BANKS, lambda c: c.accumulator_rows),
])
def test_ports_sizes_and_read_only_properties(cls, ports, banks, rows):
    config = preset("tiny")
    mem = cls(config)
    assert set(mem.signature.members) == ports
    assert mem.config is config
    assert len(mem.memories) == banks(config)
    assert sum(m.depth for m in mem.memories) == rows(config)
    assert 1 << mem.addr_bits == rows(config)
    with pytest.raises(AttributeError):
        mem.addr_bits = 3
