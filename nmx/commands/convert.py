"""``nmx convert``: convert a zoo model to GEMMs + PWL epilogues (int8) and report its accuracy.

Prints one table: the float accuracy, the float-PWL and int8 (integer-exact) accuracies with their
deltas, agreement of the int8 predictions with the float ones, cosine similarity of the outputs,
per-function PWL max/mean errors and the time taken; ``--report`` adds the per-node table;
``--finetune N`` fine-tunes N epochs through the fake-quant + PWL forward and adds a row.
"""

from __future__ import annotations

import argparse
import json
import time

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``nmx convert``."""
    parser.add_argument("--model", required=True, help="zoo model name (mlp, resnet, ...)")
    parser.add_argument("--report", action="store_true", help="also print the per-node report")
    parser.add_argument("--segments", type=int, default=16, help="PWL segments per function")
    parser.add_argument("--finetune", type=int, default=0, metavar="EPOCHS",
                        help="fine-tune this many epochs (approximation-aware) and report it")
    parser.add_argument("--clipping", choices=("mse", "max"), default="mse",
                        help="int8 activation scales: MSE-optimal clipping or max")
    parser.add_argument("--lr", type=float, default=1e-4, help="fine-tuning learning rate")
    parser.add_argument("--wide", default="none",
                        help="16-bit operand tensors: none, auto, or comma-separated patterns")
    parser.add_argument("--wide-budget", type=float, default=None,
                        help="accuracy budget of --wide auto (mean per-row 1 - cosine)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")


def _evaluate(zm, cm, mode: str) -> tuple[float, torch.Tensor]:  # noqa: F821
    out = cm(*zm.eval_inputs, mode=mode)
    out = out[0] if isinstance(out, tuple) else out
    return zm.metric(out, zm.eval_labels), out


def _scored(zm, out):
    if zm.eval_mask is not None and out.shape[0] != zm.eval_labels.shape[0]:
        return out[zm.eval_mask]
    return out


def _finetune_data(zm, batch: int = 32):
    from compiler.zoo import spec

    if zm.task != "classification":
        from hw.errors import NmxError

        raise NmxError(f"--finetune supports classification zoo models; {zm.name} is "
                       f"{zm.task}")
    data = spec(zm.name).data(zm.config)
    n = data.train_labels.shape[0]
    out = []
    for i in range(0, n - batch + 1, batch):
        out.append((tuple(t[i : i + batch] for t in data.train_inputs),
                    data.train_labels[i : i + batch]))
    return out


def run(args: argparse.Namespace) -> int:
    """Convert, evaluate and print the table."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from compiler import convert, finetune
    from compiler.report import compare, function_errors
    from compiler.zoo import load

    t0 = time.perf_counter()
    zm = load(args.model)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    wide = args.wide if args.wide in ("none", "auto") else [w for w in args.wide.split(",") if w]
    cm = convert(zm.model, zm.example_inputs, zm.calibration, segments=args.segments,
                 host_inputs=getattr(zm, "host_inputs", None), clipping=args.clipping,
                 wide=wide, wide_budget=args.wide_budget)
    t_convert = time.perf_counter() - t0
    with torch.no_grad():
        ref = zm.model(*zm.eval_inputs)
        ref = ref[0] if isinstance(ref, tuple) else ref
    float_acc = zm.metric(ref, zm.eval_labels)
    rows = []
    results: dict = {"model": zm.name, "description": zm.description, "float": float_acc,
                     "segments": args.segments, "nodes": len(cm.graph.nodes)}

    def add(label, model, mode):
        t = time.perf_counter()
        with torch.no_grad():
            acc, out = _evaluate(zm, model, mode)
        secs = time.perf_counter() - t
        agree = float((_scored(zm, out).argmax(-1) == _scored(zm, ref).argmax(-1)).float()
                      .mean())
        cos = compare(ref, out)[2]
        rows.append((label, acc, acc - float_acc, agree, cos, secs))
        results[label] = {"accuracy": acc, "delta_pp": 100 * (acc - float_acc),
                          "agreement": agree, "cosine": cos, "seconds": secs}

    add("float-pwl", cm, "float-pwl")
    add("int8", cm, "int")
    t_ft = None
    if args.finetune:
        t0 = time.perf_counter()
        ft = finetune(cm, _finetune_data(zm), epochs=args.finetune, lr=args.lr)
        t_ft = time.perf_counter() - t0
        add("int8 finetuned", ft, "int")
    con = Console(width=150)
    table = Table(title=f"nmx convert --model {zm.name}: {zm.description}")
    for col in ("form", "accuracy", "delta (pp)", "agreement w/ float", "output cosine",
                "eval time (s)"):
        table.add_column(col)
    table.add_row("float (PyTorch)", f"{100 * float_acc:.2f}%", "", "", "", "")
    for label, acc, d, agree, cos, secs in rows:
        table.add_row(label, f"{100 * acc:.2f}%", f"{100 * d:+.2f}", f"{100 * agree:.2f}%",
                      f"{cos:.5f}", f"{secs:.2f}")
    con.print(table)
    ft_table = Table(title=f"PWL functions ({args.segments} segments, calibrated ranges)")
    for col in ("function", "nodes", "max abs err", "mean abs err",
                "max abs err after output rounding+clipping"):
        ft_table.add_column(col)
    funcs = {}
    for e in function_errors(cm.graph):
        f = funcs.setdefault(e.function, [0, 0.0, 0.0, 0.0, 0])
        f[0] += len(e.nodes)
        f[1] = max(f[1], e.fixed_max)
        f[2] += e.fixed_mean
        f[3] = max(f[3], e.output_max)
        f[4] += 1
    for name, (n, mx, mean_sum, omx, k) in sorted(funcs.items()):
        ft_table.add_row(name, str(n), f"{mx:.2e}", f"{mean_sum / k:.2e}", f"{omx:.2e}")
        results.setdefault("functions", {})[name] = {"nodes": n, "max_abs": mx,
                                                     "mean_abs": mean_sum / k}
    if funcs:
        con.print(ft_table)
    else:
        con.print("PWL functions: none (relu-class activations are exact tables)")
    times = (f"time: load {t_load:.1f}s, convert {t_convert:.1f}s (capture+lower "
             f"{cm.timings['capture+lower']:.1f}s, calibrate {cm.timings['calibrate']:.1f}s, "
             f"quantize+fit {cm.timings['quantize+fit']:.1f}s)")
    if t_ft is not None:
        times += f", finetune {t_ft:.1f}s"
    con.print(times)
    con.print(f"matrix graph: {len(cm.graph.nodes)} GEMM nodes, capture via "
              f"{cm.graph.capture_method}" + (f" ({cm.capture_note})" if cm.capture_note else ""))
    con.print(f"folded at conversion time: {len(cm.graph.folded)} item(s)"
              + (" (--report lists them)" if cm.graph.folded else ""))
    hosts = [f"{h.description} ({h.module or '<top>'})" for h in cm.graph.host_ops]
    con.print("host pre-processing: " + ("; ".join(hosts) if hosts else "none"))
    con.print("16-bit operand tensors: " + (", ".join(cm.quant.wide) or "none"))
    results["wide"] = list(cm.quant.wide)
    results["folded"] = list(cm.graph.folded)
    results["host_ops"] = hosts
    results["seconds"] = {"load": t_load, "convert": t_convert, **cm.timings,
                          **({"finetune": t_ft} if t_ft is not None else {})}
    if args.report:
        print(cm.report().render(width=150))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0
