"""The accelerator configuration: one frozen dataclass that drives everything.

The RTL generators, the ISA encoding, the compiler's tiling, the golden model and the tests all
take an :class:`AcceleratorConfig` explicitly (never a global). Every generated artifact carries
the config's :attr:`~AcceleratorConfig.fingerprint` in its name.

Dataflow contract (see ``docs/architecture.md``): the systolic array is *weight-stationary*. A GEMM
tile multiplies an ``m x rows`` operand block (streamed, one row of ``rows`` int8 values per cycle)
by a ``rows x cols`` weight block (held in the PEs, double-buffered) and produces ``m x cols``
int32 results, one row per cycle. ``rows`` is the reduction (K) tile, ``cols`` the output (N) tile.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, fields

from hw.errors import NmxError

__all__ = [
    "AcceleratorConfig",
    "ConfigError",
    "ConfigMismatchError",
    "ConfigStamp",
    "PRESETS",
    "preset",
    "preset_names",
]


class ConfigError(NmxError, ValueError):
    """An accelerator configuration field holds a value outside its allowed range."""


class ConfigMismatchError(ConfigError):
    """An artifact (program file, DRAM image) built for one config is used with another."""


def _is_pow2(v: int) -> bool:
    return v > 0 and (v & (v - 1)) == 0


# field -> (minimum, maximum, must be a power of two)
_RANGES: dict[str, tuple[int, int, bool]] = {
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
    # 48 bits (256 TiB) keeps every DRAM address, base + offset + walk, exact in int64.
    "addr_bits": (32, 48, False),
    "instr_fifo_depth": (2, 1024, True),
}


@dataclass(frozen=True)
class AcceleratorConfig:
    """Parameters of one NeuralMatrix accelerator instance.

    Parameters
    ----------
    rows, cols : int
        Processing-element grid: ``rows`` is the reduction (K) tile and ``cols`` the output (N)
        tile of the weight-stationary systolic array. 1..64 each.
    operand_bits : int
        Width of operands (int8; only 8 is supported).
    acc_bits : int
        Width of accumulators (int32; only 32 is supported).
    scale_bits : int
        Width of the epilogue's signed per-channel requantisation multiplier (16).
    slope_bits : int
        Width of a PWL segment's signed slope (16). Breakpoints and intercepts are ``acc_bits``.
    scratchpad_rows : int
        Scratchpad depth in rows; a row holds ``max(rows, cols)`` operands. Power of two.
    scratchpad_banks : int
        Number of scratchpad banks (power of two, divides ``scratchpad_rows``).
    accumulator_rows : int
        Accumulator depth in rows of ``cols`` int32 values. Power of two.
    bias_entries : int
        Bias/scale SRAM depth, in per-output-channel entries. Power of two.
    pwl_functions : int
        Segment tables resident at once (>= 8).
    pwl_segments : int
        Segments per table (>= 64); a table holds ``pwl_segments - 1`` breakpoints.
    dma_data_bits : int
        AXI4 data-bus width of the DMA master (power of two, 32..512).
    addr_bits : int
        DRAM (AXI) address width, 32..48.
    instr_fifo_depth : int
        Depth of each decoupled instruction queue.
    """

    rows: int = 16
    cols: int = 16
    operand_bits: int = 8
    acc_bits: int = 32
    scale_bits: int = 16
    slope_bits: int = 16
    scratchpad_rows: int = 16384
    scratchpad_banks: int = 4
    accumulator_rows: int = 2048
    bias_entries: int = 1024
    pwl_functions: int = 8
    pwl_segments: int = 64
    dma_data_bits: int = 128
    addr_bits: int = 32
    instr_fifo_depth: int = 16

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            lo, hi, pow2 = _RANGES[f.name]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(
                    f"config field {f.name!r}: expected an integer, got {value!r}"
                )
            if not lo <= value <= hi:
                raise ConfigError(
                    f"config field {f.name!r} = {value}: allowed range is {lo}..{hi}"
                )
            if pow2 and not _is_pow2(value):
                raise ConfigError(
                    f"config field {f.name!r} = {value}: must be a power of two in {lo}..{hi}"
                )
        if self.scratchpad_rows % self.scratchpad_banks:
            raise ConfigError(
                f"config field 'scratchpad_banks' = {self.scratchpad_banks}: must divide "
                f"scratchpad_rows = {self.scratchpad_rows}"
            )

    @property
    def lanes(self) -> int:
        """Operands per scratchpad row: ``max(rows, cols)``."""
        return max(self.rows, self.cols)

    @property
    def peak_macs_per_cycle(self) -> int:
        """Multiply-accumulates per cycle at full utilisation: ``rows * cols``."""
        return self.rows * self.cols

    def to_dict(self) -> dict[str, int]:
        """Return the fields as a plain dict (the canonical, JSON-serialisable form)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AcceleratorConfig:
        """Build a config from :meth:`to_dict` output; unknown keys raise :class:`ConfigError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    def replace(self, **changes: int) -> AcceleratorConfig:
        """Return a copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)

    @property
    def fingerprint(self) -> str:
        """A short, stable hash of every field (10 hex digits)."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:10]

    def artifact_stem(self, name: str) -> str:
        """Name of a generated artifact: ``{name}_{rows}x{cols}_{fingerprint}``."""
        return f"{name}_{self.rows}x{self.cols}_{self.fingerprint}"

    @property
    def stamp(self) -> ConfigStamp:
        """The :class:`ConfigStamp` that artifacts built for this config carry."""
        return ConfigStamp(self.fingerprint, self.rows, self.cols)


_FINGERPRINT = re.compile(r"[0-9a-f]{10}")


@dataclass(frozen=True)
class ConfigStamp:
    """The config an artifact was built for: fingerprint plus the array geometry (for messages).

    Program files and DRAM images store it in their headers; using the artifact with another
    config raises :class:`ConfigMismatchError` (:meth:`check`).

    Parameters
    ----------
    fingerprint : str
        :attr:`AcceleratorConfig.fingerprint` (10 lowercase hex digits).
    rows, cols : int
        The array shape of that config, 1..64 each.
    """

    fingerprint: str
    rows: int
    cols: int

    def __post_init__(self) -> None:
        if not isinstance(self.fingerprint, str) or not _FINGERPRINT.fullmatch(self.fingerprint):
            raise ConfigError(
                f"config fingerprint {self.fingerprint!r}: expected 10 lowercase hex digits"
            )
        for name in ("rows", "cols"):
            lo, hi, _ = _RANGES[name]
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(f"config stamp {name} = {v!r}: allowed range is {lo}..{hi}")

    def __str__(self) -> str:
        return f"{self.fingerprint} ({self.rows}x{self.cols})"

    def check(self, config: AcceleratorConfig, what: str) -> None:
        """Raise :class:`ConfigMismatchError` unless ``config`` is the config of this stamp.

        ``what`` names the artifact in the message (e.g. ``"program file 'mlp.bin'"``).
        """
        if config.fingerprint != self.fingerprint:
            raise ConfigMismatchError(
                f"{what} was built for config {self}, but this run uses config "
                f"{config.stamp}: rebuild it for this config, or run with the config it was "
                "built for (--config / --set)"
            )


PRESETS: dict[str, AcceleratorConfig] = {
    # Small and fast for unit tests and RTL simulation.
    "tiny": AcceleratorConfig(
        rows=4,
        cols=4,
        scratchpad_rows=1024,
        scratchpad_banks=2,
        accumulator_rows=256,
        bias_entries=64,
        dma_data_bits=64,
        instr_fifo_depth=8,
    ),
    "default": AcceleratorConfig(),
    # Lattice ECP5-85F: 156 MULT18X18D and 208 EBR blocks of 18 Kbit (widest mode 512 x 36). An
    # 8x8 int8 array uses 64 multipliers (the whole accelerator 113). EBR (docs/fpga.md, "EBR
    # budget"; Yosys maps the same 74): scratchpad 2 banks x 2048 rows x 64 bit = 16 (32 KiB);
    # accumulator 2 halves x 256 rows x 8 x 32 bit = 8 wide each = 16 (16 KiB); bias/scale SRAM
    # 256 entries in 8 banks of 32 = LUT RAM, 0 EBR; segment tables 8 functions x 64 segments,
    # one copy per lane for the pipelined search (levels 3-5, slopes, intercepts) = 5 per lane
    # = 40; instruction prefetch buffer 2. Total 74 of 208 EBR (36 %).
    "ecp5": AcceleratorConfig(
        rows=8,
        cols=8,
        scratchpad_rows=4096,
        scratchpad_banks=2,
        accumulator_rows=512,
        bias_entries=256,
        dma_data_bits=64,
        instr_fifo_depth=8,
    ),
}


def preset_names() -> list[str]:
    """Names of the built-in presets."""
    return sorted(PRESETS)


def preset(name: str) -> AcceleratorConfig:
    """Return the preset called ``name``; an unknown name raises :class:`ConfigError`."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown config preset {name!r}; known presets: {', '.join(preset_names())}"
        ) from None
