"""Calibrate sim/cycle_model.py on the RTL's own cycle counters, and print the model's error.

    python scripts/calibrate_cycle_model.py [--random 60] [--seed 5] [--latency 60]
                                            [--reuse] [--write] [--no-fit]

Runs every program on the Verilated accelerator through the C++ fast path
(:class:`sim.rtl_harness.VerilatorTransport`, DRAM read and write latency ``--latency``
cycles, no pauses: the memory ``nmx sim`` simulates) and reads total cycles from the ``CYCLES``
counter:

* directed programs (:func:`directed_programs`: one LOAD of n rows, one STORE, one GEMM, GEMM
  pairs, GEMM + EPI, on ``tiny`` and ``default``) that isolate each unit's cost;
* ``nmx bench gemm``'s 256x256x256 program, examples/mlp.nmasm, the compiler's 512^3 GEMM
  bundle and ``bench_rtl_counters.py stream`` (``default``);
* ``--random`` valid random programs of tb/random_programs.py on ``tiny`` and as many on
  ``default`` (seed ``--seed``);
* with ``--networks``, zoo models on ``default``: the whole program and each node's program
  (held out: they check the fit, they are not fitted on).

It fits the constants of :class:`sim.cycle_model.CycleParams` that the RTL's structure does not
fix (coordinate descent on the squared relative error; ``dram_latency`` is the memory's and is
not fitted), prints the error distribution of the current and of the fitted constants per group,
and with ``--write`` stores the fit in ``sim/cycle_calibration.json`` (the model's defaults come
from there) with the per-program figures that ``tests/test_cycle_calibration.py`` checks.
Measurements are cached in ``build/cycle_calibration_measurements.json`` (``--reuse`` refits
from them without the RTL). Re-run it (``make calibrate``) after an RTL change that moves
timing: the constants are measured, never assumed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import pickle
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hw import numeric  # noqa: E402
from hw.assembler import assemble_file  # noqa: E402
from hw.config import AcceleratorConfig, preset  # noqa: E402
from hw.isa import (  # noqa: E402
    Dmacfg,
    Epi,
    EpiDest,
    Gemm,
    GemmMode,
    Halt,
    Load,
    Loadt,
    MemSpace,
    Program,
    Store,
    Sync,
    SyncTarget,
    TableKind,
    encode_bias_entries,
    encode_pwl_table,
)
from sim.cycle_model import CALIBRATION_FILE, CycleParams, estimate_cycles  # noqa: E402
from sim.dram_image import DramImage  # noqa: E402
from sim.golden import GoldenModel  # noqa: E402

MEASUREMENTS = ROOT / "build" / "cycle_calibration_measurements.json"
NETWORK_TRACES = ROOT / "build" / "cycle_calibration_network_traces.pickle"

#: Constants the fit moves, with their search ranges.
RANGES = {
    "fetch_start": range(0, 6), "decode_cycles": range(0, 5), "queue_cycles": range(0, 5),
    "end_cycles": range(0, 8), "unit_cycles": range(2, 7), "load_start": range(0, 12),
    "load_row_gap": range(1, 4), "load_ar": range(0, 10),
    "load_row_done": range(0, 12), "load_pad_done": range(0, 20),
    "load_end": range(0, 6), "loadt_start": range(0, 12), "loadt_end": range(0, 8),
    "store_start": range(0, 10), "store_row_gap": range(0, 4), "store_w": range(0, 10),
    "store_end": range(0, 8), "store_bank_wait": range(0, 4), "gemm_store_wait": range(0, 3),
    "compute_issue_cycles": range(2, 7), "gemm_start": range(0, 10),
    "gemm_tail": range(0, 16), "gemm_block_extra": range(-2, 4), "gemm_overlap": range(0, 16),
    "epi_start": range(0, 16),
    "epi_tail": range(0, 40), "epi_bank_wait": range(0, 3), "retire_cycles": range(0, 8),
    "token_cycles": range(0, 4),
}

#: DRAM layout of the directed programs: data from 0, the PWL table and bias entries here.
TABLE_AT = 0x8000
IMAGE_BYTES = 1 << 16


def directed_image(cfg: AcceleratorConfig) -> DramImage:
    """Random bytes, an identity PWL table at :data:`TABLE_AT` and 64 bias entries after it."""
    img = DramImage.zeros(IMAGE_BYTES)
    img.data[:] = np.random.default_rng(0).integers(0, 256, IMAGE_BYTES, dtype=np.uint8)
    table = np.frombuffer(encode_pwl_table(numeric.PwlTable.identity(), cfg.pwl_segments),
                          np.uint8)
    img.data[TABLE_AT:TABLE_AT + table.size] = table
    mult, shift = numeric.quantize_multiplier(1 / 512)
    entries = np.frombuffer(encode_bias_entries([0] * 64, [mult] * 64, [shift] * 64), np.uint8)
    img.data[TABLE_AT + 2048:TABLE_AT + 2048 + entries.size] = entries
    return img


def directed_programs(cfg: AcceleratorConfig) -> dict[str, Program]:
    """Small programs that isolate one unit's cost each (all on :func:`directed_image`)."""
    L, C = cfg.lanes, cfg.cols

    def prog(*ins):
        return Program([*ins, Halt()])

    spad = Dmacfg(slot=0, height=1, width=4096, pitch=0, pix=L, sy=0, sx=1)
    acc = Dmacfg(slot=1, height=1, width=4096, pitch=0, pix=4 * C, sy=0, sx=1)
    gaps = Dmacfg(slot=2, height=1, width=4096, pitch=0, pix=2 * L, sy=0, sx=1)
    padded = Dmacfg(slot=3, height=4, width=8, pitch=8 * L, pix=L, sy=1, sx=1)
    out: dict[str, Program] = {"halt": prog(), "dmacfg x8": prog(*[spad] * 8),
                               "dmacfg x40": prog(*[spad] * 40)}
    for n in (1, 16, 64, 256):
        out[f"load spad {n}"] = prog(spad, Load(geom=0, inner=n, length=L))
        out[f"load spad gaps {n}"] = prog(gaps, Load(geom=2, inner=n, length=L))
        out[f"load acc {n}"] = prog(acc, Load(geom=1, mem=MemSpace.ACC, inner=n, length=C))
        out[f"load acc short {n}"] = prog(acc, Load(geom=1, mem=MemSpace.ACC, inner=n,
                                                    length=1))
    out["load padded 6x10"] = prog(padded, Load(geom=3, outer=6, inner=10, y0=-1, x0=-1,
                                                length=L))
    out["load spad 16 x8"] = prog(spad, *[Load(geom=0, dst=16 * i, inner=16, length=L)
                                          for i in range(8)])
    for pitch in (2 * L, 4 * L + 2):  # rows down an image: beat-aligned, and not
        rows = Dmacfg(slot=2, height=4095, width=L, pitch=pitch, pix=1, sy=1, sx=0)
        out[f"load 66 rows pitch {pitch} x4"] = prog(rows, *[
            Load(geom=2, offset=L * k, dst=66 * k, outer=66, inner=1, length=L)
            for k in range(4)])
    # runs of short LOADs (a depthwise convolution's taps): rows one request each, rows of
    # padding only, and both in turn; each LOAD's fixed cost counts sixteen times
    strided = Dmacfg(slot=2, height=4095, width=L, pitch=4 * L, pix=1, sy=1, sx=0)
    blank = Dmacfg(slot=1, height=4095, width=0, pitch=0, pix=1, sy=1, sx=0)
    contig = Dmacfg(slot=0, height=4095, width=L, pitch=L, pix=1, sy=1, sx=0)
    out["load strided 7 x16"] = prog(strided, *[
        Load(geom=2, offset=28 * L * k, dst=7 * k, outer=7, length=L) for k in range(16)])
    out["load contig 7 x16"] = prog(contig, *[
        Load(geom=0, offset=16 * L * k, dst=7 * k, outer=7, length=L) for k in range(16)])
    out["load padding 9 x16"] = prog(blank, *[
        Load(geom=1, dst=9 * k, outer=9, length=L) for k in range(16)])
    out["load padding 9 + strided 7 x16"] = prog(blank, strided, *[
        ld for k in range(16) for ld in (
            Load(geom=1, dst=16 * k, outer=9, length=L),
            Load(geom=2, offset=28 * L * k, dst=16 * k + 9, outer=7, length=L))])
    # whole rows at a pitch that is not a beat multiple: each row its own request, most of them
    # across a beat boundary (softmax row sums read such rows)
    for n in (64, 400):
        odd = Dmacfg(slot=2, height=4095, width=L, pitch=L + 1, pix=1, sy=1, sx=0)
        out[f"load rows pitch {L + 1} {n}"] = prog(odd, Load(geom=2, outer=n, length=L))
    fill = [spad, Load(geom=0, inner=256, length=L, push_next=True),
            Sync(target=SyncTarget.COMPUTE, pop_prev=True, push_next=True)]
    for n in (1, 16, 64, 256):
        for label, stride in (("", L), (" gaps", 2 * L)):
            st = Store(src=0, rows=n, stride=stride, length=L, offset=1 << 15, pop_prev=True)
            out[f"store spad{label} {n}"] = prog(*fill, st)
            out[f"store spad{label} {n} x2"] = prog(*fill, st, dataclasses.replace(
                st, pop_prev=False, offset=(1 << 15) + 8192))
    # a STORE reading the scratchpad bank a GEMM streams from, and from another bank
    g = Gemm(w=0, a=16, acc=0, m=128, k_tiles=1, n_tiles=1)
    per = cfg.scratchpad_rows // cfg.scratchpad_banks
    for label, src in (("same bank", 16), ("other bank", per)):
        st = Store(src=src, rows=128, stride=L, length=L, offset=1 << 15, pop_prev=True)
        out[f"gemm 128 + store spad {label}"] = prog(
            spad, Load(geom=0, inner=256, length=L),
            Load(geom=0, dst=per, inner=128, length=L, push_next=True), fill[2], g, st)
    # a STORE beside GEMMs streaming their operands from the bank it reads, before them and
    # after them in program order (both lose the port to the other), and from another bank
    rows = min(512, per)
    for label, src in (("same bank", per), ("other bank", 2 * per)):
        if src + 400 > cfg.scratchpad_rows:
            continue
        st = Store(src=src, rows=400, stride=L, length=L, offset=1 << 15, pop_prev=True)
        gemms = [Gemm(w=0, a=per, acc=0, m=8 * cfg.rows, k_tiles=1, n_tiles=1)] * 8
        loads = [spad, Load(geom=0, inner=rows, length=L),
                 Load(geom=0, dst=per, inner=rows, length=L),
                 Load(geom=0, dst=src, inner=400, length=L, push_next=True), fill[2]]
        out[f"store 400 + gemms from its bank, {label}"] = prog(*loads, st, *gemms)
        out[f"gemms + store 400 from their bank, {label}"] = prog(*loads, *gemms, st)
    tables = [Loadt(kind=TableKind.PWL, dst=0, count=1, offset=TABLE_AT),
              Loadt(kind=TableKind.BIAS, dst=0, count=64, offset=TABLE_AT + 2048)]
    base = [spad, *tables, Load(geom=0, inner=512, length=L, push_next=True)]
    out["loadt"] = prog(*tables)
    # an EPI beside later GEMMs that accumulate into its accumulator half, and into the other
    half_rows = cfg.accumulator_rows // 2
    for label, src in (("same half", half_rows // 2), ("other half", half_rows + half_rows // 2)):
        rows = min(64, half_rows // 2)
        first = Gemm(w=0, a=256, acc=src, m=rows, k_tiles=1, n_tiles=1, pop_prev=True)
        acc = Gemm(w=0, a=256, acc=0, m=rows, k_tiles=1, n_tiles=1, mode=GemmMode.ACCUMULATE)
        init = dataclasses.replace(acc, mode=GemmMode.OVERWRITE)
        out[f"epi beside accumulating gemms, {label}"] = prog(
            *base, first, init, Epi(src=src, dst=600, dest=EpiDest.SPAD, m=rows, n_tiles=1),
            acc, acc, acc)
    # accumulator rows loaded beside GEMMs that accumulate into that half, and into the other
    acc_rows = Dmacfg(slot=2, height=4095, width=1, pitch=4 * C + 4, pix=4, sy=1, sx=0)
    for label, dst in (("same half", half_rows // 2), ("other half", half_rows + half_rows // 2)):
        rows = min(64, half_rows // 2)
        chain = [Gemm(w=0, a=256, acc=0, m=rows, k_tiles=1, n_tiles=1, pop_prev=True),
                 *[Gemm(w=0, a=256, acc=0, m=rows, k_tiles=1, n_tiles=1,
                        mode=GemmMode.ACCUMULATE)] * 3]
        loads = [Load(geom=2, mem=MemSpace.ACC, offset=1024 * k, dst=dst + 8 * k, outer=8,
                      length=1) for k in range(4)]
        out[f"acc loads beside accumulating gemms, {label}"] = prog(*base, acc_rows, *chain,
                                                                     *loads)
    for m, k, n in ((1, 1, 1), (16, 1, 1), (64, 1, 1), (64, 4, 4), (8, 2, 2)):
        g = Gemm(w=0, a=256, acc=0, m=m, k_tiles=k, n_tiles=n, pop_prev=True)
        out[f"gemm {m}/{k}/{n}"] = prog(*base, g)
        if 2 * m * n <= cfg.accumulator_rows:
            out[f"gemm {m}/{k}/{n} x2"] = prog(*base, g, dataclasses.replace(
                g, acc=m * n, pop_prev=False))
        out[f"gemm {m}/{k}/{n} epi"] = prog(*base, g, Epi(src=0, dst=600, dest=EpiDest.SPAD,
                                                          m=m, n_tiles=n))
    return out


def _mlp_program(cfg):
    spec = importlib.util.spec_from_file_location("build_mlp_image",
                                                  ROOT / "examples" / "build_mlp_image.py")
    builder = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = builder
    spec.loader.exec_module(builder)
    example = builder.build(seed=0, config=cfg)
    return assemble_file(ROOT / "examples" / "mlp.nmasm"), example.image


def programs(n_random: int, seed: int, configs=("tiny", "default"), with_bundles=True):
    """``(group, label, config name, words, image bytes)`` of every calibration program."""
    from nmx.commands.bench import tiled_gemm
    from tb.random_programs import make_case

    for name in configs:
        cfg = preset(name)
        img = directed_image(cfg).data.tobytes()
        for label, prog in directed_programs(cfg).items():
            yield "directed", f"{name} {label}", name, prog.words(), img
    if "default" in configs:
        default = preset("default")
        program, image, _ = tiled_gemm(default, 256, 256, 256, 64)
        yield ("named", "gemm 256^3 (nmx bench gemm)", "default", program.words(),
               image.data.tobytes())
        program, image = _mlp_program(default)
        yield "named", "examples/mlp.nmasm", "default", program.words(), image.data.tobytes()
        if with_bundles:
            sys.path.insert(0, str(ROOT / "scripts"))
            from bench_rtl_counters import gemm512_program, stream_program

            program, image = gemm512_program(default)
            yield ("named", "gemm 512^3 (compiler bundle)", "default", program.words(),
                   image.data.tobytes())
            program, image = stream_program(default, segments=64)
            yield ("named", "64 GEMM+EPI pairs (bench_rtl_counters stream)", "default",
                   program.words(), image.data.tobytes())
    for name in configs:
        cfg = preset(name)
        for i in range(n_random):
            case = make_case(cfg, name, seed, i, invalid_fraction=0.0)
            yield (f"random {name}", f"random {name}:{seed}:{i}", name,
                   list(case.words[:case.prog_len]), bytes(case.image))


def network_programs(model: str, config_name: str = "default"):
    """``(group, label, config name, words, image bytes)`` of zoo network ``model`` compiled
    for ``config_name`` on its first evaluation sample: the whole program, then each node's
    program of the profile compile (what ``nmx sim``'s per-node table runs), each on the DRAM
    the previous node left (from the golden model)."""
    import torch

    from compiler.backend import compile as compile_bundle
    from compiler.convert import convert
    from compiler.zoo import load
    from sim.network import _inputs

    torch.set_num_threads(1)
    cfg = preset(config_name)
    zm = load(model)
    cm = convert(zm.model, zm.example_inputs, zm.calibration)
    inputs, _n = _inputs(zm, 1)
    stacked, _orig = cm.to_samples(inputs)
    one = [s[0:1] for s in stacked]
    bundle = compile_bundle(cm, cfg, batch=1, name=model)
    image = bundle.image_for(bundle.quantize_inputs(one))
    yield (f"network {config_name}", f"{model} ({config_name})", config_name,
           bundle.program.words(), image.data.tobytes())
    prof = compile_bundle(cm, cfg, batch=1, name=model, mode="profile")
    image = prof.image_for(prof.quantize_inputs(one)).data.tobytes()
    for node, program in prof.node_programs:
        words = program.words()
        yield f"nodes {model}", f"{model} ({config_name}) node {node}", config_name, words, image
        image = GoldenModel(cfg).run(words, image).raise_for_status().dram.data.tobytes()


class RtlRunner:
    """One Verilated accelerator per config on the fast path (built and cached on first use)."""

    def __init__(self, latency: int):
        self.latency = latency
        self._devices = {}
        self.used = False

    def cycles(self, name: str, words: list[int], image: bytes) -> dict:
        from nmx.runtime.device import Device
        from sim.rtl_harness import VerilatorTransport

        self.used = True
        if name not in self._devices:
            cfg = preset(name)
            t = VerilatorTransport(cfg, mem_size=1 << 24, latency=self.latency)
            self._devices[name] = (t, Device(t, cfg))
        r = self._devices[name][1].execute(words, np.frombuffer(image, np.uint8))
        if r.status.code != 0:
            raise RuntimeError(f"the RTL ended with {r.status}")
        return dict(r.counters)

    def close(self):
        for t, _ in self._devices.values():
            t.close()


def measure(n_random: int, seed: int, latency: int, reuse: bool,
            configs=("tiny", "default"), networks=()) -> list[dict]:
    """Every calibration program with its golden trace and RTL ``CYCLES``. With ``reuse`` the
    RTL's cycles come from :data:`MEASUREMENTS` and the zoo networks' golden traces from
    :data:`NETWORK_TRACES` (conversion and compilation skipped) where they are there; the RTL
    runs what is missing."""
    saved = json.loads(MEASUREMENTS.read_text()) if MEASUREMENTS.exists() else {}
    key_of = f"latency {latency}"
    cache = saved.setdefault(key_of, {}) if reuse else {}
    saved[key_of] = cache
    counters = saved.setdefault(f"counters {key_of}", {}) if reuse else {}
    saved[f"counters {key_of}"] = counters
    runner = RtlRunner(latency)
    traces = {}
    if NETWORK_TRACES.exists():
        with NETWORK_TRACES.open("rb") as f:
            traces = pickle.load(f)
    out = []
    try:
        for net in networks:
            if reuse and net in traces:
                out += [dict(q, config=preset(q["config"]), rtl=cache[q["label"]])
                        for q in traces[net]]
                continue
            kept = []
            for group, label, name, words, image in network_programs(net):
                out.append(_one(group, label, name, words, image, cache, runner, counters))
                kept.append(dict(out[-1], config=name))
            traces[net] = kept
        for group, label, name, words, image in programs(n_random, seed, configs):
            out.append(_one(group, label, name, words, image, cache, runner, counters))
    finally:
        if runner.used:
            runner.close()
            if MEASUREMENTS.exists():  # keep what another run measured meanwhile
                theirs = json.loads(MEASUREMENTS.read_text()).get(key_of, {})
                cache.update({k: v for k, v in theirs.items() if k not in cache})
                theirs = json.loads(MEASUREMENTS.read_text()).get(f"counters {key_of}", {})
                counters.update({k: v for k, v in theirs.items() if k not in counters})
            MEASUREMENTS.parent.mkdir(parents=True, exist_ok=True)
            MEASUREMENTS.write_text(json.dumps(saved))
        if traces:
            NETWORK_TRACES.parent.mkdir(parents=True, exist_ok=True)
            with NETWORK_TRACES.open("wb") as f:
                pickle.dump(traces, f)
    print(f"{len(out)} programs measured on the RTL (latency {latency})", flush=True)
    return out


def _one(group, label, name, words, image, cache, runner, counters) -> dict:
    cfg = preset(name)
    gold = GoldenModel(cfg).run(words, image)
    if not gold.ok:
        raise RuntimeError(f"{label}: the golden model ended with {gold.status}")
    if label not in cache:
        counters[label] = {k: int(v) for k, v in runner.cycles(name, words, image).items()}
        cache[label] = counters[label]["CYCLES"]
    return {"group": group, "label": label, "config": cfg, "trace": gold.trace,
            "rtl": cache[label]}


def errors(progs: list[dict], params: CycleParams) -> np.ndarray:
    """Relative error (model - RTL) / RTL of each program."""
    return np.array([(estimate_cycles(q["trace"], q["config"], params).total_cycles - q["rtl"])
                     / q["rtl"] for q in progs])


def loss(progs: list[dict], params: CycleParams, weights: np.ndarray) -> float:
    e = errors(progs, params)
    return float(np.sum(weights * e * e) / np.sum(weights))


def fit(progs: list[dict], start: CycleParams) -> CycleParams:
    """Coordinate descent over :data:`RANGES` (steps of at most 3 from the current value per
    sweep); each group weighs as much as every other."""
    groups = [q["group"] for q in progs]
    weights = np.array([1.0 / groups.count(g) for g in groups])
    best, best_loss = start, loss(progs, start, weights)
    for sweep in range(4):
        improved = False
        for name, values in RANGES.items():
            here = getattr(best, name)
            for v in (x for x in values if abs(x - here) <= 3 and x != here):
                cand = dataclasses.replace(best, **{name: v})
                if (value := loss(progs, cand, weights)) < best_loss:
                    best, best_loss, improved = cand, value, True
        print(f"  sweep {sweep + 1}: rms error {100 * best_loss ** 0.5:.2f} %", flush=True)
        if not improved:
            break
    return best


def distribution(e: np.ndarray) -> dict:
    a = np.abs(e)
    return {"n": int(a.size), "median_abs": round(float(np.median(a)), 4),
            "p90_abs": round(float(np.percentile(a, 90)), 4), "max_abs": round(float(a.max()), 4),
            "mean": round(float(np.mean(e)), 4), "within_5pct": round(float(np.mean(a <= 0.05)), 4)}


def describe(progs: list[dict], params: CycleParams, title: str) -> dict:
    """Print the per-program errors of the named programs and each group's distribution."""
    e = errors(progs, params)
    print(f"\n{title}")
    summary = {}
    for q, err in zip(progs, e, strict=True):
        if q["group"] == "named" or q["group"].startswith("network"):
            model = estimate_cycles(q["trace"], q["config"], params).total_cycles
            print(f"  {q['label']:<34s} RTL {q['rtl']:>8d}  model {model:>8d}  "
                  f"error {100 * err:+6.2f} %")
    for group in dict.fromkeys(q["group"] for q in progs):
        sel = np.array([err for q, err in zip(progs, e, strict=True) if q["group"] == group])
        d = distribution(sel)
        summary[group] = d
        print(f"  {group:<15s} n={d['n']:<4d} |error| median {100 * d['median_abs']:5.2f} %, "
              f"p90 {100 * d['p90_abs']:5.2f} %, max {100 * d['max_abs']:5.2f} %, mean "
              f"{100 * d['mean']:+5.2f} %, within 5 %: {100 * d['within_5pct']:.0f} %")
        if group.startswith("nodes"):  # the per-node errors, largest first
            nodes = sorted(((abs(err), err, q) for q, err in zip(progs, e, strict=True)
                            if q["group"] == group), key=lambda x: -x[0])
            for _a, err, q in nodes[:5]:
                print(f"      {q['label']:<50s} RTL {q['rtl']:>8d}  error {100 * err:+6.2f} %")
    return summary


#: Directed programs whose RTL cycles the calibration file keeps (tests/test_cycle_calibration.py).
REFERENCE = ("tiny load spad 64", "tiny store spad gaps 64 x2", "tiny gemm 64/4/4 epi",
             "default load acc 64", "default gemm 64/4/4 epi", "default store spad 256 x2",
             "default load padding 9 + strided 7 x16", "default load rows pitch 17 400",
             "tiny load padding 9 x16", "default gemm 128 + store spad same bank",
             "default epi beside accumulating gemms, same half",
             "default acc loads beside accumulating gemms, same half",
             "default store 400 + gemms from its bank, same bank",
             "default gemms + store 400 from their bank, same bank")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--random", type=int, default=60, help="random programs per config")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--latency", type=int, default=CycleParams().dram_latency,
                   help="DRAM read and write latency of the fast path, cycles")
    p.add_argument("--configs", default="tiny,default",
                   help="presets of the directed and random programs (\"\": none)")
    p.add_argument("--networks", default="",
                   help="zoo models to check (whole program and per node, default config; "
                        "not fitted on), e.g. mlp,bert")
    p.add_argument("--write", action="store_true", help=f"store the fit in {CALIBRATION_FILE}")
    p.add_argument("--no-fit", action="store_true", help="only print the current errors")
    p.add_argument("--reuse", action="store_true",
                   help=f"take RTL cycles and network traces measured before ({MEASUREMENTS}), "
                        "run only what is missing")
    args = p.parse_args(argv)
    networks = tuple(x for x in args.networks.split(",") if x)
    progs = measure(args.random, args.seed, args.latency, args.reuse,
                    tuple(x for x in args.configs.split(",") if x), networks)
    current = dataclasses.replace(CycleParams(), dram_latency=args.latency, write_latency=None)
    summary = describe(progs, current, f"current constants: {current.to_dict()}")
    fitted = current
    if not args.no_fit:  # zoo networks are held out: they check the fit
        fitted = fit([q for q in progs if not q["group"].startswith(("network", "nodes"))],
                     current)
        summary = describe(progs, fitted, f"fitted constants: {fitted.to_dict()}")
    if args.write:
        named = {q["label"]: {"config": q["config"].to_dict(), "rtl": q["rtl"],
                              "model": estimate_cycles(q["trace"], q["config"],
                                                       fitted).total_cycles}
                 for q in progs if q["group"] == "named" or q["label"] in REFERENCE
                 or q["group"].startswith("network")}
        CALIBRATION_FILE.write_text(json.dumps({
            "params": fitted.to_dict(),
            "measured": datetime.date.today().isoformat(),
            "rtl": "Verilated accelerator, C++ fast path (sim/rtl_harness.py), DRAM latency "
                   f"{args.latency} cycles read and write, no pauses",
            "command": "python scripts/calibrate_cycle_model.py " + " ".join(
                argv if argv is not None else sys.argv[1:]),
            "programs": named, "errors": summary,
        }, indent=1) + "\n")
        print(f"\nwrote {CALIBRATION_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
