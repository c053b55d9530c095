"""Build the DRAM image and the references for ``examples/mlp.nmasm``.

The network is ``probs = softmax(gelu(x @ W1 + b1) @ W2 + b2)`` with random float weights (seeded).
This script quantises it (int8 operands, per-output-channel weight scales, int32 biases), fits the
PWL tables with :func:`compiler.pwl.fit_pwl`, lays everything out at the addresses that
``mlp.nmasm`` declares with ``.equ`` (read from that file, the single source of the layout), and
writes:

- ``mlp.dram``: the DRAM image (``sim/dram_image.py`` format; region ``probs`` is the output);
- ``mlp_ref.npz``: ``probs_float`` (float64 PyTorch), ``probs_int`` (int8, the integer-exact
  reference computed with :mod:`hw.numeric`, which the golden model must equal bit for bit) and
  ``out_scale`` (1/127);
- ``probs_int8.npy``: ``probs_int`` alone, for ``nmx run-golden --expect``.

Usage::

    python examples/build_mlp_image.py --out build/mlp
    nmx asm examples/mlp.nmasm -o build/mlp/mlp.bin
    nmx run-golden build/mlp/mlp.bin --dram build/mlp/mlp.dram --show probs:int8:16 \
        --expect probs=build/mlp/probs_int8.npy
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from compiler.pwl import fit_pwl
from hw import numeric
from hw.assembler import read_equates
from hw.config import AcceleratorConfig
from hw.errors import NmxError
from hw.isa import encode_bias_entries, encode_pwl_table
from sim.dram_image import DramImage

ASM = Path(__file__).with_name("mlp.nmasm")
#: Fixed-point scale of the PWL inputs (GELU's and exp's): 2**-10 per step.
PWL_IN_SCALE = 2.0**-10
#: The int8 exp table outputs 64 exp(x) (scale 1/64), leaving headroom above exp(0).
EXP_ONE = 64
#: Steps per unit of the int8 logits used for the row maximum (scale 1/8).
Z_STEPS = 8
#: Range over which the reciprocal is fitted: row sums of e (from 64 exp(-0.5) to 16 * 64).
RECIP_RANGE = (16.0, 1024.0)


@dataclass
class MlpExample:
    """Everything the example needs: the image, the references and the quantisation choices."""

    image: DramImage
    probs_float: np.ndarray
    probs_int: np.ndarray
    out_scale: float
    tables: dict[str, numeric.PwlTable]


def float_model(seed: int, batch: int, din: int, hid: int, dout: int):
    """Random float weights and input, and the float64 PyTorch forward pass."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, din, generator=g, dtype=torch.float64)
    w1 = torch.randn(din, hid, generator=g, dtype=torch.float64) * 0.4
    b1 = torch.randn(hid, generator=g, dtype=torch.float64) * 0.2
    w2 = torch.randn(hid, dout, generator=g, dtype=torch.float64) * 0.5
    b2 = torch.randn(dout, generator=g, dtype=torch.float64) * 0.2
    h_pre = x @ w1 + b1
    z = torch.nn.functional.gelu(h_pre) @ w2 + b2
    probs = torch.softmax(z, dim=-1)
    return {k: v.numpy() for k, v in dict(x=x, w1=w1, b1=b1, w2=w2, b2=b2, h_pre=h_pre, z=z,
                                          probs=probs).items()}


def _q8(a: np.ndarray, scale) -> np.ndarray:
    return np.clip(np.rint(a / scale), -127, 127).astype(np.int8)


def _constant_blocks(sub_weight: int) -> np.ndarray:
    """The 15 constant 16 x 16 int8 weight blocks, in the order mlp.nmasm expects."""
    diff, comb = [], []
    two_i = 2 * np.eye(16, dtype=np.int8)
    for level in range(4):
        half = 16 >> (level + 1)
        d = np.zeros((16, 16), np.int8)
        sel = np.zeros((16, 16), np.int8)
        for c in range(half):
            d[c, c], d[c + half, c] = 1, -1
            sel[c + half, c] = 1
        diff.append(d)
        comb += [sel, two_i]
    sub = np.zeros((16, 16), np.int8)
    sub[0] = sub_weight
    ones, ident = np.ones((16, 16), np.int8), np.eye(16, dtype=np.int8)
    return np.concatenate([*diff, *comb, ones, ident, sub])


def _multipliers(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pairs = [numeric.quantize_multiplier(float(s)) for s in scales]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def build(seed: int = 0, config: AcceleratorConfig | None = None) -> MlpExample:
    """Quantise the seeded MLP and lay out its DRAM image for ``mlp.nmasm``."""
    cfg = config or AcceleratorConfig()
    if (cfg.rows, cfg.cols) != (16, 16):
        raise NmxError(
            f"mlp.nmasm is laid out for a 16x16 array; config {cfg.fingerprint} is "
            f"{cfg.rows}x{cfg.cols}"
        )
    eq = read_equates(ASM)
    batch, din, hid, dout = eq["BATCH"], eq["DIN"], eq["HID"], eq["DOUT"]
    f = float_model(seed, batch, din, hid, dout)

    # layer 1: int8 x (per tensor) and W1 (per output column), int32 bias
    s_x = np.abs(f["x"]).max() / 127
    s_w1 = np.abs(f["w1"]).max(axis=0) / 127
    xq, w1q = _q8(f["x"], s_x), _q8(f["w1"], s_w1)
    b1q = np.rint(f["b1"] / (s_x * s_w1)).astype(np.int64)
    m1, sh1 = _multipliers(s_x * s_w1 / PWL_IN_SCALE)
    s_h = np.abs(torch.nn.functional.gelu(torch.from_numpy(f["h_pre"])).numpy()).max() / 127
    gelu = fit_pwl("gelu", -8.0, 8.0, segments=32, in_scale=PWL_IN_SCALE, out_scale=s_h,
                   out_bits=8, max_segments=cfg.pwl_segments).table

    # layer 2: the logits go out twice, as int8 in steps of 1/8 (for the row maximum) and as
    # int32 fixed point in steps of PWL_IN_SCALE (for exp)
    if np.abs(f["z"]).max() * Z_STEPS >= 127:
        raise ValueError(f"logits reach {np.abs(f['z']).max():.2f}; the example needs |z| < 15.8")
    s_w2 = np.abs(f["w2"]).max(axis=0) / 127
    w2q = _q8(f["w2"], s_w2)
    b2q = np.rint(f["b2"] / (s_h * s_w2)).astype(np.int64)
    m2, sh2 = _multipliers(s_h * s_w2 * Z_STEPS)
    m2f, sh2f = _multipliers(s_h * s_w2 / PWL_IN_SCALE)
    segs = cfg.pwl_segments
    ident, relu = numeric.PwlTable.identity(), numeric.PwlTable.relu()
    # int8 e = 64 exp(x) (scale 1/64): headroom for inputs up to the max's overestimate (+0.5)
    exp = fit_pwl("exp", -8.0, 0.6, segments=32, in_scale=PWL_IN_SCALE, out_scale=1 / EXP_ONE,
                  out_bits=8, max_segments=segs).table
    # per-row multiplier M with M / 2**ROW_SHIFT = 127 / S: round_shift(e * M, ROW_SHIFT) is the
    # probability e / S in steps of 1/127
    row_shift = eq["ROW_SHIFT"]
    recip = fit_pwl("reciprocal", *RECIP_RANGE, segments=segs, in_scale=1.0,
                    out_scale=1.0 / (127 * 2**row_shift), out_bits=32, max_segments=segs).table
    tables = {"gelu": gelu, "exp": exp, "reciprocal": recip, "identity": ident, "relu": relu}
    order = ("gelu", "exp", "reciprocal", "identity", "relu")
    if [eq[f"F_{n[:5].upper()}"] for n in order] != list(range(len(order))):
        raise AssertionError("function indices disagree with mlp.nmasm")
    sub_weight = -round(1 / (Z_STEPS * PWL_IN_SCALE))  # m (steps of 1/8) in 2**-10 units
    half = numeric.quantize_multiplier(0.5)

    # integer-exact reference, with hw.numeric only (the golden model must equal it)
    acc1 = xq.astype(np.int64) @ w1q + b1q
    h = numeric.epilogue(acc1, m1, sh1, gelu, 8)
    acc2 = h @ w2q.astype(np.int64) + b2q
    v = numeric.epilogue(acc2, m2, sh2, ident, 8)
    zf = numeric.epilogue(acc2, m2f, sh2f, ident, 32)
    n = dout
    while n > 1:  # max(a, b) = b + 2 relu(round_half_up((a - b) / 2))
        a, b = v[:, : n // 2], v[:, n // 2 : n]
        r = numeric.epilogue(a - b, *half, relu, 8)
        v = numeric.epilogue(b + 2 * r, 1, 0, ident, 8)
        n //= 2
    zf = numeric.wrap(zf + v[:, :1] * sub_weight, numeric.ACC_BITS)
    e = numeric.epilogue(zf, 1, 0, exp, 8)
    row_mult = numeric.epilogue(e.sum(axis=1), 1, 0, recip, numeric.SCALE_BITS)
    probs_int = numeric.epilogue(e, row_mult[:, None], row_shift, ident, 8).astype(np.int8)

    img = DramImage.zeros(eq["DRAM_SIZE"], cfg)
    img.add("x", eq["X_ADDR"], xq)
    img.add("w1", eq["W1_ADDR"], w1q)
    img.add("w2", eq["W2_ADDR"], w2q)
    const = _constant_blocks(sub_weight)
    if const.shape[0] != 16 * eq["N_CONST"]:
        raise AssertionError("constant block count disagrees with mlp.nmasm's N_CONST")
    img.add("ones_identity", eq["CONST_ADDR"], const)
    z16 = np.zeros(16, np.int64)
    entries = encode_bias_entries(
        np.concatenate([b1q, b2q, z16, z16, z16]),
        np.concatenate([m1, m2, m2f, z16 + 1, z16 + half[0]]),
        np.concatenate([sh1, sh2, sh2f, z16, z16 + half[1]]),
    )
    if len(entries) != 8 * eq["BIAS_COUNT"]:
        raise AssertionError("bias entry count disagrees with mlp.nmasm's BIAS_COUNT")
    img.add("bias_scale", eq["BIAS_ADDR"], entries)
    blob = b"".join(encode_pwl_table(tables[name], cfg.pwl_segments) for name in order)
    img.add("pwl_tables", eq["PWL_ADDR"], blob)
    img.reserve("probs", eq["OUT_ADDR"], batch * dout)
    return MlpExample(img, f["probs"], probs_int, 1.0 / 127, tables)


def main(argv: list[str] | None = None) -> int:
    """Write ``mlp.dram`` and ``mlp_ref.npz`` into ``--out``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="build/mlp", help="output folder (default: build/mlp)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ex = build(args.seed)
    ex.image.save(out / "mlp.dram")
    np.savez(out / "mlp_ref.npz", probs_float=ex.probs_float, probs_int=ex.probs_int,
             out_scale=ex.out_scale)
    np.save(out / "probs_int8.npy", ex.probs_int)
    err = np.abs(ex.probs_int / 127 - ex.probs_float).max()
    print(f"wrote {out / 'mlp.dram'} ({ex.image.size} bytes), {out / 'mlp_ref.npz'} and "
          f"{out / 'probs_int8.npy'}; integer reference vs PyTorch: max |dp| = {err:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
