"""Per-node performance report of a compiled bundle (cycle model over a golden-model run).

For every node: the graph MACs (the float network's MACs: the node's terms, each once, for the
whole batch), the
array MACs issued (``R*C`` per operand row per weight block, padding included), the cycles the
node adds to the run (end of its last instruction minus end of the previous node's), array
utilisation (array MACs / (R*C*cycles)), DRAM bytes read and written, and whether its compute
unit or its DMA (load + store) was busier, and where its output went (kept in the scratchpad
for its readers, or DRAM and why). Totals per network, a rich table and a PNG plot.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from hw.isa import Load, Loadt, Store

__all__ = ["NodeFigures", "NetworkReport", "build_report"]


@dataclass
class NodeFigures:
    """Figures of one node (see the module docstring)."""

    name: str
    module: str
    instructions: int
    graph_macs: int
    array_macs: int
    cycles: int
    utilisation: float
    dram_read: int
    dram_written: int
    compute_busy: int
    dma_busy: int
    #: where the output went: "scratchpad" (kept on chip for its readers) or "DRAM: <why>"
    output: str = ""

    @property
    def bound(self) -> str:
        """``"compute"`` or ``"DMA"``: the busier side."""
        return "compute" if self.compute_busy >= self.dma_busy else "DMA"


@dataclass
class NetworkReport:
    """All nodes plus totals; ``cycle_report`` is the :class:`sim.cycle_model.CycleReport`."""

    name: str
    config: str
    batch: int
    nodes: list[NodeFigures]
    total_cycles: int
    array_macs: int
    graph_macs: int
    peak: int
    dram_bytes: int
    instructions: int
    compile_seconds: float

    @property
    def utilisation(self) -> float:
        """Array MACs / (R*C*total cycles)."""
        return self.array_macs / (self.peak * self.total_cycles) if self.total_cycles else 0.0

    @property
    def graph_utilisation(self) -> float:
        """Graph MACs / (R*C*total cycles): the useful fraction."""
        return self.graph_macs / (self.peak * self.total_cycles) if self.total_cycles else 0.0

    def to_json(self) -> dict:
        """JSON-serialisable form."""
        d = {k: v for k, v in asdict(self).items() if k != "nodes"}
        d["utilisation"] = self.utilisation
        d["graph_utilisation"] = self.graph_utilisation
        d["nodes"] = [{**asdict(n), "bound": n.bound} for n in self.nodes]
        return d

    def save_json(self, path) -> None:
        """Write :meth:`to_json` to ``path``."""
        with open(path, "w") as f:
            json.dump(self.to_json(), f, indent=1)

    def print(self, console=None) -> None:
        """Rich table of the nodes and the totals."""
        from rich.console import Console
        from rich.table import Table

        con = console or Console(width=max(Console().width, 150))
        t = Table(title=f"{self.name} on {self.config}, batch {self.batch}")
        for col in ("node", "module", "instr", "graph MACs", "array MACs", "cycles", "util %",
                    "DRAM rd", "DRAM wr", "bound", "output"):
            t.add_column(col, justify="left" if col in ("node", "module", "bound", "output")
                         else "right")
        for n in self.nodes:
            t.add_row(n.name, n.module, str(n.instructions), f"{n.graph_macs:,}",
                      f"{n.array_macs:,}", f"{n.cycles:,}", f"{100 * n.utilisation:.1f}",
                      f"{n.dram_read:,}", f"{n.dram_written:,}", n.bound, n.output)
        con.print(t)
        con.print(f"total: {self.total_cycles:,} cycles, {self.instructions:,} instructions, "
                  f"array MACs {self.array_macs:,} (utilisation {100 * self.utilisation:.1f} %), "
                  f"graph MACs {self.graph_macs:,} ({100 * self.graph_utilisation:.1f} % of "
                  f"peak), DRAM footprint {self.dram_bytes:,} bytes, compiled in "
                  f"{self.compile_seconds:.2f} s")

    def plot(self, path) -> None:
        """PNG bar chart of per-node utilisation."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(self.nodes)), 4))
        ax.bar(range(len(self.nodes)), [100 * n.utilisation for n in self.nodes])
        ax.set_xticks(range(len(self.nodes)), [n.name for n in self.nodes], rotation=90,
                      fontsize=6)
        ax.set_ylabel("array utilisation %")
        ax.set_title(f"{self.name} ({self.config}, batch {self.batch}): "
                     f"{100 * self.utilisation:.1f} % overall")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


def build_report(bundle, run, cycle_report=None, graph_macs: dict[str, int] | None = None
                 ) -> NetworkReport:
    """Figures of ``bundle`` from a golden-model ``run`` (``RunResult``) and its cycle report
    (computed when not given). ``graph_macs``: per node, MACs of the whole batch (default: from
    the manifest)."""
    from sim.cycle_model import estimate_cycles

    cfg = bundle.config
    cr = cycle_report or estimate_cycles(run.trace, cfg)
    n = len(bundle.program.instructions)
    finish = np.zeros(n, dtype=np.int64)
    busy_c = np.zeros(n, dtype=np.int64)
    busy_d = np.zeros(n, dtype=np.int64)
    macs = np.zeros(n, dtype=np.int64)
    rd = np.zeros(n, dtype=np.int64)
    wr = np.zeros(n, dtype=np.int64)
    for t, e in zip(run.trace, cr.timeline, strict=True):
        finish[t.pc] = e.finish
        dur = e.finish - e.start
        if e.unit == "compute":
            busy_c[t.pc] = dur
        elif e.unit in ("load", "store"):
            busy_d[t.pc] = dur
        macs[t.pc] = t.macs
        if isinstance(t.instr, (Load, Loadt)):
            rd[t.pc] = t.dram_bytes
        elif isinstance(t.instr, Store):
            wr[t.pc] = t.dram_bytes
    done = np.maximum.accumulate(finish)
    nodes = []
    prev_end = 0
    peak = cfg.peak_macs_per_cycle
    for nd in bundle.manifest["nodes"]:
        s, e = nd["words"]
        end = int(done[e - 1]) if e > s else prev_end
        cycles = max(0, end - prev_end)
        am = int(macs[s:e].sum())
        gm = (graph_macs or {}).get(nd["name"], nd.get("float_macs", 0))
        nodes.append(NodeFigures(nd["name"], nd["module"], e - s, int(gm), am, cycles,
                                 am / (peak * cycles) if cycles else 0.0, int(rd[s:e].sum()),
                                 int(wr[s:e].sum()), int(busy_c[s:e].sum()),
                                 int(busy_d[s:e].sum()), nd.get("output", "")))
        prev_end = max(prev_end, end)
    return NetworkReport(bundle.manifest["name"], f"{cfg.rows}x{cfg.cols} {cfg.fingerprint}",
                         bundle.batch, nodes, cr.total_cycles, int(cr.macs),
                         sum(x.graph_macs for x in nodes), peak, bundle.manifest["dram_bytes"],
                         n, bundle.manifest.get("compile_seconds", 0.0))
