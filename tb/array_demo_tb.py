"""cocotb side of the ``nmx sim`` demo (sim/array_demo.py): stream GEMM tiles through the array.

``NMX_TB_PARAMS`` (JSON): ``rows``, ``cols``; ``tiles_file`` (``.npz`` with ``weights``, tiles x
rows x cols, and ``operands``, tiles x m x rows, int8); ``out_file`` (``.npy`` to write the result
rows to, int32, streaming order); ``metrics_file`` (JSON of the cycle counts). All tiles are
queued at once, so weight loads overlap the computation of the previous tile exactly as the
array allows. The numerical check is the caller's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cocotb
import numpy as np

from tb.systolic_array_tb import TB, tb_params


@cocotb.test()
async def stream_gemm_tiles(dut):
    """Stream every tile back to back; save the result rows and the handshake cycle counts."""
    p = tb_params()
    rows, cols = p["rows"], p["cols"]
    with np.load(p["tiles_file"]) as f:
        weights, operands = f["weights"], f["operands"]
    tiles, m = operands.shape[0], operands.shape[1]
    if weights.shape != (tiles, rows, cols) or operands.shape[2] != rows:
        raise ValueError(f"tile arrays {weights.shape}, {operands.shape} do not fit {rows}x{cols}")
    tb = TB(dut, rows, cols)
    await tb.reset()
    for w, a in zip(weights, operands, strict=True):
        tb.load_tile(w, a)
    wall = time.perf_counter()
    budget = 4 * tiles * (m + rows) + 4 * (rows + cols)
    got = await tb.wait_results(tiles * m, timeout_cycles=budget)
    wall = time.perf_counter() - wall
    await tb.expect_no_more_results(2 * (rows + cols + 4))
    np.save(p["out_file"], got.astype(np.int32))

    ops, res = tb.operands.fire_cycles, tb.results.fire_cycles
    metrics = {
        "tiles": tiles,
        "rows_per_tile": m,
        "operand_rows": tiles * m,
        "array_macs": tiles * m * rows * cols,
        # From the first weight beat to the last result row: everything the array did.
        "total_cycles": res[-1] - tb.weights.fire_cycles[0] + 1,
        # Steady state: the input register takes row i + 1 on the cycle row i enters the array,
        # so rows 1.. are accepted at the array's own pace (row 0 waits for the first weights).
        "streaming_rows": len(ops) - 1,
        "streaming_cycles": ops[-1] - ops[1] + 1 if len(ops) > 1 else 0,
        "sim_cycles": tb.cycle,
        "sim_seconds": wall,
    }
    Path(p["metrics_file"]).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    tb.log.info("demo metrics: %s", metrics)
