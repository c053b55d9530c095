"""``nmx convert``: convert a zoo model to GEMMs + PWL epilogues (int8) and report its accuracy.

Prints the accuracy table (float accuracy, float-PWL and int8 (integer-exact) accuracies with
their deltas, agreement of the predictions with float's, output cosine, evaluation time), the
per-function PWL max/mean errors, the issue-#4 targets table (each applicable target, its
measured value per form, met or missed and the margin) and the time taken. ``--report`` adds the
per-node table; ``--finetune N`` fine-tunes N epochs through the fake-quant + PWL forward and
adds a row. ``--model all`` converts every zoo model and ends with one summary table.

Transformers (bert, vit): the per-token cosine of the final hidden states is measured on the
converted classifier itself: the GEMM node that writes them (the last node of the module named by
:attr:`compiler.zoo.HiddenStates.module_path` with their shape, checked against the float hidden
states in float mode) is read out per form, int8-quantised exactly as the classifier consumes it,
and compared with :class:`compiler.zoo.HiddenStates` (BERT: ``model.bert(...)[0]``; ViT: the
final LayerNorm's tokens) over unmasked tokens.
"""

from __future__ import annotations

import argparse
import time

from nmx import files

__all__ = ["add_arguments", "run", "measure", "logit_statistics"]


def _int_in(lo: int, hi: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{v} is outside {lo}..{hi}")
        return v

    parse.__name__ = "int"
    return parse


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive finite number")
    return v


def _non_negative_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= v < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number >= 0")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``nmx convert``."""
    parser.add_argument("--model", required=True,
                        help="zoo model name (mlp, resnet, mobilenet, bert, vit, gcn) or 'all'")
    parser.add_argument("--report", action="store_true", help="also print the per-node report")
    parser.add_argument("--segments", type=_int_in(1, 64), default=None,
                        help="PWL segments for every function (default: 16, and 64 for exp, "
                             "reciprocal, rsqrt and functions with 16-bit outputs)")
    parser.add_argument("--finetune", type=_int_in(0, 1000), default=0, metavar="EPOCHS",
                        help="fine-tune this many epochs (approximation-aware) and report it "
                             "(classification models; skipped for gcn under --model all)")
    parser.add_argument("--clipping", choices=("mse", "max"), default="mse",
                        help="int8 activation scales: MSE-optimal clipping or max")
    parser.add_argument("--lr", type=_positive_float, default=1e-4,
                        help="fine-tuning learning rate")
    parser.add_argument("--wide", default="auto",
                        help="16-bit operand tensors: auto (default: the transformer tensors, "
                             "then the tensors whose measured int8 cost is largest until the "
                             "output error is within --wide-budget), transformer (residual "
                             "stream, attention queries/keys/scores/exp, sublayer outputs, "
                             "embeddings), layernorm (residual stream and FFN hidden layer "
                             "only), none (all int8), or comma-separated names/patterns (graph "
                             "inputs by name, a node's weights as NODE:weights)")
    parser.add_argument("--wide-budget", type=_non_negative_float, default=None,
                        help="accuracy budget of --wide auto (mean per-row 1 - cosine on "
                             "calibration samples; default 1e-3)")
    parser.add_argument("--wide-max", type=_int_in(0, 100000), default=None,
                        help="--wide auto adds at most this many 16-bit tensors (default: no "
                             "limit)")
    parser.add_argument("--json", metavar="PATH",
                        help="write the results (including the targets) as JSON")


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _scored(zm, out):
    if zm.eval_mask is not None and out.shape[0] != zm.eval_labels.shape[0]:
        return out[zm.eval_mask]
    return out


def _finetune_data(zm, batch: int = 32, validation: float = 0.1):
    """Mini-batches of the zoo model's training split for :func:`compiler.quant.finetune`:
    ``(train, validation, labelled)``, the last ``validation`` fraction of the batches held out (the
    fine-tuning keeps the epoch with the highest agreement with the float model on them: every
    target is relative to float). Transformers' targets measure agreement
    with the float model, so their batches carry no labels (distillation only); the CNN/MLP
    targets measure accuracy, so theirs carry the labels (cross-entropy + distillation)."""
    from compiler.report import target_family
    from compiler.zoo import spec

    if zm.task != "classification":
        from hw.errors import NmxError

        raise NmxError(f"--finetune supports classification zoo models; {zm.name} is "
                       f"{zm.task}")
    labels = target_family(zm.name) != "transformer"
    data = spec(zm.name).data(zm.config)
    n = data.train_labels.shape[0]
    out = []
    for i in range(0, n - batch + 1, batch):
        inputs = tuple(t[i : i + batch] for t in data.train_inputs)
        out.append((inputs, data.train_labels[i : i + batch]) if labels else inputs)
    n_val = max(1, round(validation * len(out)))
    return out[:-n_val], out[-n_val:], labels


def _hidden_node(cm, backbone, example_inputs):
    """The classifier's GEMM node that writes the final hidden states: the last node of
    ``backbone.module_path`` shaped like them, checked against the float model."""
    import torch

    from compiler.graph import ConvertError

    with torch.no_grad():
        ref = backbone(*example_inputs)
    cands = [n for n in cm.graph.nodes
             if n.module == backbone.module_path and tuple(n.shape) == tuple(ref.shape)]
    if not cands:
        raise ConvertError(f"the converted model has no node of module "
                           f"{backbone.module_path!r} shaped {tuple(ref.shape)} (final hidden "
                           "states); cannot measure the per-token cosine")
    node = cands[-1]
    _, got = _node_values(cm, node, example_inputs, "float")
    err = float((got - ref).abs().max())
    if err > 1e-3 * max(float(ref.abs().max()), 1.0):
        raise ConvertError(f"internal: node {node.name} of {backbone.module_path!r} differs from "
                           f"the float hidden states by {err:.3g}; not the hidden-state node")
    return node


def _node_values(cm, node, inputs: tuple, mode: str, samples_per_run: int = 8):
    """``(output, node values)``: ``cm``'s first output and ``node``'s output, in real units,
    for ``inputs`` (batch dim first) under ``mode``, from the same runs of the graph."""
    import torch

    samples, batch = cm.to_samples(tuple(inputs))
    outs, vals = [], []
    for i in range(0, samples[0].shape[0], samples_per_run):
        o, kept = cm.run_samples([s[i : i + samples_per_run] for s in samples], mode, keep=True)
        v = kept[node.name]
        vals.append(v.double() * cm.quant.scales[node.name] if mode == "int" else v.double())
        outs.append(o[0])

    def unstack(v):
        return v[0] if batch is None else v.reshape(-1, *v.shape[2:])[:batch]

    return unstack(torch.cat(outs)), unstack(torch.cat(vals))


def measure(name: str, *, segments: int | None = None, clipping: str = "mse", wide="auto",
            wide_budget: float | None = None, wide_max: int | None = None,
            finetune_epochs: int = 0,
            lr: float = 1e-4, seed: int | None = None) -> tuple[dict, object]:
    """Convert zoo model ``name`` and measure every figure of the report.

    ``seed`` selects the training seed (default: the shipped weights' seed; others train on first
    use, :func:`compiler.zoo.load`).

    Returns
    -------
    (dict, ConvertedModel)
        The JSON-serialisable results and the converted classifier. Keys: ``model``,
        ``float`` (accuracy), ``forms`` (labels of the measured forms) and per label (e.g.
        ``"int8"``) ``accuracy``, ``delta_pp``, ``agreement``, ``cosine``, ``seconds``,
        ``logits`` (:func:`logit_statistics`) (plus ``token_cos_mean`` / ``token_cos_worst``
        for transformers); ``functions`` (PWL errors),
        ``targets`` (:class:`compiler.report.TargetCheck` dicts), ``seconds`` (timings) and
        what was folded, pre-processed or held at 16 bits.
    """
    import torch

    from compiler import convert, finetune
    from compiler.quant.wide import wide_cost
    from compiler.report import check_targets, compare, function_errors, precision_summary
    from compiler.zoo import hidden_states, load

    t_start = time.perf_counter()
    t0 = time.perf_counter()
    zm = load(name, seed=seed)
    t_load = time.perf_counter() - t0
    host = getattr(zm, "host_inputs", None)
    settings = dict(segments=segments, host_inputs=host, clipping=clipping, wide=wide,
                    wide_budget=wide_budget, wide_max=wide_max)
    t0 = time.perf_counter()
    cm = convert(zm.model, zm.example_inputs, zm.calibration, **settings)
    t_convert = time.perf_counter() - t0
    with torch.no_grad():
        ref = _first(zm.model(*zm.eval_inputs))
    float_acc = zm.metric(ref, zm.eval_labels)
    results: dict = {"model": zm.name, "description": zm.description, "float": float_acc,
                     "seed": zm.seed, "weights": zm.weights_source,
                     "fingerprint": zm.fingerprint,
                     "segments": cm.segments, "clipping": clipping, "nodes": len(cm.graph.nodes),
                     "forms": []}
    measurements: dict[str, dict[str, float]] = {}

    hidden = hidden_states(zm)
    node = ref_h = mask = None
    if hidden is not None:
        backbone, mask = hidden
        node = _hidden_node(cm, backbone, zm.example_inputs)
        with torch.no_grad():
            ref_h = backbone(*zm.eval_inputs)
        results["hidden_states"] = {
            "module": backbone.module_path, "node": node.name,
            "out_bits": node.epilogue.out_bits,
            "token_set": "unmasked tokens" if mask is not None else "tokens (all)"}

    def add(label, model, mode, node=None):
        t = time.perf_counter()
        with torch.no_grad():
            if node is None:
                out = _first(model(*zm.eval_inputs, mode=mode))
            else:
                out, out_h = _node_values(model, node, zm.eval_inputs, mode)
        secs = time.perf_counter() - t
        acc = zm.metric(out, zm.eval_labels)
        agree = float((_scored(zm, out).argmax(-1) == _scored(zm, ref).argmax(-1)).float()
                      .mean())
        results["forms"].append(label)
        results[label] = {"accuracy": acc, "delta_pp": 100 * (acc - float_acc),
                          "agreement": agree, "cosine": compare(ref, out)[2], "seconds": secs,
                          "logits": logit_statistics(_scored(zm, ref), _scored(zm, out))}
        measurements[label] = {"drop_pp": 100 * (float_acc - acc), "agreement": agree,
                               "agreement_decisive":
                                   results[label]["logits"]["agreement_decisive"]}
        if node is not None:
            full = torch.nn.functional.cosine_similarity(out_h.double(), ref_h.double(), dim=-1)
            cos = full[mask] if mask is not None else full.reshape(-1)
            if mask is not None:
                full = full.masked_fill(~mask, 2.0)
            worst = divmod(int(full.argmin()), full.shape[-1])
            stats = {"token_cos_mean": float(cos.mean()), "token_cos_worst": float(cos.min()),
                     "worst_token": {"sample": worst[0], "position": worst[1]}}
            measurements[label].update(stats)
            results[label].update(stats)
            results["hidden_states"]["tokens"] = int(cos.numel())

    add("float-pwl", cm, "float-pwl", node)
    add("int8", cm, "int", node)

    t_ft = None
    if finetune_epochs:
        t0 = time.perf_counter()
        train, val, labelled = _finetune_data(zm)
        ft = finetune(cm, train, epochs=finetune_epochs, lr=lr, validation=val,
                      select="agreement")
        t_ft = time.perf_counter() - t0
        ft_node = None if node is None else next(n for n in ft.graph.nodes
                                                 if n.name == node.name)
        add("int8 finetuned", ft, "int", ft_node)
        results["finetune"] = {"epochs": finetune_epochs, "lr": lr,
                               "labels": labelled,
                               "val_agreement": ft.finetune_history["val"],
                               "best_epoch": ft.finetune_history["best_epoch"]}

    funcs: dict = {}
    for e in function_errors(cm.graph):
        f = funcs.setdefault(e.function, {"nodes": 0, "segments": e.segments, "max_abs": 0.0,
                                          "mean_abs": 0.0, "output_max_abs": 0.0, "fits": 0})
        f["nodes"] += len(e.nodes)
        f["max_abs"] = max(f["max_abs"], e.fixed_max)
        f["mean_abs"] += e.fixed_mean
        f["output_max_abs"] = max(f["output_max_abs"], e.output_max)
        f["fits"] += 1
    for f in funcs.values():
        f["mean_abs"] /= f.pop("fits")
    results["functions"] = dict(sorted(funcs.items()))
    checks = check_targets(zm.name, measurements)
    results["targets"] = [c.to_dict() for c in checks]
    missed = {c.metric for c in checks if c.met is False and c.binding}
    if missed:
        results["diagnosis"] = _diagnose(cm, zm.example_inputs)
    results["wide"] = list(cm.quant.wide)
    results["wide_weights"] = list(cm.quant.wide_weights)
    results["precision"] = precision_summary(cm)
    cost = wide_cost(cm.graph, cm.quant.wide + cm.quant.wide_weights)
    results["gemm_macs"] = {
        "int8_graph": sum(n.macs() for n in cm.graph.nodes),
        "extra_for_16bit": sum(c["consumer_macs"] + c["split_macs"] for c in cost),
        "extra_passes": sum(c["consumer_passes"] + c["split_passes"] for c in cost)}
    results["folded"] = list(cm.graph.folded)
    results["host_ops"] = [f"{h.description} ({h.module or '<top>'})"
                           for h in cm.graph.host_ops]
    results["capture"] = cm.graph.capture_method + (f" ({cm.capture_note})"
                                                    if cm.capture_note else "")
    results["seconds"] = {"load": t_load, "convert": t_convert, **cm.timings,
                          **({"finetune": t_ft} if t_ft is not None else {}),
                          "total": time.perf_counter() - t_start}
    return results, cm


def logit_statistics(ref, out) -> dict:
    """How far converted logits ``out`` are from float ``ref`` (both (N, classes)), and which
    predictions that can flip.

    Returns a dict: ``err_p50`` / ``err_p99`` / ``err_max``: per-sample max abs logit error
    quantiles; ``margin_p01``: 1st percentile of the float top-2 margin (top-1 minus runner-up
    logit); ``flip_margins``: the float margins of the samples whose argmax differs, ascending;
    ``logit_max``: max |float logit|; ``margin_bound``:
    :data:`compiler.report.MARGIN_BOUND` times it (about
    2.5 steps of the logits quantised to int8 at that range); ``ambiguous``: how many samples
    have a float margin below it; ``agreement_decisive``: the agreement on the others.
    """
    import torch

    from compiler.report import MARGIN_BOUND

    ref, out = ref.double(), out.double()
    top2 = ref.topk(2, dim=-1).values
    margin = top2[:, 0] - top2[:, 1]
    err = (out - ref).abs().amax(dim=-1)
    flips = out.argmax(-1) != ref.argmax(-1)
    q = torch.quantile(err, torch.tensor([0.5, 0.99], dtype=torch.float64))
    logit_max = float(ref.abs().max())
    bound = MARGIN_BOUND * logit_max
    decisive = margin >= bound
    return {"err_p50": float(q[0]), "err_p99": float(q[1]), "err_max": float(err.max()),
            "margin_p01": float(torch.quantile(margin, 0.01)),
            "flip_margins": sorted(float(m) for m in margin[flips]),
            "logit_max": logit_max, "margin_bound": bound,
            "ambiguous": int((~decisive).sum()),
            "agreement_decisive": float((~flips[decisive]).double().mean())
            if bool(decisive.any()) else 1.0}


def _diagnose(converted, inputs: tuple, threshold: float = 0.999, floor: float = 1e-4,
              count: int = 3) -> dict:
    """Where the int8 error of ``converted`` arises, measured per node on ``inputs``: the first
    node (graph order) whose int8 output cosine to float falls below ``threshold`` and the
    ``count`` nodes with the lowest cosine. Nodes whose max abs error is below ``floor`` are
    skipped (their outputs are ~0, where the cosine means nothing)."""
    rep = converted.report(inputs)
    nodes = [n for n in rep.nodes if n.int_max >= floor]

    def row(n):
        return {"node": n.name, "module": n.module, "function": n.function,
                "int_cos": n.int_cos, "int_max": n.int_max}

    first = next((n for n in nodes if n.int_cos < threshold), None)
    return {"threshold": threshold, "first_below": None if first is None else row(first),
            "lowest": [row(n) for n in sorted(nodes, key=lambda n: n.int_cos)[:count]]}


def _print_diagnosis(con, results: dict) -> None:
    """Why targets are missed (measured per node) and where the worst token is."""
    if "diagnosis" in results:
        d = results["diagnosis"]

        def where(r):
            return (f"{r['node']} ({r['module'] or '<top>'}, {r['function']}): int8 cosine "
                    f"{r['int_cos']:.5f}, max abs error {r['int_max']:.3g}")

        first = d["first_below"]
        con.print("why targets are missed (per-node int8 error vs float on the example "
                  "inputs): "
                  + (f"first node below cosine {d['threshold']}: {where(first)}; "
                     if first else f"no node below cosine {d['threshold']}; ")
                  + "lowest: " + "; ".join(where(r) for r in d["lowest"]))
    for label in results["forms"]:
        w = results[label].get("worst_token")
        if w is not None:
            con.print(f"{label}: worst token is test sample {w['sample']}, position "
                      f"{w['position']} (cosine {results[label]['token_cos_worst']:.5f})")


def _print_model(con, results: dict, cm, report: bool) -> None:
    from rich.table import Table

    from compiler.report import TargetCheck, targets_table

    table = Table(title=f"nmx convert --model {results['model']}: {results['description']}")
    for col in ("form", "accuracy", "delta (pp)", "agreement w/ float", "output cosine",
                "token cosine mean / worst", "eval time (s)"):
        table.add_column(col)
    table.add_row("float (PyTorch)", f"{100 * results['float']:.2f}%", "", "", "", "", "")
    for label in results["forms"]:
        r = results[label]
        tok = (f"{r['token_cos_mean']:.5f} / {r['token_cos_worst']:.5f}"
               if "token_cos_mean" in r else "")
        table.add_row(label, f"{100 * r['accuracy']:.2f}%", f"{r['delta_pp']:+.2f}",
                      f"{100 * r['agreement']:.2f}%", f"{r['cosine']:.5f}", tok,
                      f"{r['seconds']:.2f}")
    con.print(table)
    if results["functions"]:
        ft = Table(title="PWL functions (calibrated ranges; errors at the epilogue's precision)")
        for col in ("function", "segments", "nodes", "max abs err", "mean abs err",
                    "max abs err after output rounding+clipping"):
            ft.add_column(col)
        for name, f in results["functions"].items():
            ft.add_row(name, str(f["segments"]), str(f["nodes"]), f"{f['max_abs']:.2e}",
                       f"{f['mean_abs']:.2e}",
                       f"{f['output_max_abs']:.2e}")
        con.print(ft)
    else:
        con.print("PWL functions: none (relu-class activations are exact tables)")
    checks = [TargetCheck(**c) for c in results["targets"]]
    con.print(targets_table(checks, title=f"issue-#4 targets: {results['model']}"))
    _print_diagnosis(con, results)
    if "hidden_states" in results:
        h = results["hidden_states"]
        con.print(f"hidden states: the classifier's own node {h['node']} ({h['module']}, int"
                  f"{h['out_bits']} in the int8 form); cosine over {h['tokens']} "
                  f"{h['token_set']} of the test split")
    s = results["seconds"]
    times = (f"time: total {s['total']:.1f}s; load {s['load']:.1f}s, convert {s['convert']:.1f}s "
             f"(capture+lower {s['capture+lower']:.1f}s, calibrate {s['calibrate']:.1f}s, "
             f"quantize+fit {s['quantize+fit']:.1f}s)")
    for key in ("precision search", "finetune"):
        if key in s:
            times += f", {key} {s[key]:.1f}s"
    con.print(times)
    if report:  # the report below states the capture, folding, host ops and 16-bit tensors
        con.print(f"matrix graph: {results['nodes']} GEMM nodes")
    else:
        con.print(f"matrix graph: {results['nodes']} GEMM nodes, capture via "
                  f"{results['capture']}")
        con.print(f"folded at conversion time: {len(results['folded'])} item(s)"
                  + (" (--report lists them)" if results["folded"] else ""))
        con.print("host pre-processing: " + ("; ".join(results["host_ops"]) or "none"))
        con.print("16-bit operand tensors: " + (", ".join(results["wide"]) or "none"))
        if results["wide_weights"]:
            con.print("16-bit weights: " + ", ".join(results["wide_weights"]))
        con.print(results["precision"])
    if "finetune" in results:
        f = results["finetune"]
        agree = ", ".join(f"{100 * v:.2f} %" for v in f["val_agreement"])
        con.print(f"fine-tuning: {f['epochs']} epoch(s) at lr {f['lr']:g}, "
                  f"{'labels + distillation' if f['labels'] else 'distillation only'}; "
                  f"held-out agreement with float per epoch (0 = as converted): {agree}; "
                  f"kept epoch {f['best_epoch']}")
    g = results["gemm_macs"]
    con.print(f"GEMM work per call on example-shaped inputs: {g['int8_graph']:,} MACs as an "
              f"int8 graph (dense identity/diagonal operands counted in full), "
              f"+{g['extra_for_16bit']:,} MACs in "
              f"{g['extra_passes']} extra int8 passes for the 16-bit operands")
    if report:
        con.print(cm.report().render(width=150))


def _target_status(results: dict) -> str:
    checks = [c for c in results["targets"] if c["met"] is not None and c["binding"]]
    missed = [c for c in checks if not c["met"]]
    text = f"{len(checks) - len(missed)}/{len(checks)} met"
    short = {"drop_pp": "top-1", "agreement": "agreement", "token_cos_mean": "cos mean",
             "token_cos_worst": "cos worst", "agreement_decisive": "decisive agreement"}
    if missed:
        text += "; missed: " + ", ".join(f"{short[c['metric']]} {c['form']}" for c in missed)
    loose = [c for c in results["targets"] if c["met"] is False and not c["binding"]]
    if loose:
        text += "; not binding, missed: " + ", ".join(f"{short[c['metric']]} {c['form']}"
                                                     for c in loose)
    unrun = [c for c in results["targets"] if c["met"] is None]
    if unrun:
        text += f"; {len(unrun)} not run"
    return text


def _summary(con, all_results: list[dict]) -> None:
    from rich.table import Table

    t = Table(title="nmx convert --model all: summary (test split; delta/agreement vs float)")
    for col in ("model", "float", "float-pwl (Δ pp)", "int8 (Δ pp)", "int8 agreement",
                "int8 token cos mean/worst", "int8 finetuned (Δ pp)", "targets", "time (s)"):
        t.add_column(col, overflow="fold")
    for r in all_results:
        p, i = r["float-pwl"], r["int8"]
        f = r.get("int8 finetuned")
        tok = (f"{i['token_cos_mean']:.5f} / {i['token_cos_worst']:.5f}"
               if "token_cos_mean" in i else "-")
        t.add_row(r["model"], f"{100 * r['float']:.2f}%",
                  f"{100 * p['accuracy']:.2f}% ({p['delta_pp']:+.2f})",
                  f"{100 * i['accuracy']:.2f}% ({i['delta_pp']:+.2f})",
                  f"{100 * i['agreement']:.2f}%", tok,
                  "-" if f is None else f"{100 * f['accuracy']:.2f}% ({f['delta_pp']:+.2f})",
                  _target_status(r), f"{r['seconds']['total']:.1f}")
    con.print(t)


def run(args: argparse.Namespace) -> int:
    """Convert, evaluate and print the tables (one model, or every zoo model for ``all``)."""
    from rich.console import Console

    from compiler.quant.precision import WIDE_POLICIES
    from compiler.zoo import MODEL_NAMES, UnknownModelError

    names = list(MODEL_NAMES) if args.model == "all" else [args.model]
    if args.model != "all" and args.model not in MODEL_NAMES:
        raise UnknownModelError(f"unknown zoo model {args.model!r}; the zoo has: "
                                f"{', '.join(MODEL_NAMES)}, or 'all'")
    named = WIDE_POLICIES
    wide = args.wide if args.wide in named else [w for w in args.wide.split(",") if w]
    if args.json:  # before minutes of conversion, not after
        files.check_writable(args.json, "--json")
    con = Console(width=150)
    everything = []
    for name in names:
        from compiler.zoo import spec

        epochs = args.finetune
        if args.model == "all" and spec(name).task != "classification":
            epochs = 0
        results, cm = measure(name, segments=args.segments, clipping=args.clipping, wide=wide,
                              wide_budget=args.wide_budget, wide_max=args.wide_max,
                              finetune_epochs=epochs, lr=args.lr)
        if args.model != "all" or args.report:
            _print_model(con, results, cm, args.report)
        else:
            con.print(f"{name}: {_target_status(results)} "
                      f"({results['seconds']['total']:.1f}s)")
        everything.append(results)
    if args.model == "all":
        from compiler.report import TargetCheck, targets_table

        _summary(con, everything)
        checks = []
        for r in everything:
            for c in r["targets"]:
                c = dict(c, target=f"{r['model']}: {c['target']}")
                checks.append(TargetCheck(**c))
        con.print(targets_table(checks, title="issue-#4 targets, every zoo model"))
        if not args.report:
            for r in everything:
                if "diagnosis" in r or "hidden_states" in r:
                    con.print(f"{r['model']}:")
                    _print_diagnosis(con, r)
    if args.json:
        files.write_json(args.json, everything if args.model == "all" else everything[0],
                         "--json")
    return 0
