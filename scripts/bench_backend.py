"""Back-end benchmarks (cycle model over golden-model runs), the figures of docs/results.md.

    python scripts/bench_backend.py gemm   [--config default] [--size 512]
    python scripts/bench_backend.py conv   [--config default]   # ResNet-18 3x3 stack, 56x56x64
    python scripts/bench_backend.py bert   [--config default] [--attn eager|sdpa]  # BERT-base
                                              # layer (transformers' BertLayer), seq 128
    python scripts/bench_backend.py zoo    [--config default] [--batch 1]

``--dram-only`` sends every activation through DRAM (the back end's ``on_chip=False``), to
measure what keeping activations on chip saves.

Each compiles (the compile timed as CPU seconds of this process, one thread), runs the bundle
on the golden model, checks the result against the integer executor bit for bit, and prints the
cycle model's figures: total cycles, array MACs / (R*C*cycles), the float network's MACs /
(R*C*cycles), the DRAM footprint (``dram_bytes``) and the DRAM bytes moved (``dram_read``,
``dram_written``: every LOAD, LOADT and STORE of the run).
``--json PATH`` appends the figures as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compiler.backend.compile import compile_graph, compile_ir  # noqa: E402
from compiler.backend.report import build_report  # noqa: E402
from compiler.graph import GraphInput, MatrixGraph, TensorRef  # noqa: E402
from compiler.ir import GemmPass, IntGraph, IntNode, Operand, interpret  # noqa: E402
from hw.config import preset  # noqa: E402
from hw.numeric import PwlTable  # noqa: E402


def _figures(label, bundle, res, seconds, float_macs=None):
    rep = build_report(bundle, res.run)
    peak = bundle.config.peak_macs_per_cycle
    fig = {"benchmark": label, "config": f"{bundle.config.rows}x{bundle.config.cols}",
           "on_chip": ON_CHIP,
           "batch": bundle.batch, "compile_seconds": round(seconds, 2),
           "instructions": len(bundle.program.instructions), "cycles": rep.total_cycles,
           "array_macs": rep.array_macs,
           "array_utilisation": round(rep.utilisation, 4),
           "dram_bytes": rep.dram_bytes,
           "dram_read": sum(n.dram_read for n in rep.nodes),
           "dram_written": sum(n.dram_written for n in rep.nodes)}
    if float_macs is not None:
        fig["float_macs"] = int(float_macs)
        fig["float_utilisation"] = round(float_macs / (peak * rep.total_cycles), 4)
    return fig, rep


ON_CHIP = True


def bench_gemm(cfg, size: int):
    rng = np.random.default_rng(0)
    m = k = n = size
    x = rng.integers(-128, 128, (1, m, k))
    w = rng.integers(-128, 128, (k, n))
    node = IntNode("gemm", "gemm", "aten.mm", (m, n),
                   [GemmPass(Operand(ref=TensorRef("x", (m, k))), Operand(const=w))],
                   rng.integers(-1000, 1000, (1, n)), rng.integers(1, 1 << 15, (1, n)),
                   np.full((1, n), 20), None, PwlTable.identity(), 8)
    ir = IntGraph([node], {"x": 1.0}, {"x": 1.0, "gemm": 1.0}, {"x": 8, "gemm": 8},
                  [TensorRef("gemm", (m, n))])
    graph = MatrixGraph(inputs=[GraphInput("x", 0, (m, k), torch.int64)])
    t0 = time.process_time()
    bundle = compile_ir(ir, cfg, 1, {"x": (m, k)}, graph, name=f"gemm{size}", on_chip=ON_CHIP)
    seconds = time.process_time() - t0
    vals = {"x": torch.from_numpy(x)}
    interpret(ir, vals)
    res = bundle.run([torch.from_numpy(x)])
    assert torch.equal(res.int_outputs[0], vals["gemm"]), "golden != integer IR"
    return _figures(f"gemm {size}x{size}x{size}", bundle, res, seconds, m * k * n)


def _convert_and_run(label, model, example, calibration, cfg, float_macs):
    from compiler.convert import convert

    cm = convert(model, example, calibration)
    t0 = time.process_time()
    bundle = compile_graph(cm.graph, cm.quant, cfg, 1, name=label, on_chip=ON_CHIP)
    seconds = time.process_time() - t0
    samples = cm.to_samples(example)[0]
    ref = cm.run_samples(samples, "int")
    res = bundle.run(samples)
    same = all(torch.equal(a, b) for a, b in zip(res.outputs, ref, strict=True))
    assert same, "golden != integer executor"
    return _figures(label, bundle, res, seconds, float_macs)


def bench_conv(cfg, layers: int = 4):
    from torch import nn

    torch.manual_seed(0)
    c, hw = 64, 56
    mods = []
    for _ in range(layers):
        mods += [nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
    model = nn.Sequential(*mods).eval()
    x = torch.randn(1, c, hw, hw)
    cal = [torch.randn(1, c, hw, hw) for _ in range(2)]
    macs = layers * hw * hw * c * c * 9
    return _convert_and_run(f"resnet18 3x3 stack {layers}x(64,56x56)", model, (x,), cal, cfg,
                            macs)


def bert_base_layer(seq: int, attn_implementation: str = "eager") -> torch.nn.Module:
    """Hugging Face ``transformers``' ``BertLayer`` built from a BERT-base ``BertConfig``
    (hidden 768, 12 heads, FFN 3072) with random weights (seeded; nothing is downloaded), called
    with no attention mask."""
    from compiler.thirdparty import import_transformers

    transformers = import_transformers()
    from transformers.models.bert.modeling_bert import BertLayer

    cfg = transformers.BertConfig(hidden_size=768, num_attention_heads=12,
                                  intermediate_size=3072, max_position_embeddings=max(seq, 512),
                                  attn_implementation=attn_implementation)
    return BertLayer(cfg).eval()


def bench_bert(cfg, seq: int = 128, attn_implementation: str = "eager"):
    torch.manual_seed(0)
    model = bert_base_layer(seq, attn_implementation)
    x = torch.randn(1, seq, 768)
    cal = [(torch.randn(1, seq, 768),) for _ in range(2)]
    h, f = 768, 3072
    macs = seq * (4 * h * h + 2 * h * f) + 2 * seq * seq * h
    return _convert_and_run(f"transformers BertLayer (bert-base, {attn_implementation}) seq {seq}",
                            model, (x,), cal, cfg, macs)


def bench_zoo(cfg, batch: int):
    from compiler.convert import convert
    from compiler.zoo import MODEL_NAMES, load
    from nmx.commands.compile import sample_inputs

    out = []
    for name in MODEL_NAMES:
        zm = load(name)
        cm = convert(zm.model, zm.example_inputs, zm.calibration)
        t0 = time.process_time()
        bundle = compile_graph(cm.graph, cm.quant, cfg, batch, name=name, on_chip=ON_CHIP)
        seconds = time.process_time() - t0
        samples = sample_inputs(zm, cm, batch)
        ref = cm.run_samples(samples, "int")
        res = bundle.run(samples)
        assert all(torch.equal(a, b) for a, b in zip(res.outputs, ref, strict=True)), name
        fm = sum(n.macs() for n in cm.graph.nodes) * batch
        out.append(_figures(f"zoo {name}", bundle, res, seconds, fm))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("gemm", "conv", "bert", "zoo"))
    p.add_argument("--config", default="default")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--attn", choices=("eager", "sdpa"), default="eager",
                   help="bert: the attention implementation of transformers' BertLayer")
    p.add_argument("--json", type=Path)
    p.add_argument("--report", action="store_true", help="print the per-node table")
    p.add_argument("--dram-only", action="store_true",
                   help="every activation through DRAM (no on-chip residency between nodes)")
    a = p.parse_args(argv)
    global ON_CHIP
    ON_CHIP = not a.dram_only
    torch.set_num_threads(1)
    cfg = preset(a.config)
    if a.what == "gemm":
        results = [bench_gemm(cfg, a.size)]
    elif a.what == "conv":
        results = [bench_conv(cfg, a.layers)]
    elif a.what == "bert":
        results = [bench_bert(cfg, a.seq, a.attn)]
    else:
        results = bench_zoo(cfg, a.batch)
    for fig, rep in results:
        if a.report:
            rep.print()
        print(json.dumps(fig))
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps(fig) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
