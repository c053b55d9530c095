"""Performance of the Verilated accelerator, read from its own counters (issue 8's numbers).

    python scripts/bench_rtl_counters.py [gemm256] [gemm256t] [gemm512] [pwl] [stream] [speed]
        [--json PATH]

Each benchmark runs a program on the RTL under cocotb (tb/accelerator_tb.py's
``directed_program``: status and the whole final DRAM image are checked against the golden
model, bit for bit) with no AXI pauses, and prints the RTL's counters:

* ``gemm256``: ``nmx bench gemm``'s program (256x256x256 int8, m=64 blocks double-buffered, EPI
  and STORE of each block) on ``default``: array MACs / (R*C*CYCLES), end to end, DMA included.
* ``gemm256t``: the same with ``A`` stored as its 16 column tiles (M x 16 each, the layout a
  producing STORE with ``tiles`` writes) instead of row-major.
* ``gemm512``: the compiler back end's 512x512x512 int8 GEMM bundle (scripts/bench_backend.py
  gemm) on ``default``.
* ``pwl``: the 256^3 program with a random 64-segment PWL table instead of the identity in its
  EPIs: total cycles relative to the identity epilogue.
* ``stream``: 64 GEMM + EPI pairs on alternating accumulator buffers (m=64, k_tiles=4): array
  busy = array MACs / (R*C*CYCLES).
* ``speed``: cycles per second of wall time under cocotb, ``tiny`` and ``default``.

Figures are measurements; nothing here asserts a target.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hw import numeric  # noqa: E402
from hw.config import AcceleratorConfig, preset  # noqa: E402
from hw.isa import (  # noqa: E402
    Dmacfg,
    Epi,
    EpiDest,
    Gemm,
    Halt,
    Load,
    Loadt,
    Program,
    TableKind,
    encode_bias_entries,
    encode_pwl_table,
    pwl_table_bytes,
)
from hw.rtl import TOPS, write_rtl  # noqa: E402
from sim.dram_image import DramImage  # noqa: E402
from sim.verilator import REPO_ROOT, run_cocotb  # noqa: E402

VERILOG_DIR = REPO_ROOT / "build" / "tb"


def run_on_rtl(cfg: AcceleratorConfig, program: Program, image: DramImage, *,
               backpressure: float = 0.0, max_cycles: int = 5_000_000) -> dict:
    """Run ``program`` on the Verilated accelerator; returns its counters and timings."""
    with tempfile.TemporaryDirectory() as tmp:
        prog_path, dram_path = Path(tmp) / "p.bin", Path(tmp) / "d.dram"
        prog_path.write_bytes(program.to_bytes(cfg))
        image.check_config(cfg)
        DramImage(image.data, dict(image.regions), cfg.stamp).save(dram_path)
        params = {"config": cfg.to_dict(), "seed": 1, "backpressure": backpressure,
                  "program": str(prog_path), "dram": str(dram_path), "max_cycles": max_cycles}
        t0 = time.perf_counter()
        res = run_cocotb(
            sources=[write_rtl(cfg, VERILOG_DIR)],
            toplevel=TOPS["accelerator"],
            test_module="tb.accelerator_tb",
            name=cfg.artifact_stem(TOPS["accelerator"]),
            env={"NMX_TB_PARAMS": json.dumps(params, sort_keys=True)},
            testcase="directed_program",
            timeout_s=6 * 3600,
        )
        wall = time.perf_counter() - t0
    counters = json.loads((res.results_file.parent / "counters.json").read_text())
    timing = json.loads((res.results_file.parent / "timing.json").read_text())
    return {"counters": counters, "run_seconds": timing["run_seconds"], "wall_seconds": wall}


def utilisation(cfg: AcceleratorConfig, counters: dict) -> float:
    """Array MACs / (R*C*CYCLES)."""
    return counters["ARRAY_MACS"] / (cfg.peak_macs_per_cycle * counters["CYCLES"])


def _stalls(counters: dict) -> str:
    keys = [k for k in counters if k.startswith(("STALL_", "BUSY_"))]
    return ", ".join(f"{k.lower()} {counters[k]}" for k in keys)


def gemm256_program(cfg: AcceleratorConfig, table: numeric.PwlTable | None = None,
                    a_layout: str = "rows"):
    """``nmx bench gemm``'s 256^3 program; ``table`` replaces the identity in its EPIs;
    ``a_layout`` as :func:`nmx.commands.bench.tiled_gemm`'s."""
    from nmx.commands.bench import tiled_gemm

    program, image, _ = tiled_gemm(cfg, 256, 256, 256, 64, a_layout=a_layout)
    if table is not None:
        at = image.regions["identity"].addr
        blob = np.frombuffer(encode_pwl_table(table, cfg.pwl_segments), dtype=np.uint8)
        image.data[at:at + blob.size] = blob
    return program, image


def gemm512_program(cfg: AcceleratorConfig):
    """The compiler back end's 512^3 GEMM bundle (scripts/bench_backend.py gemm) and image."""
    import torch

    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import bench_backend

    captured = {}
    original = bench_backend._figures

    def keep(label, bundle, res, seconds, float_macs=None):
        captured["bundle"] = bundle
        return original(label, bundle, res, seconds, float_macs)

    bench_backend._figures = keep
    try:
        bench_backend.bench_gemm(cfg, 512)
    finally:
        bench_backend._figures = original
    bundle = captured["bundle"]
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (1, 512, 512))
    q = bundle.quantize_inputs([torch.from_numpy(x)]) if hasattr(
        bundle, "quantize_inputs") else {"x": x.astype(np.int8)}
    return bundle.program, bundle.image_for(q)


def stream_program(cfg: AcceleratorConfig, pairs: int = 64, m: int = 64, k_tiles: int = 4,
                   segments: int | None = None, seed: int = 0):
    """``pairs`` GEMM + EPI pairs on two alternating accumulator buffers (operands and weights
    loaded once): the EPI of one buffer runs while the GEMM of the other streams.

    The two accumulator buffers lie in different accumulator halves and the weights in another
    scratchpad bank than the operands, as an allocator must place them (hw/accumulator.py,
    docs/isa.md "Memory spaces"): every bank serves one read per cycle, so an EPI reading the
    half that the next GEMM accumulates into waits for that GEMM's reads, and a GEMM whose
    weights share its operands' bank reads ``k*m + k*R`` rows through one port in ``k*m``
    array cycles.
    """
    R, C = cfg.rows, cfg.cols
    bank = cfg.scratchpad_rows // cfg.scratchpad_banks
    half = cfg.accumulator_rows // 2
    rng = np.random.default_rng(seed)
    a_rows, w_rows = k_tiles * m, k_tiles * R
    w_at = bank if cfg.scratchpad_banks > 1 else a_rows + 2 * m
    if max(a_rows + 2 * m, w_rows) > bank and cfg.scratchpad_banks > 1:
        raise ValueError(f"m={m}, k_tiles={k_tiles}: operands and outputs do not fit one "
                         f"scratchpad bank of {bank} rows")
    spad = rng.integers(-128, 128, ((a_rows + w_rows) * cfg.lanes,), dtype=np.int8)
    mult, shift = numeric.quantize_multiplier(1 / 512)
    s = cfg.pwl_segments
    table = numeric.PwlTable.identity() if segments is None else _random_table(rng, segments)
    entries = encode_bias_entries([0] * C, [mult] * C, [shift] * C)
    t_at = spad.size
    e_at = t_at + pwl_table_bytes(s)
    img = DramImage.zeros(e_at + len(entries), cfg)
    img.add("spad", 0, spad)
    img.add("table", t_at, np.frombuffer(encode_pwl_table(table, s), dtype=np.uint8))
    img.add("scales", e_at, np.frombuffer(entries, dtype=np.uint8))
    prog = [
        Dmacfg(slot=0, height=1, width=a_rows + w_rows, pitch=0, pix=cfg.lanes, sy=0, sx=1),
        Load(geom=0, dst=0, outer=1, inner=a_rows, length=cfg.lanes),
        Load(geom=0, dst=w_at, outer=1, inner=w_rows, x0=a_rows, length=cfg.lanes),
        Loadt(kind=TableKind.PWL, dst=0, count=1, offset=t_at),
        Loadt(kind=TableKind.BIAS, dst=0, count=C, offset=e_at, push_next=True),
    ]
    out0 = a_rows
    for i in range(pairs):
        buf = i % 2
        prog.append(Gemm(w=w_at, a=0, acc=buf * half, m=m, k_tiles=k_tiles, n_tiles=1,
                         pop_prev=i == 0))
        prog.append(Epi(src=buf * half, dst=out0 + buf * m, dest=EpiDest.SPAD, m=m, n_tiles=1))
    prog.append(Halt())
    return Program(prog), img


def _random_table(rng, segments: int) -> numeric.PwlTable:
    bp = np.sort(rng.integers(-(2**20), 2**20, segments - 1))
    return numeric.PwlTable(tuple(int(v) for v in bp),
                            tuple(int(v) for v in rng.integers(-(2**12), 2**12, segments)),
                            tuple(int(v) for v in rng.integers(-(2**20), 2**20, segments)), 12)


def _report(label: str, cfg: AcceleratorConfig, r: dict) -> dict:
    c = r["counters"]
    u = utilisation(cfg, c)
    print(f"{label}: {c['CYCLES']} cycles, {c['ARRAY_MACS']} MACs, array MACs/(R*C*cycles) "
          f"{100 * u:.2f} %; {c['CYCLES'] / r['run_seconds']:.0f} cycles/s under cocotb")
    print(f"    {_stalls(c)}")
    return {"benchmark": label, "config": f"{cfg.rows}x{cfg.cols}", "cycles": c["CYCLES"],
            "array_macs": c["ARRAY_MACS"], "utilisation": round(u, 4),
            "cycles_per_s": round(c["CYCLES"] / r["run_seconds"]), "counters": c}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", nargs="*",
                   default=["gemm256", "gemm256t", "pwl", "stream", "gemm512", "speed"],
                   choices=["gemm256", "gemm256t", "gemm512", "pwl", "stream", "speed"])
    p.add_argument("--json", help="append the figures as JSON lines to this file")
    args = p.parse_args(argv)
    cfg = preset("default")
    figures = []
    if "gemm256" in args.what or "pwl" in args.what:
        base = _report("gemm 256^3 (nmx bench gemm), identity EPI", cfg,
                       run_on_rtl(cfg, *gemm256_program(cfg)))
        figures.append(base)
    if "gemm256t" in args.what:
        figures.append(_report("gemm 256^3, A stored as column tiles", cfg,
                               run_on_rtl(cfg, *gemm256_program(cfg, a_layout="tiles"))))
    if "pwl" in args.what:
        table = _random_table(np.random.default_rng(1), cfg.pwl_segments)
        pwl = _report(f"gemm 256^3, {cfg.pwl_segments}-segment PWL EPI", cfg,
                      run_on_rtl(cfg, *gemm256_program(cfg, table)))
        over = pwl["cycles"] / base["cycles"] - 1
        print(f"    PWL epilogue vs identity: {100 * over:+.3f} % cycles")
        pwl["overhead_vs_identity"] = round(over, 5)
        figures.append(pwl)
    if "stream" in args.what:
        figures.append(_report("stream of 64 GEMM+EPI pairs (m=64, k_tiles=4, 64-seg PWL)", cfg,
                               run_on_rtl(cfg, *stream_program(cfg, segments=64))))
    if "gemm512" in args.what:
        figures.append(_report("gemm 512^3 (compiler bundle)", cfg,
                               run_on_rtl(cfg, *gemm512_program(cfg))))
    if "speed" in args.what:
        for name in ("tiny", "default"):
            c = preset(name)
            r = run_on_rtl(c, *stream_program(c, pairs=64, m=64, k_tiles=4))
            figures.append(_report(f"speed: GEMM+EPI stream on {name}", c, r))
    if args.json:
        with open(args.json, "a") as f:
            for fig in figures:
                f.write(json.dumps(fig) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
