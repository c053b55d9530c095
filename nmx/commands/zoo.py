"""``nmx zoo``: the model zoo's weights and how its accuracy targets hold across training seeds.

- ``nmx zoo list``: every model, where its weights come from (shipped, cached or trained now), its
  fingerprint and float test accuracy.
- ``nmx zoo ship [NAME ...]``: regenerate the shipped weights (``compiler/zoo/weights``) of the
  default specs: train each (one CPU thread; reuses ``build/zoo`` when it holds the same spec),
  write ``<name>_<fingerprint>.npz`` and update ``SHA256SUMS``.
- ``nmx zoo sweep --seeds N``: train every model from seeds ``0 .. N-1`` (seed 0 is the shipped
  one; the others train on first use and are cached), convert each as ``nmx convert`` does and
  print, per target and form, the mean, the worst and the pass count across seeds, plus the
  int8 logit error and the float top-2 margins of the predictions that flip.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from nmx import files

__all__ = ["add_arguments", "run", "summarise"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``nmx zoo``'s sub-actions."""
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("list", help="where each model's weights come from, and its float accuracy")
    ship = sub.add_parser("ship", help="regenerate the shipped weights (compiler/zoo/weights)")
    ship.add_argument("names", nargs="*", metavar="NAME", help="default: every zoo model")
    sweep = sub.add_parser("sweep", help="targets across training seeds: mean, worst, passes")
    sweep.add_argument("--seeds", type=int, default=5, help="train from seeds 0..SEEDS-1 (5)")
    sweep.add_argument("--models", default="all",
                       help="comma-separated zoo model names, or 'all' (default)")
    sweep.add_argument("--finetune", type=int, default=1, metavar="EPOCHS",
                       help="fine-tuning epochs for the 'int8 finetuned' targets of the "
                            "classification models (default 1; 0 skips those targets)")
    sweep.add_argument("--jobs", type=int, default=1,
                       help="models converted in parallel processes (default 1)")
    sweep.add_argument("--results", default=str(Path("build") / "zoo" / "sweep"),
                       metavar="DIR", help="where each (model, seed) result is kept, under a "
                       "digest of the conversion code, and reused (default build/zoo/sweep)")
    sweep.add_argument("--reverse", action="store_true",
                       help="take the (model, seed) entries in reverse order (a second process "
                            "sharing --results then works from the other end)")
    sweep.add_argument("--json", metavar="PATH", help="write every seed's results as JSON")
    sweep.add_argument("--markdown", action="store_true",
                       help="print the table as Markdown (as quoted in docs/zoo.md)")


def _list() -> int:
    from compiler.zoo import MODEL_NAMES, load

    print(f"{'model':<10} {'weights':<8} {'float acc':>9}  file")
    for name in MODEL_NAMES:
        zm = load(name)
        print(f"{name:<10} {zm.weights_source:<8} {100 * zm.float_accuracy:>8.2f}%  "
              f"{zm.checkpoint}")
    return 0


def _ship(names: list[str]) -> int:
    from compiler.zoo import MODEL_NAMES, cache, spec, weights_spec
    from compiler.zoo.training import train_checkpoint

    for name in names or MODEL_NAMES:
        spec(name)  # unknown names fail before any training
    for name in names or MODEL_NAMES:
        t0 = time.perf_counter()
        entry, config, data, digest = weights_spec(name)
        checkpoint, source_path, source = cache.load_weights(
            name, digest, lambda e=entry, c=config, d=data: train_checkpoint(e, c, d),
            shipped=False)
        path = cache.save_shipped(name, digest, checkpoint)
        print(f"{name:<10} {path.name} ({path.stat().st_size:,} bytes) from {source} "
              f"{source_path.name} in {time.perf_counter() - t0:.1f}s (training CPU time "
              f"{checkpoint['train_cpu_seconds']:.1f}s)")
    return 0


def _short(metric: str, v: float) -> str:
    if metric == "drop_pp":
        return f"{v:.2f} pp"
    if metric in ("agreement", "agreement_decisive"):
        return f"{100 * v:.2f} %"
    return f"{v:.5f}"


def _target_text(row: dict) -> str:
    text = f"{row['target']} ({row['comparison']} {_short(row['metric'], row['threshold'])})"
    return text if row["binding"] else text + " (not binding)"


def summarise(runs: list[dict]) -> list[dict]:
    """Per (model, target, form): the measured values across seeds, their mean, the worst (by
    the target's direction) and the number of seeds that meet it.

    ``runs`` are :func:`nmx.commands.convert.measure` results (one per model and seed).
    """
    rows: dict[tuple, dict] = {}
    for r in runs:
        for c in r["targets"]:
            if c["measured"] is None:
                continue
            key = (r["model"], c["target"], c["form"])
            row = rows.setdefault(key, {"model": r["model"], "target": c["target"],
                                        "form": c["form"], "metric": c["metric"],
                                        "comparison": c["comparison"],
                                        "threshold": c["threshold"],
                                        "binding": c.get("binding", True), "values": [],
                                        "seeds": [], "passes": 0})
            row["values"].append(c["measured"])
            row["seeds"].append(r["seed"])
            row["passes"] += bool(c["met"])
    for row in rows.values():
        v = row["values"]
        row["mean"] = statistics.fmean(v)
        row["worst"] = min(v) if row["comparison"] == ">=" else max(v)
    return list(rows.values())


def _print_sweep(con, runs: list[dict], seeds: int, markdown: bool) -> None:
    from rich.table import Table

    rows = summarise(runs)
    head = ("model", "target", "form", "mean", "worst", "passes")
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + " --- |" * len(head))
        for r in rows:
            print(f"| {r['model']} | {_target_text(r)} | {r['form']} | "
                  f"{_short(r['metric'], r['mean'])} | {_short(r['metric'], r['worst'])} | "
                  f"{r['passes']}/{len(r['values'])} |")
    else:
        t = Table(title=f"nmx zoo sweep: every target across {seeds} training seeds")
        for col in head:
            t.add_column(col, overflow="fold")
        for r in rows:
            t.add_row(r["model"], _target_text(r), r["form"],
                      _short(r["metric"], r["mean"]), _short(r["metric"], r["worst"]),
                      f"{r['passes']}/{len(r['values'])}")
        con.print(t)
    t = Table(title="per seed: float accuracy, int8 agreement, int8 logit error (per-sample max "
                    "|Δ|: median / p99 / max) and the float top-2 margins of flipped predictions")
    for col in ("model", "seed", "float", "int8", "agreement", "logit error", "margin bound",
                "ambiguous", "flip margins"):
        t.add_column(col, overflow="fold")
    for r in runs:
        i = r["int8"]
        g = i["logits"]
        t.add_row(r["model"], str(r["seed"]), f"{100 * r['float']:.2f}%",
                  f"{100 * i['accuracy']:.2f}%", f"{100 * i['agreement']:.2f}%",
                  f"{g['err_p50']:.3f} / {g['err_p99']:.3f} / {g['err_max']:.3f}",
                  f"{g['margin_bound']:.3f}", str(g["ambiguous"]),
                  ", ".join(f"{m:.4f}" for m in g["flip_margins"]) or "-")
    con.print(t)


def _code_digest() -> str:
    """12 hex digits of the conversion code's text (``compiler`` and ``nmx convert``'s
    ``measure``): sweep results are reused only while it is unchanged."""
    import hashlib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for path in sorted([*(root / "compiler").rglob("*.py"),
                        root / "nmx" / "commands" / "convert.py"]):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _measure_job(job: tuple[str, int, int, str]) -> dict:
    """One sweep entry: ``measure`` zoo model ``name`` trained from ``seed`` (a process-pool
    task: returns the JSON-serialisable results only). The result is stored as a JSON file in
    ``folder`` and read back when present (a sweep interrupted, or run by several processes in
    parallel, redoes nothing); an ``fcntl`` lock keeps two processes off the same entry."""
    import fcntl
    import json
    from pathlib import Path

    from nmx.commands.convert import measure

    name, seed, epochs, folder = job
    path = Path(folder) / f"{name}_seed{seed}_ft{epochs}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():
            return json.loads(path.read_text())
        results = measure(name, seed=seed, finetune_epochs=epochs)[0]
        files.write_json(path.with_suffix(".tmp"), results, "sweep result")
        path.with_suffix(".tmp").replace(path)
    return results


def _sweep(args: argparse.Namespace) -> int:
    from rich.console import Console

    from compiler.zoo import MODEL_NAMES, ZooError, spec
    from nmx.commands.convert import _target_status

    if args.seeds < 1:
        raise ZooError(f"--seeds must be at least 1, got {args.seeds}")
    if args.finetune < 0:
        raise ZooError(f"--finetune must be >= 0, got {args.finetune}")
    names = list(MODEL_NAMES) if args.models == "all" else args.models.split(",")
    for name in names:
        spec(name)
    if args.json:
        files.check_writable(args.json, "--json")
    if args.jobs < 1:
        raise ZooError(f"--jobs must be at least 1, got {args.jobs}")
    con = Console(width=150)
    # the slowest conversions first, so parallel workers finish together
    cost = {"bert": 0, "vit": 1, "mobilenet": 2}
    folder = str(Path(args.results) / _code_digest())
    jobs = [(name, seed, args.finetune if spec(name).task == "classification" else 0, folder)
            for seed in range(args.seeds)
            for name in sorted(names, key=lambda n: cost.get(n, len(cost)))]
    if args.reverse:
        jobs.reverse()
    start = time.perf_counter()
    if args.jobs == 1:
        done = map(_measure_job, jobs)
    else:
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(max_workers=args.jobs)
        done = pool.map(_measure_job, jobs)
    runs = []
    for results in done:
        runs.append(results)
        con.print(f"seed {results['seed']} {results['model']} ({results['weights']} weights): "
                  f"{_target_status(results)} ({results['seconds']['total']:.1f}s)")
    if args.jobs > 1:
        pool.shutdown()
    wall = time.perf_counter() - start
    runs.sort(key=lambda r: (names.index(r["model"]), r["seed"]))
    _print_sweep(con, runs, args.seeds, args.markdown)
    con.print(f"wall time {wall:.0f}s for {args.seeds} seeds x {len(names)} models, "
              f"{args.jobs} job(s) (training on first use included)")
    if args.json:
        files.write_json(args.json, {"seeds": args.seeds, "models": names,
                                     "finetune": args.finetune, "jobs": args.jobs,
                                     "wall_seconds": wall,
                                     "summary": summarise(runs), "runs": runs}, "--json")
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch ``nmx zoo ACTION``."""
    if args.action == "list":
        return _list()
    if args.action == "ship":
        return _ship(args.names)
    return _sweep(args)
