"""Measured effect of 16-bit operands on the zoo transformers (BERT, ViT).

``python -m compiler.quant.wide_eval --model bert`` converts the model twice per policy (``none``,
``layernorm``, ``transformer``, ``auto`` and any ``--wide`` lists): its backbone (final hidden
states) for the per-token cosine similarity to float, and the classifier for the agreement of its
predictions with float's.
"""

from __future__ import annotations

import time

import torch

from compiler.quant.wide import wide_cost
from compiler.report import token_cosines

__all__ = ["main", "measure_zoo"]


def measure_zoo(name: str, policies: dict, report=None) -> list[dict]:
    """Per-token cosine of the final hidden states and classification agreement with float for
    zoo transformer ``name`` under each ``policies`` entry (label -> ``wide`` argument);
    ``report(row)`` is called after each policy."""
    from compiler.convert import convert
    from compiler.zoo import ZooError, hidden_states, load

    zm = load(name)
    host = getattr(zm, "host_inputs", None)
    hidden = hidden_states(zm)
    if hidden is None:
        raise ZooError(f"{name!r} is not a zoo transformer; supported: bert, vit")
    backbone, mask = hidden
    with torch.no_grad():
        ref_h = backbone(*zm.eval_inputs)
        ref_y = zm.model(*zm.eval_inputs)
    rows = []
    for label, wide in policies.items():
        t0 = time.perf_counter()
        cb = convert(backbone, zm.example_inputs, zm.calibration, host_inputs=host, wide=wide)
        t_b = time.perf_counter() - t0
        cc = convert(zm.model, zm.example_inputs, zm.calibration, host_inputs=host, wide=wide)
        with torch.no_grad():
            h = cb(*zm.eval_inputs, mode="int")
            y = cc(*zm.eval_inputs, mode="int")
        cos = token_cosines(h, ref_h, mask)
        search = cb.wide_search
        rows.append({
            "model": name, "policy": label,
            "wide_backbone": list(cb.quant.wide), "wide_classifier": list(cc.quant.wide),
            "token_cos_mean": float(cos.mean()), "token_cos_worst": float(cos.min()),
            "agreement": float((y.argmax(-1) == ref_y.argmax(-1)).float().mean()),
            "accuracy": float(zm.metric(y, zm.eval_labels)),
            "float_accuracy": float(zm.metric(ref_y, zm.eval_labels)),
            "extra_gemm_passes": sum(c["consumer_passes"] + c["split_passes"]
                                     for c in wide_cost(cb.graph, cb.quant.wide)),
            "convert_seconds_backbone": t_b,
            "search": None if search is None else {
                "baseline": search.baseline, "final": search.final, "budget": search.budget,
                "steps": search.steps, "seconds": search.seconds,
                "best_alone": sorted(search.alone.items(), key=lambda kv: kv[1])[:8]},
        })
        if report is not None:
            report(rows[-1])
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m compiler.quant.wide_eval --model bert``: the measured effect of
    16-bit operands."""
    import argparse
    import json

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--model", required=True, choices=("bert", "vit"))
    p.add_argument("--wide", action="append", default=None,
                   help="extra explicit policy: comma-separated names/patterns (repeatable)")
    p.add_argument("--no-auto", action="store_true", help="skip the (slow) 'auto' policy")
    p.add_argument("--json", metavar="PATH")
    a = p.parse_args(argv)
    policies: dict = {"none": "none", "layernorm": "layernorm", "transformer": "transformer"}
    if not a.no_auto:
        policies["auto"] = "auto"
    for spec in a.wide or []:
        policies[spec] = spec.split(",")
    def show(r):
        print(f"{r['model']} wide={r['policy']}: per-token cosine mean {r['token_cos_mean']:.5f} "
              f"worst {r['token_cos_worst']:.5f}; classifier agreement "
              f"{100 * r['agreement']:.2f}% (accuracy {100 * r['accuracy']:.2f}%, float "
              f"{100 * r['float_accuracy']:.2f}%); 16-bit tensors (backbone) "
              f"{r['wide_backbone']}; extra GEMM passes {r['extra_gemm_passes']}; search "
              f"{r['search']}", flush=True)

    rows = measure_zoo(a.model, policies, show)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
