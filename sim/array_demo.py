"""The ``nmx sim`` demo: a GEMM larger than the array, tiled and run on the Verilated array RTL.

``C = A @ B`` with ``A`` ``M x K`` and ``B`` ``K x N`` (random int8) is cut into weight tiles of
``rows x cols`` (zero-padded at the edges); for each output column block and each K block the
array computes ``A[:, kblock] @ B[kblock, nblock]``, and the K blocks' partial results are summed
here in Python (the accelerator's accumulator SRAM does that in hardware). All tiles stream back
to back through one simulation (``tb/array_demo_tb.py``); inputs and outputs travel as files in
the run's folder under ``build/sim_demo``. The result is checked element by element against NumPy,
and the cycle counts come from the testbench's handshake counters.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw.config import AcceleratorConfig
from hw.errors import NmxError

__all__ = ["ARRAY_TOPLEVEL", "DemoResult", "GemmTiling", "run_array_demo", "write_array_verilog"]

#: Verilog module name of the array when generated on its own.
ARRAY_TOPLEVEL = "systolic_array"
DEMO_ROOT = Path(__file__).resolve().parents[1] / "build" / "sim_demo"


def write_array_verilog(config: AcceleratorConfig, out_dir: str | Path, target=None) -> Path:
    """Write the systolic array's Verilog for ``config`` into ``out_dir``; return its path.

    The file, ``<config.artifact_stem("systolic_array")>.v`` (``..._<target name>.v`` for a
    ``hw.target.GenerationTarget``, whose vendor primitives need their simulation models, e.g.
    ``sim/vendor/ecp5_mult18x18d.v``), is rewritten only when its content changes (generation is
    deterministic), so the Verilator build cache keeps hitting.
    """
    from hw.rtl import verilog_text, write_if_changed
    from hw.systolic_array import SystolicArray

    suffix = "" if target is None else f"_{target.name}"
    path = Path(out_dir) / f"{config.artifact_stem(ARRAY_TOPLEVEL)}{suffix}.v"
    write_if_changed(path, verilog_text(SystolicArray(config), ARRAY_TOPLEVEL, target).encode())
    return path


@dataclass(frozen=True)
class GemmTiling:
    """How an ``m x k`` by ``k x n`` GEMM maps onto a ``rows x cols`` array.

    Tiles are ordered output block by output block (``n`` outer), K blocks inner, so the K
    partial results of one output block are consecutive.
    """

    m: int
    k: int
    n: int
    rows: int
    cols: int

    def __post_init__(self) -> None:
        for name in ("m", "k", "n"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise NmxError(f"GEMM size {name} = {value!r}: must be a positive integer")

    @property
    def k_tiles(self) -> int:
        return -(-self.k // self.rows)

    @property
    def n_tiles(self) -> int:
        return -(-self.n // self.cols)

    @property
    def tiles(self) -> int:
        return self.k_tiles * self.n_tiles

    def split(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the weight tiles (``tiles x rows x cols``) and operand tiles (``tiles x m x
        rows``), zero-padded, in streaming order."""
        kp, np_ = self.k_tiles * self.rows, self.n_tiles * self.cols
        a_pad = np.zeros((self.m, kp), dtype=np.int8)
        a_pad[:, : self.k] = a
        b_pad = np.zeros((kp, np_), dtype=np.int8)
        b_pad[: self.k, : self.n] = b
        weights, operands = [], []
        for j in range(self.n_tiles):
            for t in range(self.k_tiles):
                ks = slice(t * self.rows, (t + 1) * self.rows)
                weights.append(b_pad[ks, j * self.cols : (j + 1) * self.cols])
                operands.append(a_pad[:, ks])
        return np.stack(weights), np.stack(operands)

    def combine(self, partials: np.ndarray) -> np.ndarray:
        """Sum the K partial results (``tiles * m x cols`` int32, streaming order) into ``m x n``
        int32, wrapping like the accumulator."""
        parts = partials.astype(np.int64).reshape(self.n_tiles, self.k_tiles, self.m, self.cols)
        blocks = parts.sum(axis=1)  # n_tiles x m x cols
        out = np.concatenate(list(blocks), axis=1)[:, : self.n]
        return out.astype(np.int32)  # two's-complement wrap, as in hardware


@dataclass(frozen=True)
class DemoResult:
    """What one demo run measured."""

    tiling: GemmTiling
    mismatches: int
    max_abs_error: int
    metrics: dict
    run_dir: Path
    wall_seconds: float

    @property
    def peak(self) -> int:
        return self.tiling.rows * self.tiling.cols


def run_array_demo(
    config: AcceleratorConfig, *, m: int, k: int, n: int, seed: int = 0, waves: bool | None = None
) -> DemoResult:
    """Run ``(m x k) @ (k x n)`` on the array RTL for ``config`` and check it against NumPy.

    Raises
    ------
    sim.verilator.SimulationFailed
        The simulation failed (including a result row that never arrived).
    """
    from sim.verilator import run_cocotb

    tiling = GemmTiling(m, k, n, config.rows, config.cols)
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    weights, operands = tiling.split(a, b)

    stem = config.artifact_stem(ARRAY_TOPLEVEL)
    work = DEMO_ROOT / f"{stem}_{m}x{k}x{n}_seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    tiles_file = work / "tiles.npz"
    out_file = work / "results.npy"
    metrics_file = work / "metrics.json"
    for stale in (out_file, metrics_file):
        stale.unlink(missing_ok=True)
    np.savez(tiles_file, weights=weights, operands=operands)
    verilog = write_array_verilog(config, DEMO_ROOT)

    params = {
        "rows": config.rows,
        "cols": config.cols,
        "tiles_file": str(tiles_file),
        "out_file": str(out_file),
        "metrics_file": str(metrics_file),
    }
    start = time.perf_counter()
    res = run_cocotb(
        sources=[verilog],
        toplevel=ARRAY_TOPLEVEL,
        test_module="tb.array_demo_tb",
        name=stem,
        env={"NMX_TB_PARAMS": json.dumps(params, sort_keys=True)},
        waves=waves,
    )
    wall = time.perf_counter() - start
    partials = np.load(out_file)
    got = tiling.combine(partials)
    expected = (a.astype(np.int64) @ b.astype(np.int64)).astype(np.int32)
    diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
    return DemoResult(
        tiling=tiling,
        mismatches=int(np.count_nonzero(diff)),
        max_abs_error=int(diff.max()),
        metrics=json.loads(metrics_file.read_text()),
        run_dir=res.results_file.parent,
        wall_seconds=wall,
    )
