"""The accelerator configuration (hw.config): validation, fingerprints, presets, round trips."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw.config import _RANGES, PRESETS, AcceleratorConfig, ConfigError, preset, preset_names
from hw.errors import NmxError

FIELDS = [f.name for f in dataclasses.fields(AcceleratorConfig)]

#: The allowed (lo, hi, power of two) of every field, stated here rather than read from
#: hw.config, so the validation is checked against the specification instead of against itself.
RANGES: dict[str, tuple[int, int, bool]] = {
    "rows": (1, 64, False),
    "cols": (1, 64, False),
    "operand_bits": (8, 8, False),
    "acc_bits": (32, 32, False),
    "scale_bits": (16, 16, False),
    "slope_bits": (16, 16, False),
    "scratchpad_rows": (16, 1 << 20, True),
    "scratchpad_banks": (1, 16, True),
    "accumulator_rows": (16, 1 << 18, True),
    "bias_entries": (16, 1 << 16, True),
    "pwl_functions": (8, 64, True),
    "pwl_segments": (64, 256, True),
    "dma_data_bits": (32, 512, True),
    "addr_bits": (32, 48, False),
    "instr_fifo_depth": (2, 1024, True),
}


def test_every_field_has_the_specified_range():
    assert sorted(RANGES) == sorted(FIELDS)
    assert _RANGES == RANGES, "a range changed: update RANGES here and the docs deliberately"


def test_config_error_is_an_nmx_error():
    assert issubclass(ConfigError, NmxError)
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("name", FIELDS)
def test_value_below_range_names_field_value_and_range(name):
    lo, hi, _ = RANGES[name]
    with pytest.raises(ConfigError) as info:
        AcceleratorConfig(**{name: lo - 1})
    message = str(info.value)
    assert f"'{name}'" in message
    assert f"= {lo - 1}" in message
    assert f"{lo}..{hi}" in message


@pytest.mark.parametrize("name", FIELDS)
def test_value_above_range_names_field_value_and_range(name):
    lo, hi, _ = RANGES[name]
    with pytest.raises(ConfigError) as info:
        AcceleratorConfig(**{name: hi + 1})
    message = str(info.value)
    assert f"'{name}'" in message
    assert f"= {hi + 1}" in message
    assert f"{lo}..{hi}" in message


@pytest.mark.parametrize("name", [n for n, (_, _, pow2) in RANGES.items() if pow2])
def test_power_of_two_fields_reject_other_values(name):
    lo, hi, _ = RANGES[name]
    value = lo + 1 if lo > 1 else 3
    assert lo <= value <= hi
    with pytest.raises(ConfigError, match=rf"'{name}' = {value}: must be a power of two"):
        AcceleratorConfig(**{name: value})


@pytest.mark.parametrize("value", [True, 4.0, "4", None])
def test_non_integers_are_rejected(value):
    with pytest.raises(ConfigError, match=r"'rows': expected an integer, got"):
        AcceleratorConfig(rows=value)


def test_config_is_frozen_and_replace_validates():
    config = AcceleratorConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.rows = 4
    assert config.replace(rows=4).rows == 4
    with pytest.raises(ConfigError, match="'cols' = 65"):
        config.replace(cols=65)


def test_presets():
    assert preset_names() == sorted(PRESETS) == ["default", "ecp5", "tiny"]
    assert preset("default") == AcceleratorConfig()
    tiny, ecp5 = preset("tiny"), preset("ecp5")
    assert (tiny.rows, tiny.cols) == (4, 4)
    assert (ecp5.rows, ecp5.cols) == (8, 8)
    # ECP5-85F has 156 multipliers: the array must fit.
    assert ecp5.peak_macs_per_cycle <= 156
    with pytest.raises(ConfigError, match="unknown config preset 'big'; known presets: default"):
        preset("big")


def test_fingerprints_of_presets_are_distinct_and_shaped():
    prints = {name: c.fingerprint for name, c in PRESETS.items()}
    assert len(set(prints.values())) == len(prints)
    for fp in prints.values():
        assert len(fp) == 10 and int(fp, 16) >= 0


def test_fingerprint_is_stable_across_interpreters():
    code = (
        "import json; from hw.config import PRESETS; "
        "print(json.dumps({n: c.fingerprint for n, c in PRESETS.items()}))"
    )
    prints = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        ).stdout
        prints.add(out)
    assert len(prints) == 1
    assert json.loads(prints.pop()) == {n: c.fingerprint for n, c in PRESETS.items()}


@pytest.mark.parametrize("name", [n for n, (lo, hi, _) in RANGES.items() if lo < hi])
def test_every_field_changes_the_fingerprint(name):
    base = preset("tiny")
    lo, hi, _ = RANGES[name]
    changed = base.replace(**{name: hi if getattr(base, name) != hi else lo})
    assert changed.fingerprint != base.fingerprint
    assert changed.artifact_stem("x") != base.artifact_stem("x")


def test_artifact_stem():
    config = preset("ecp5")
    assert config.artifact_stem("systolic_array") == f"systolic_array_8x8_{config.fingerprint}"


def test_from_dict_round_trip_and_unknown_fields():
    config = preset("tiny")
    assert AcceleratorConfig.from_dict(config.to_dict()) == config
    assert AcceleratorConfig.from_dict({"rows": 2}) == AcceleratorConfig(rows=2)
    with pytest.raises(ConfigError, match=r"unknown config field\(s\) \['banks'\]"):
        AcceleratorConfig.from_dict({"rows": 2, "banks": 4})
    with pytest.raises(ConfigError, match="'rows' = 0"):
        AcceleratorConfig.from_dict({"rows": 0})


def test_derived_properties():
    config = AcceleratorConfig(rows=4, cols=8)
    assert config.lanes == 8
    assert config.peak_macs_per_cycle == 32


def _in_range(name):
    lo, hi, pow2 = RANGES[name]
    if pow2:
        return st.sampled_from([1 << k for k in range(lo.bit_length() - 1, hi.bit_length())])
    return st.integers(lo, hi)


def _valid_configs():
    """Configs with the fields that take many values drawn from their allowed ranges."""
    return st.builds(
        AcceleratorConfig,
        **{
            name: _in_range(name)
            for name in ("rows", "cols", "scratchpad_rows", "scratchpad_banks",
                         "accumulator_rows", "pwl_segments", "dma_data_bits", "addr_bits")
        },
    )


@settings(max_examples=200, deadline=None)
@given(_valid_configs(), _valid_configs())
def test_fingerprint_is_a_function_of_the_fields(a, b):
    assert AcceleratorConfig.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    assert AcceleratorConfig.from_dict(a.to_dict()).fingerprint == a.fingerprint
    assert (a.fingerprint == b.fingerprint) == (a == b)
