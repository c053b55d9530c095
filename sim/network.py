"""A zoo network compiled and run on a machine backend, checked and measured (``nmx sim``).

:func:`simulate` converts a zoo model, compiles it (one program for the whole network, and a
profile compile with one program per node), runs the first ``samples`` test inputs on a machine
backend (:class:`GoldenMachine`, or the Verilated accelerator :class:`RtlMachine`) and checks:

- every run's final DRAM image equals the golden model's byte for byte (RTL backend), and the
  outputs equal the integer executor's bit for bit; on a mismatch :mod:`compiler.backend.locate`
  names the first differing node (a debug compile of the same network rerun on both);
- the hardware's outputs against PyTorch's float model: accuracy (float / hardware), agreement,
  output cosine, per-token cosine of the final hidden states (transformers), against the zoo's
  targets (:mod:`compiler.report`);
- per-node figures from per-node runs of the profile compile (each node its own program, cold
  on-chip caches, activations through DRAM; counters read after each), beside the cycle model's
  prediction of the same program; totals of the whole-program run beside the cycle model's.

A "sample" is one test input of the zoo model (an image, a sequence); the bundle's batch is the
converted model's example batch, so one run computes several samples. The GCN classifies the
nodes of one graph: one run, the test split's nodes scored.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hw.config import AcceleratorConfig
from hw.errors import NmxError
from hw.isa import Program
from sim.cycle_model import estimate_cycles
from sim.dram_image import DramImage
from sim.golden import GoldenModel

__all__ = ["BACKENDS", "GoldenMachine", "MachinePool", "MachineRun", "NetworkSimulation",
           "default_jobs", "simulate"]

BACKENDS = ("rtl", "golden")

#: Stall counters shown per node (hw.registers names -> short labels).
STALLS = {"STALL_L2C": "l2c", "STALL_C2L": "c2l", "STALL_C2S": "c2s", "STALL_S2C": "s2c",
          "STALL_AXI_READ": "axi rd", "STALL_AXI_WRITE": "axi wr", "STALL_FETCH": "fetch",
          "STALL_DISPATCH": "dispatch"}


@dataclass
class MachineRun:
    """One program run on a machine: final DRAM, status, the machine's counters (None for the
    golden model, which has none) and the wall time of the run."""

    dram: DramImage
    code: int
    offset: int
    counters: dict[str, int] | None
    seconds: float
    trace: list | None = None

    @property
    def cycles(self) -> int | None:
        return None if self.counters is None else int(self.counters["CYCLES"])


class GoldenMachine:
    """The golden ISA model as a machine (no cycle counters: the cycle model predicts them)."""

    name = "golden"

    def __init__(self, config: AcceleratorConfig):
        self.config = config

    def run(self, program: Program, image: DramImage) -> MachineRun:
        t = time.perf_counter()
        res = GoldenModel(self.config).run(program, image)
        return MachineRun(res.dram, int(res.status.code), res.status.pc, None,
                          time.perf_counter() - t, res.trace)

    def close(self) -> None:
        pass


def _machine(backend: str, config: AcceleratorConfig, **options):
    if backend == "golden":
        return GoldenMachine(config)
    if backend == "rtl":
        from sim.rtl_machine import RtlMachine

        return RtlMachine(config, **options)
    raise NmxError(f"backend {backend!r} unknown; choose one of {', '.join(BACKENDS)}")


@dataclass
class NetworkSimulation:
    """Everything :func:`simulate` measured (``to_json`` is the JSON report)."""

    model: str
    config: AcceleratorConfig
    backend: str
    samples: int
    runs: int
    batch: int
    checks: dict = field(default_factory=dict)
    accuracy: dict = field(default_factory=dict)
    targets: list = field(default_factory=list)
    nodes: list = field(default_factory=list)
    totals: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    mismatch: dict | None = None

    @property
    def ok(self) -> bool:
        """Bit-exact everywhere and every binding target met."""
        return (self.mismatch is None and all(self.checks.values())
                and all(t["met"] for t in self.targets if t["binding"]))

    def to_json(self) -> dict:
        return {"model": self.model, "config": self.config.to_dict(),
                "fingerprint": self.config.fingerprint, "backend": self.backend,
                "samples": self.samples, "runs": self.runs, "batch": self.batch,
                "ok": self.ok, "checks": self.checks, "accuracy": self.accuracy,
                "targets": self.targets, "nodes": self.nodes, "totals": self.totals,
                "timing": self.timing, "mismatch": self.mismatch}


def _inputs(zm, samples: int):
    if zm.task == "node-classification":
        return tuple(zm.eval_inputs), None
    n = min(samples, zm.eval_inputs[0].shape[0])
    return tuple(t[:n] for t in zm.eval_inputs), n


def _hidden(zm, cm):
    from compiler.zoo import hidden_states
    from nmx.commands.convert import _hidden_node

    hidden = hidden_states(zm)
    if hidden is None:
        return None, None, None
    backbone, mask = hidden
    return _hidden_node(cm, backbone, zm.example_inputs), backbone, mask


def _node_ints(bundle, dram, name: str) -> torch.Tensor:
    from compiler.backend.locate import node_output

    planes = node_output(bundle, dram, name)
    v = 256 * planes["hi"] + planes["lo"] if "hi" in planes else next(iter(planes.values()))
    return torch.from_numpy(v)


def _stalls(c: dict | None) -> str:
    if not c:
        return ""
    top = sorted(((c[k], v) for k, v in STALLS.items() if c.get(k)), reverse=True)[:3]
    return ", ".join(f"{v} {n:,}" for n, v in top)


def _model_stalls(cr) -> str:
    items = []
    for unit, u in cr.units.items():
        for cause, n in u.stalls.items():
            items.append((n, f"{unit}: {cause}"))
    return ", ".join(f"{c} {n:,}" for n, c in sorted(items, reverse=True)[:2])


def _compare(run: MachineRun, gold: MachineRun, what: str) -> bool:
    """Whether a machine run ended as the golden model's run did (status, word, final DRAM);
    a golden run that failed is an error."""
    if gold.code != 0:
        raise NmxError(f"{what}: the golden model ended with status {gold.code} at word "
                       f"{gold.offset}")
    return (run.code, run.offset) == (gold.code, gold.offset) and np.array_equal(
        run.dram.data, gold.dram.data)


class MachinePool:
    """Programs run on several machines at once, one thread each.

    The Verilated machine simulates inside C++ and ctypes releases the GIL there, so ``jobs``
    RTL machines use ``jobs`` cores while the calling thread runs the golden model and the
    checks. Programs go to the machines in turn (the i-th submitted to machine i mod jobs), so
    what each machine runs, and in which order, is the same on every run of the same job.
    """

    def __init__(self, machines):
        self.machines = list(machines)
        self._ex = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"nmx-machine-{i}")
                    for i in range(len(self.machines))]
        self._next = 0

    @property
    def name(self) -> str:
        return self.machines[0].name

    def submit(self, program: Program, image: DramImage) -> Future:
        """Run ``program`` on ``image`` on the next machine in turn; a future of its run."""
        i = self._next
        self._next = (i + 1) % len(self.machines)
        return self._ex[i].submit(self.machines[i].run, program, image)

    def stop(self) -> None:
        """Drop queued programs and wait for the running ones."""
        for ex in self._ex:
            ex.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        """:meth:`stop`, then free the machines."""
        self.stop()
        for m in self.machines:
            m.close()


def default_jobs(backend: str) -> int:
    """Machines run in parallel: the golden model holds the GIL (1); the RTL up to 2 cores."""
    return 1 if backend == "golden" else max(1, min(2, os.cpu_count() or 1))


def simulate(model: str, config: AcceleratorConfig, *, samples: int = 32,
             backend: str = "rtl", out_dir: Path | None = None, progress: bool = True,
             console=None, latency: int | None = None,
             backpressure: float = 0.0, jobs: int | None = None) -> NetworkSimulation:
    """Convert, compile and run zoo model ``model`` on ``backend``; see the module docstring.

    ``latency`` (default: the cycle model's) and ``backpressure`` configure the RTL backend's
    DRAM model; ``jobs`` machines run at once (default :func:`default_jobs`). Writes
    ``report.json`` and ``utilisation.png`` into ``out_dir`` when given.
    """
    from rich.progress import Progress

    from compiler.backend import compile as compile_bundle
    from compiler.backend.locate import locate
    from compiler.convert import convert
    from compiler.report import check_targets, compare
    from compiler.zoo import MODEL_NAMES, load
    from nmx.commands.convert import _scored, logit_statistics

    if model not in MODEL_NAMES:
        raise NmxError(f"unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise NmxError(f"samples must be a positive int, got {samples!r}")
    if backend not in BACKENDS:
        raise NmxError(f"backend {backend!r} unknown; choose one of {', '.join(BACKENDS)}")
    jobs = default_jobs(backend) if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= 64:
        raise NmxError(f"jobs must be an int from 1 to 64, got {jobs!r}")
    t_all = time.perf_counter()
    torch.set_num_threads(1)
    timing: dict[str, float] = {}
    t = time.perf_counter()
    zm = load(model)
    cm = convert(zm.model, zm.example_inputs, zm.calibration)
    node, backbone, mask = _hidden(zm, cm)
    timing["convert"] = time.perf_counter() - t
    t = time.perf_counter()
    keep = (node.name,) if node is not None else ()
    bundle = compile_bundle(cm, config, batch=1, name=model, keep=keep)
    timing["compile"] = time.perf_counter() - t
    inputs, n = _inputs(zm, samples)
    stacked, orig = cm.to_samples(inputs)
    runs = stacked[0].shape[0]
    sim = NetworkSimulation(model, config, backend, n if n is not None else 1, runs,
                            bundle.batch)
    t = time.perf_counter()
    options = {"latency": latency, "backpressure": backpressure} if backend == "rtl" else {}
    pool = MachinePool(_machine(backend, config, **options) for _ in range(jobs))
    golden = GoldenMachine(config)
    own_golden = pool.name == "golden"  # the machine is the golden model: nothing to compare
    timing["machine_setup"] = time.perf_counter() - t
    timing["jobs"] = jobs
    hw_outs: list[list[torch.Tensor]] = []
    hw_hidden: list[torch.Tensor] = []
    whole = None
    bit_dram = bit_int = True
    machine_seconds = golden_seconds = 0.0
    cycles_total = 0
    try:
        with Progress(transient=True, disable=not progress, console=console) as bar:
            t_runs = time.perf_counter()
            task = bar.add_task(f"{model}: {runs} run(s) on {backend}", total=runs)
            pending = []
            for r in range(runs):
                one = [s[r : r + 1] for s in stacked]
                image = bundle.image_for(bundle.quantize_inputs(one))
                pending.append((one, image, pool.submit(bundle.program, image)))
            # the per-node runs queue behind the whole runs; the golden model's side now
            t = time.perf_counter()
            profile = _ProfileRuns(cm, config, model, stacked, pool, golden, own_golden)
            timing["profile_golden"] = time.perf_counter() - t
            for r, (one, image, fut) in enumerate(pending):
                run = fut.result()
                t = time.perf_counter()
                gold = run if own_golden else golden.run(bundle.program, image)
                golden_seconds += 0.0 if own_golden else time.perf_counter() - t
                same = _compare(run, gold, f"{model} run {r}")
                machine_seconds += run.seconds
                if run.cycles is not None:
                    cycles_total += run.cycles
                outs, _ints = bundle.read_outputs(run.dram)
                ref = cm.run_samples(one, "int")
                exact = all(torch.equal(a, b) for a, b in zip(outs, ref, strict=True))
                bit_dram &= same
                bit_int &= exact
                if r == 0:
                    whole = (run, gold)
                if not (same and exact):
                    pool.stop()
                    sim.mismatch = _locate_mismatch(cm, config, model, one, pool.machines[0],
                                                    golden, locate, same, exact, r)
                    break
                hw_outs.append(outs)
                if node is not None:
                    hw_hidden.append(_node_ints(bundle, run.dram, node.name).double()
                                     * cm.quant.scales[node.name])
                bar.advance(task)
            timing["runs"] = time.perf_counter() - t_runs
            sim.checks = {"final DRAM equal to the golden model's": bit_dram,
                          "outputs equal to the integer executor's": bit_int}
            if sim.mismatch is not None:
                sim.timing = {**timing, "total": time.perf_counter() - t_all}
                if out_dir is not None:
                    write_outputs(sim, Path(out_dir))
                return sim
            # ---- accuracy against PyTorch
            with torch.no_grad():
                ref_out = zm.model(*inputs)
                ref_out = ref_out[0] if isinstance(ref_out, tuple) else ref_out
            out = cm._unstack(torch.cat([o[0] for o in hw_outs]), orig)
            labels = zm.eval_labels if n is None else zm.eval_labels[:n]
            acc_f = zm.metric(ref_out, labels)
            acc_h = zm.metric(out, labels)
            stats = logit_statistics(_scored(zm, ref_out), _scored(zm, out))
            agree = float((_scored(zm, out).argmax(-1) == _scored(zm, ref_out).argmax(-1))
                          .float().mean())
            sim.accuracy = {"float": acc_f, "hardware": acc_h, "agreement": agree,
                            "agreement_decisive": stats["agreement_decisive"],
                            "output_cosine": compare(ref_out, out)[2]}
            meas = {"drop_pp": 100 * (acc_f - acc_h), "agreement": agree,
                    "agreement_decisive": stats["agreement_decisive"]}
            if node is not None:
                with torch.no_grad():
                    ref_h = backbone(*inputs)
                got_h = cm._unstack(torch.cat(hw_hidden), orig)
                cos = torch.nn.functional.cosine_similarity(got_h.double(), ref_h.double(),
                                                            dim=-1)
                cos = cos[mask[: cos.shape[0]]] if mask is not None else cos.reshape(-1)
                meas.update(token_cos_mean=float(cos.mean()), token_cos_worst=float(cos.min()))
                sim.accuracy.update(token_cos_mean=float(cos.mean()),
                                    token_cos_worst=float(cos.min()), tokens=int(cos.numel()))
            # the hardware computes the int8 form: its targets, measured on the hardware's outputs
            sim.targets = [c.to_dict() for c in check_targets(model, {"int8": meas})
                           if c.form == "int8"]
            # ---- per-node runs of the profile compile
            t = time.perf_counter()
            ptask = bar.add_task(f"{model}: {len(profile.rows)} per-node run(s)",
                                 total=len(profile.rows))
            sim.nodes, node_seconds, node_exact = profile.collect(lambda: bar.advance(ptask))
            timing["profile"] = time.perf_counter() - t
        if not own_golden:
            sim.checks["per-node runs' final DRAM equal to the golden model's"] = node_exact
        machine_seconds += node_seconds
        run, gold = whole
        cr = estimate_cycles(gold.trace, config)
        sim.totals = {"model_cycles": cr.total_cycles, "array_macs_model": int(cr.macs),
                      "instructions": len(bundle.program.instructions),
                      "peak_macs_per_cycle": config.peak_macs_per_cycle}
        if run.counters is not None:
            c = run.counters
            sim.totals.update(rtl_cycles=c["CYCLES"], array_macs=c["ARRAY_MACS"],
                              utilisation=c["ARRAY_MACS"] / (config.peak_macs_per_cycle
                                                              * c["CYCLES"]),
                              model_error=(cr.total_cycles - c["CYCLES"]) / c["CYCLES"],
                              counters=c, cycles_all_runs=cycles_total)
        else:
            sim.totals["utilisation_model"] = cr.utilisation
        node_rtl = [x["rtl_cycles"] for x in sim.nodes if x["rtl_cycles"] is not None]
        if node_rtl:
            sim.totals["per_node_rtl_cycles"] = int(sum(node_rtl))
            cycles_total += int(sum(node_rtl))
        sim.totals["per_node_model_cycles"] = int(sum(x["model_cycles"] for x in sim.nodes))
    finally:
        pool.close()
    timing["machine_run"] = machine_seconds
    timing["golden_check"] = golden_seconds
    timing["total"] = time.perf_counter() - t_all
    if cycles_total and machine_seconds:
        timing["simulated_cycles_per_second"] = cycles_total / machine_seconds
        timing["simulated_cycles"] = cycles_total
        timing["simulated_cycles_per_wall_second"] = cycles_total / (
            timing["runs"] + timing["profile"])
    sim.timing = timing
    if out_dir is not None:
        write_outputs(sim, Path(out_dir))
    return sim


def _locate_mismatch(cm, config, model, one, machine, golden, locate, same, exact, r) -> dict:
    """Rerun run ``r`` from a debug compile on the machine and the golden model; locate."""
    from compiler.backend import compile as compile_bundle
    from compiler.backend.locate import reference_values

    dbg = compile_bundle(cm, config, batch=1, name=model, mode="debug")
    q = dbg.quantize_inputs(one)
    image = dbg.image_for(q)
    run = machine.run(dbg.program, image)
    gold = golden.run(dbg.program, image) if machine.name != "golden" else run
    info = {"run": r, "final DRAM equal": same, "outputs equal to the integer executor": exact}
    m = None
    if machine.name != "golden":
        m = locate(dbg, run.dram, gold.dram)
        info["against"] = "golden model"
    if m is None:
        m = locate(dbg, gold.dram, reference_values(dbg, q))
        info["against"] = "integer executor (golden model's run)"
    info["first"] = m.to_json() if m is not None else None
    if m is not None:
        info["text"] = str(m)
        return info
    diff = np.nonzero(run.dram.data != gold.dram.data)[0]
    if diff.size:
        a = int(diff[0])
        where = [n for n, reg in run.dram.regions.items() if reg.addr <= a < reg.end]
        info["text"] = (f"every node output agrees, but {diff.size} DRAM bytes differ, the first "
                        f"at {a:#x} ({', '.join(where) or 'outside every named region'}): "
                        f"{run.dram.data[a]:#04x}, golden {gold.dram.data[a]:#04x}")
    else:
        info["text"] = ("the debug compile's runs agree everywhere: the mismatch depends on "
                        "the program compile's DRAM reuse; compare its final images")
    return info


class _ProfileRuns:
    """Per node: its own program (profile compile) for the first run's inputs, run on the
    machines from the golden model's DRAM image after the previous node (the same bytes as the
    machine's when it is bit-exact, so every node run is independent and they run in parallel);
    counters read after it; the cycle model's prediction of the same program beside it.

    The constructor compiles, runs the golden chain and submits every node run to ``pool``;
    :meth:`collect` waits for them.
    """

    def __init__(self, cm, config, model, stacked, pool, golden, own_golden):
        from compiler.backend import compile as compile_bundle

        self.config, self.model, self.own_golden = config, model, own_golden
        prof = compile_bundle(cm, config, batch=1, name=model, mode="profile")
        one = [s[0:1] for s in stacked]
        image = prof.image_for(prof.quantize_inputs(one))
        self.rows = []
        for (name, program), nd in zip(prof.node_programs, prof.manifest["nodes"], strict=True):
            gold = golden.run(program, image)
            if gold.code != 0:
                raise NmxError(f"{model} node {name} (profile run): the golden model ended with "
                               f"status {gold.code} at word {gold.offset}")
            fut = None if own_golden else pool.submit(program, image)
            cr = estimate_cycles(gold.trace, config)
            row = {"node": name, "module": nd["module"],
                   "instructions": len(program.instructions),
                   "graph_macs": int(nd.get("float_macs", 0)), "model_cycles": cr.total_cycles,
                   "model_macs": int(cr.macs), "model_stalls": _model_stalls(cr),
                   "rtl_cycles": None, "array_macs": None, "utilisation": None, "stalls": "",
                   "model_error": None, "counters": None}
            self.rows.append((row, gold, fut, cr))
            image = gold.dram

    def collect(self, advance) -> tuple[list[dict], float, bool]:
        """(rows, seconds the machines ran, every node run equal to the golden model's)."""
        peak = self.config.peak_macs_per_cycle
        out, seconds, exact = [], 0.0, True
        for row, gold, fut, cr in self.rows:
            run = gold if fut is None else fut.result()
            if (run.code, run.offset) != (gold.code, gold.offset):
                raise NmxError(f"{self.model} node {row['node']} (profile run): status "
                               f"{run.code} at word {run.offset}, golden {gold.code} at "
                               f"{gold.offset}")
            if fut is not None:
                seconds += run.seconds
                exact &= bool(np.array_equal(run.dram.data, gold.dram.data))
            c = run.counters
            row["counters"] = c
            if c is not None:
                row.update(rtl_cycles=c["CYCLES"], array_macs=c["ARRAY_MACS"],
                           utilisation=c["ARRAY_MACS"] / (peak * c["CYCLES"])
                           if c["CYCLES"] else 0,
                           stalls=_stalls(c),
                           model_error=(cr.total_cycles - c["CYCLES"]) / c["CYCLES"]
                           if c["CYCLES"] else None,
                           bound="compute" if c["BUSY_COMPUTE"] >= max(c["BUSY_LOAD"],
                                                                       c["BUSY_STORE"])
                           else "DMA")
            else:
                row["utilisation_model"] = cr.utilisation
            out.append(row)
            advance()
        return out, seconds, exact


def write_outputs(sim: NetworkSimulation, out: Path) -> None:
    """``report.json`` and ``utilisation.png`` (per-node utilisation) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(sim.to_json(), indent=1, default=str))
    if not sim.nodes:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rtl = sim.nodes[0]["rtl_cycles"] is not None
    vals = [100 * (x["utilisation"] if rtl else x["utilisation_model"]) for x in sim.nodes]
    fig, ax = plt.subplots(figsize=(max(6, 0.22 * len(sim.nodes)), 4))
    ax.bar(range(len(vals)), vals)
    ax.set_xticks(range(len(vals)), [x["node"] for x in sim.nodes], rotation=90, fontsize=5)
    ax.set_ylabel("array utilisation % (per-node run)")
    src = "RTL counters" if rtl else "cycle model (golden backend)"
    ax.set_title(f"{sim.model} on {sim.config.rows}x{sim.config.cols} "
                 f"{sim.config.fingerprint}: per-node runs, {src}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "utilisation.png", dpi=120)
    plt.close(fig)
