"""``nmx bench``: golden-model speed and cycle-model figures.

``nmx bench golden`` times the golden model (M MAC/s, one core) on a stream of GEMM instructions;
``nmx bench gemm`` builds a tiled, double-buffered int8 GEMM program (load, compute and store
overlapped through dependency tokens), checks its result against NumPy, and reports the golden
model's speed and the cycle model's total cycles, stalls and PE utilisation.
"""

from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits

from hw import numeric
from hw.config import AcceleratorConfig
from hw.errors import NmxError
from hw.isa import (
    Dmacfg,
    Epi,
    EpiDest,
    Gemm,
    GemmMode,
    Halt,
    Load,
    Loadt,
    Program,
    Store,
    TableKind,
    encode_bias_entries,
    encode_pwl_table,
    pwl_table_bytes,
)
from nmx.commands.rtl import add_config_arguments, config_from_args
from sim.cycle_model import estimate_cycles
from sim.dram_image import DramImage
from sim.golden import GoldenModel


def add_arguments(parser) -> None:
    """Register the command's arguments."""
    parser.add_argument("what", choices=["golden", "gemm"], help="benchmark to run")
    add_config_arguments(parser)
    parser.add_argument("--m", type=int, default=64, help="operand rows per GEMM (default 64)")
    parser.add_argument(
        "--blocks", type=int, default=1, help="k_tiles = n_tiles per GEMM instruction (default 1)"
    )
    parser.add_argument("--instructions", type=int, default=2000, help="GEMM instructions")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    parser.add_argument(
        "--shape", default="256x256x256", metavar="MxKxN", help="bench gemm: matrix shape"
    )


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if v < 1:
            raise NmxError(f"--{name} must be >= 1, got {v}")


def _best_run(cfg: AcceleratorConfig, program: Program, img: DramImage, repeat: int):
    """Run ``program`` ``repeat`` times on one core; return the last result and the best time."""
    model = GoldenModel(cfg)
    best = float("inf")
    with threadpool_limits(limits=1):  # one core: BLAS may not spread the matmuls
        for _ in range(repeat):
            t0 = time.perf_counter()
            res = model.run(program, img).raise_for_status()
            best = min(best, time.perf_counter() - t0)
    return res, best


def bench_golden(
    cfg: AcceleratorConfig, *, m: int, blocks: int, instructions: int, repeat: int = 3
) -> dict[str, float]:
    """Time a program of ``instructions`` GEMMs (``blocks`` x ``blocks`` weight blocks each).

    The GEMMs write distinct accumulator tiles (distinct words, each decoded), after one LOAD
    that fills the scratchpad; the time covers the whole run (decode, hazard checks, trace).

    Returns the best of ``repeat`` runs: seconds, MACs, M MAC/s and instructions per second.
    """
    _check_positive(m=m, blocks=blocks, instructions=instructions, repeat=repeat)
    R = cfg.rows
    k = n = blocks
    rng = np.random.default_rng(0)
    a_rows, w_rows = k * m, n * k * R
    if a_rows + w_rows > cfg.scratchpad_rows or n * m > cfg.accumulator_rows or m > 4095:
        raise NmxError(
            f"--m {m}, --blocks {blocks}: {a_rows} operand + {w_rows} weight rows and "
            f"{n * m} accumulator rows do not fit the {cfg.rows}x{cfg.cols} config "
            f"({cfg.scratchpad_rows} scratchpad, {cfg.accumulator_rows} accumulator rows; "
            "m <= 4095)"
        )
    lanes = cfg.lanes
    img = DramImage.zeros((a_rows + w_rows) * lanes)
    img.add("spad", 0, rng.integers(-128, 128, (a_rows + w_rows) * lanes, dtype=np.int8))
    prog = [
        Dmacfg(slot=0, height=1, width=a_rows + w_rows, pitch=0, pix=lanes, sy=0, sx=1),
        Load(geom=0, dst=0, outer=1, inner=a_rows + w_rows, length=lanes, push_next=True),
    ]
    slots = cfg.accumulator_rows // (n * m)  # output tiles cycle through the accumulator
    for i in range(instructions):
        prog.append(
            Gemm(
                mode=GemmMode.OVERWRITE if i < slots else GemmMode.ACCUMULATE,
                w=a_rows,
                a=0,
                acc=(i % slots) * n * m,
                m=m,
                k_tiles=k,
                n_tiles=n,
                pop_prev=i == 0,
            )
        )
    prog.append(Halt())
    program = Program(prog)
    res, best = _best_run(cfg, program, img, repeat)
    macs = res.macs
    return {
        "seconds": best,
        "macs": macs,
        "mmacs_per_s": macs / best / 1e6,
        "instr_per_s": len(program) / best,
    }


#: Fewest array cycles a group of the last block's GEMM streams (``m * k_tiles`` per column tile)
#: when :func:`tiled_gemm` splits that block: shorter groups cost more than they hide.
TAIL_GROUP_CYCLES = 2048


def _place(cfg: AcceleratorConfig, sizes: list[int]) -> list[int]:
    """First scratchpad row of each region of ``sizes`` rows, in order: each starts a bank of its
    own while the regions after it still fit, else it follows the previous one."""
    bank = cfg.scratchpad_rows // cfg.scratchpad_banks
    starts, at = [], 0
    for i, n in enumerate(sizes):
        aligned = -(-at // bank) * bank
        if aligned + sum(sizes[i:]) <= cfg.scratchpad_rows:
            at = aligned
        starts.append(at)
        at += n
    return starts


def tiled_gemm(cfg: AcceleratorConfig, M: int, K: int, N: int, m: int, seed: int = 0,
               a_layout: str = "rows", tail_groups: int = 8):
    """A double-buffered GEMM program ``int8(requant(A @ B))`` and its DRAM image and expectation.

    ``A`` (M x K, row-major in DRAM) streams through two scratchpad buffers of ``m`` rows;
    ``B`` (K x N) stays resident; each block of ``m`` rows of ``A`` is one GEMM over all ``K/rows
    x N/cols`` weight blocks, one EPI (scale 1/256, identity table) into one of two output
    buffers, and one STORE (row-major ``M x N``). ``B`` is a constant, stored the way its LOADs
    read it (as a compiler stores weights): column tile ``u`` (``K x cols``) after column tile
    ``u - 1``, each one contiguous run that the load unit reads in 4 KiB bursts.

    The schedule keeps the array busy from the first block to the last:

    * start: the first block of ``A`` loads first, then ``B`` one column tile at a time, and the
      first block's GEMM is one GEMM per column tile, each waiting (one token) for its own tile
      only, so the array starts after that block and one tile of ``B``, not all of ``B``; the
      tables load after ``B`` (a token orders them before the first EPI);
    * placement: ``B``, the operand buffers and the output buffers start scratchpad banks of
      their own where they fit (a bank has one read port: a STORE reading the bank the next GEMM
      streams its operands from slows that GEMM), and the two accumulator buffers lie in
      different accumulator halves (an EPI gets its half's read port only in cycles the next
      GEMM's read-modify-write leaves free);
    * end: the last block's GEMM, EPI and STORE are split into up to ``tail_groups`` groups of
      column tiles (each group's GEMM at least :data:`TAIL_GROUP_CYCLES` array cycles), in the
      two accumulator buffers in turn (the other one is free once the previous block's EPI,
      earlier in the compute unit's queue, has read it), so each group's EPI and STORE overlap
      the next group's GEMM and only the last group's follow the last GEMM.

    ``a_layout="tiles"`` stores ``A`` as its ``K/rows`` column tiles (``M x rows`` each, one
    after the other), the layout a producing STORE with ``tiles`` writes: each block's rows of a
    tile are then one contiguous run. Returns ``(program, image, expected int8 M x N)``.
    """
    if a_layout not in ("rows", "tiles"):
        raise ValueError(f"a_layout = {a_layout!r}: must be 'rows' or 'tiles'")
    if tail_groups < 1:
        raise ValueError(f"tail_groups = {tail_groups}: must be >= 1")
    R, C = cfg.rows, cfg.cols
    if M % m or K % R or N % C or R != C:
        raise ValueError(f"shape {M}x{K}x{N} / m={m} must tile the {R}x{C} array (rows = cols)")
    kt, nt, blocks = K // R, N // C, M // m
    w_rows, a_rows, o_rows = kt * nt * R, kt * m, nt * m
    if w_rows + 2 * a_rows + 2 * o_rows > cfg.scratchpad_rows or 2 * o_rows > cfg.accumulator_rows:
        raise ValueError(f"shape {M}x{K}x{N} with m={m} does not fit the on-chip memories")
    if nt * C > cfg.bias_entries or max(M, K) >= 1 << 13:
        raise ValueError(f"shape {M}x{K}x{N} exceeds the bias SRAM or the DMA coordinates")
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (M, K), dtype=np.int8)
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    mult, shift = numeric.quantize_multiplier(1 / 256)
    table = numeric.PwlTable.identity()
    A_AT, B_AT = 0, M * K
    E_AT = B_AT + K * N
    T_AT = E_AT + 8 * nt * C
    O_AT = T_AT + pwl_table_bytes(cfg.pwl_segments)
    img = DramImage.zeros(O_AT + M * N)
    if a_layout == "tiles":
        img.add("a", A_AT, np.ascontiguousarray(a.reshape(M, kt, R).transpose(1, 0, 2)))
        a_geom = Dmacfg(slot=1, height=kt, width=M, pitch=M * R, pix=R, sy=1, sx=1)
    else:
        img.add("a", A_AT, a)
        a_geom = Dmacfg(slot=1, height=kt, width=M, pitch=R, pix=K, sy=1, sx=1)
    b_tiles = np.ascontiguousarray(b.reshape(K, nt, C).transpose(1, 0, 2))  # [u, k, c]
    img.add("b", B_AT, b_tiles)
    img.add(
        "scales", E_AT, encode_bias_entries([0] * (nt * C), [mult] * (nt * C), [shift] * (nt * C))
    )
    img.add("identity", T_AT, encode_pwl_table(table, cfg.pwl_segments))
    img.reserve("out", O_AT, M * N)
    sp_w, sp_a, sp_o = _place(cfg, [w_rows, 2 * a_rows, 2 * o_rows])
    acc_buf = max(o_rows, cfg.accumulator_rows // 2)  # first accumulator row of buffer 1
    prog = [
        Dmacfg(slot=0, height=nt, width=K, pitch=K * C, pix=C, sy=1, sx=1),
        a_geom,
    ]
    for i in range(blocks):
        buf, last = i % 2, i == blocks - 1
        sa, so = sp_a + buf * a_rows, sp_o + buf * o_rows
        # column tiles per group: each group's GEMM streams at least TAIL_GROUP_CYCLES
        g = max(-(-nt // tail_groups), -(-TAIL_GROUP_CYCLES // (m * kt))) if last else nt
        starts = range(0, nt, g)

        def acc(u, buf=buf, g=g):  # accumulator row of the block's column tile u
            return (buf + u // g) % 2 * acc_buf + u * m

        load_a = Load(geom=1, offset=A_AT, dst=sa, outer=kt, inner=m, x0=i * m, length=R,
                      pop_next=i >= 2, push_next=i > 0)
        if i == 0:
            prog.append(load_a)
            for u in range(nt):
                prog += [
                    Load(geom=0, offset=B_AT, dst=sp_w + u * K, outer=1, inner=K, y0=u,
                         length=C, push_next=True),
                    Gemm(w=sp_w + u * K, a=sa, acc=acc(u), m=m, k_tiles=kt, n_tiles=1,
                         pop_prev=True, push_prev=u == nt - 1),
                ]
            prog += [
                Loadt(kind=TableKind.BIAS, dst=0, count=nt * C, offset=E_AT),
                Loadt(kind=TableKind.PWL, dst=0, count=1, offset=T_AT, push_next=True),
            ]
        else:
            prog.append(load_a)
        for u0 in starts:
            n, first, final = min(g, nt - u0), u0 == 0, u0 == starts[-1]
            if i > 0:
                prog.append(Gemm(w=sp_w + u0 * K, a=sa, acc=acc(u0), m=m, k_tiles=kt, n_tiles=n,
                                 pop_prev=first, push_prev=final))
            prog += [
                Epi(src=acc(u0), dst=so + u0 * m, dest=EpiDest.SPAD, m=m, n_tiles=n,
                    scale=u0 * C, pop_prev=i == 0 and first, pop_next=i >= 2 and first,
                    push_next=True),
                Store(src=so + u0 * m, rows=m, tiles=n, offset=O_AT + i * m * N + u0 * C,
                      stride=N, length=C, pop_prev=True, push_prev=final),
            ]
    prog.append(Halt())
    out = a.astype(np.int64) @ b.astype(np.int64)
    expected = numeric.epilogue(out, mult, shift, table, 8).astype(np.int8)
    return Program(prog), img, expected


def bench_gemm(cfg: AcceleratorConfig, shape: str, m: int, repeat: int = 3) -> dict:
    """Run :func:`tiled_gemm`, check it, and return speed and cycle-model figures."""
    _check_positive(m=m, repeat=repeat)
    try:
        M, K, N = (int(v) for v in shape.lower().split("x"))
    except ValueError:
        raise NmxError(f"--shape {shape!r}: expected MxKxN, e.g. 256x256x256") from None
    if min(M, K, N) < 1:
        raise NmxError(f"--shape {shape!r}: every dimension must be >= 1")
    try:
        program, img, expected = tiled_gemm(cfg, M, K, N, m)
    except ValueError as e:
        raise NmxError(str(e)) from None
    res, best = _best_run(cfg, program, img, repeat)
    out = res.dram.read("out", np.int8, (M, N))
    if not np.array_equal(out, expected):
        raise AssertionError("tiled GEMM result differs from NumPy")
    report = estimate_cycles(res.trace, cfg)
    return {
        "seconds": best,
        "macs": res.macs,
        "mmacs_per_s": res.macs / best / 1e6,
        "instructions": len(program),
        "report": report,
    }


def run(args) -> int:
    """Run the chosen benchmark and print its figures."""
    cfg = config_from_args(args)
    if args.what == "gemm":
        r = bench_gemm(cfg, args.shape, args.m, args.repeat)
        print(
            f"tiled GEMM {args.shape} (m={args.m}) on {cfg.rows}x{cfg.cols}: "
            f"{r['instructions']} instructions, result equals NumPy; golden model "
            f"{r['seconds'] * 1e3:.1f} ms = {r['mmacs_per_s']:.1f} M MAC/s (one core)"
        )
        print(r["report"].summary())
        return 0
    r = bench_golden(
        cfg, m=args.m, blocks=args.blocks, instructions=args.instructions, repeat=args.repeat
    )
    print(
        f"golden model, {cfg.rows}x{cfg.cols} tiles, m={args.m}, {args.blocks}x{args.blocks} "
        f"blocks/GEMM, {args.instructions} GEMMs: {r['macs'] / 1e6:.1f} M MAC in "
        f"{r['seconds'] * 1e3:.1f} ms = {r['mmacs_per_s']:.1f} M MAC/s "
        f"({r['instr_per_s']:.0f} instructions/s, one core)"
    )
    return 0
