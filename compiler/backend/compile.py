"""``compile(converted, config, batch)``: integer IR -> :class:`~compiler.backend.bundle.Bundle`."""

from __future__ import annotations

import time

from compiler.backend.bundle import MANIFEST_VERSION, Bundle, ref_to_json
from compiler.backend.emit import emit_program
from compiler.backend.errors import CompileError
from compiler.ir import build_ir
from hw.config import AcceleratorConfig
from hw.isa import Program
from sim.dram_image import DramImage

__all__ = ["compile", "compile_graph", "compile_ir"]


def compile_graph(graph, quant, config: AcceleratorConfig, batch: int = 1,
                  *, name: str = "network", mode: str = "program",
                  keep: tuple[str, ...] = (), on_chip: bool = True) -> Bundle:
    """Compile a quantised matrix graph (``graph``, ``quant``) for ``config`` and ``batch``
    samples. See :func:`compile`."""
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    t0 = time.perf_counter()
    ir = build_ir(graph, quant)
    shapes = {i.name: tuple(i.shape) for i in graph.inputs}
    shapes.update({h.name: tuple(h.shape) for h in graph.host_ops})
    return compile_ir(ir, config, batch, shapes, graph, name=name, t0=t0, mode=mode, keep=keep,
                      on_chip=on_chip)


#: Compile modes: the network as one program; the same with every node's output kept in its own
#: DRAM region (for the first-mismatch locator); every node its own program (per-node profiling).
MODES = ("program", "debug", "profile")


def compile_ir(ir, config: AcceleratorConfig, batch: int, shapes: dict, graph, *,
               name: str = "network", t0: float | None = None, mode: str = "program",
               keep: tuple[str, ...] = (), retile: bool = True,
               on_chip: bool = True) -> Bundle:
    """Compile an integer IR (``shapes``: per-sample shapes of the tensors entering the
    machine; ``graph``: the matrix graph for its inputs and host pre-processing; ``keep``: nodes
    whose outputs keep their own DRAM region in a ``"program"`` compile too; ``retile``,
    ``on_chip``: see :func:`compiler.backend.emit.emit_program`)."""
    if mode not in MODES:
        raise ValueError(f"compile mode {mode!r} unknown (supported: {', '.join(MODES)})")
    names = [n.name for n in ir.nodes]
    unknown = sorted(set(keep) - set(names))
    if unknown:
        raise CompileError(f"compile {name}", f"keep names no node: {', '.join(unknown)}")
    t0 = time.perf_counter() if t0 is None else t0
    keep_all = mode in ("debug", "profile")
    em = emit_program(ir, config, batch, shapes, keep_outputs=True if keep_all else set(keep),
                      per_node=mode == "profile", retile=retile, on_chip=on_chip)
    kept = set(names) if keep_all else {*keep, *(r.source for r in ir.outputs)}
    image = DramImage.zeros(max(em.dram.size, 64), config)
    outs = {f"{r.source}.{pl}" for r in ir.outputs
            for pl in em.placements[r.source].planes} if all(
        r.source in em.placements for r in ir.outputs) else set()
    for rname, (addr, n) in em.dram.regions.items():
        if em.dram.kinds[rname] == "activation" and rname not in outs and \
                rname.rsplit(".", 1)[0] not in kept:
            continue  # intermediate activations share the space of dead ones (liveness)
        if rname in em.dram.contents:
            image.add(rname, addr, em.dram.contents[rname])
        else:
            image.reserve(rname, addr, n)
    if mode == "profile":
        node_programs = [(n, Program(words)) for n, words in em.node_programs]
        program = None
    else:
        node_programs = None
        program = Program(em.instructions)
    seconds = time.perf_counter() - t0
    inputs = []
    for tname in ir.inputs:
        p = em.placements[tname]
        wide = ir.bits.get(tname, 8) == 16
        inputs.append({"name": tname, "shape": list(p.shape),
                       "dtype": "int16 as int8 planes 256 hi + lo" if wide else "int8",
                       "bits": 16 if wide else 8, "planes": dict(p.planes),
                       "scale": ir.inputs[tname], "addr": p.planes["hi" if wide else "int8"],
                       "bytes": p.nbytes,
                       "order": list(p.order) if p.order else None,
                       "layout": ("row-major (batch, *shape)" if p.order is None else
                                  f"dims of (batch, *shape) stored in order {list(p.order)}")})
    outputs = []
    for ref in ir.outputs:
        if ref.source not in em.placements:
            raise CompileError(f"graph output {ref.source}", "is not computed on the machine "
                               "(an output must be a node output)", config)
        p = em.placements[ref.source]
        outputs.append({"source": ref.source, "shape": list(p.shape), "planes": p.planes,
                        "order": list(p.order) if p.order else None,
                        "esize": p.esize, "scale": ir.scales[ref.source],
                        "bits": ir.bits.get(ref.source, 8), "ref": ref_to_json(ref),
                        "layout": "row-major (batch, *shape); views applied on the host"})
    kinds: dict[str, int] = {}
    for rname, (_a, n) in em.dram.regions.items():
        k = em.dram.kinds[rname]
        kinds[k] = kinds.get(k, 0) + n
    float_macs = {}
    for n in getattr(graph, "nodes", []):
        float_macs[n.name] = int(n.macs()) * batch
    manifest = {
        "version": MANIFEST_VERSION,
        "name": name,
        "batch": batch,
        "config": config.to_dict(),
        "config_stamp": {"fingerprint": config.fingerprint, "rows": config.rows,
                         "cols": config.cols},
        "graph_inputs": [{"name": i.name, "shape": list(i.shape), "dtype": str(i.dtype)}
                         for i in graph.inputs],
        "host_ops": [f"{h.name}: {h.description or h.aten}" for h in graph.host_ops],
        "inputs": inputs,
        "outputs": outputs,
        "dram_bytes": image.size,
        "dram_by_kind": kinds,
        "mode": mode,
        "instructions": (len(program.instructions) if program is not None else
                         sum(len(p.instructions) for _n, p in node_programs)),
        "syncs_inserted": em.sync_count,
        "nodes": [{"name": n.name, "module": n.module, "aten": n.aten,
                   "words": list(em.node_ranges[n.name]), **em.node_info[n.name],
                   "float_macs": float_macs.get(n.name, em.node_info[n.name]["pass_macs"])}
                  for n in ir.nodes],
        "node_outputs": {n.name: _placement_json(em.placements[n.name]) for n in ir.nodes},
        "kept_outputs": [n for n in names if n in kept],
        "compile_seconds": seconds,
    }
    host = {"graph": _host_graph(graph)} if graph.host_ops else None
    if host is not None:
        host["ops"] = [h.name for h in graph.host_ops]
    return Bundle(config, program, image, manifest, host, {"ir": ir}, node_programs)


def _placement_json(p) -> dict:
    """Where a node's output lives in DRAM (see :class:`~compiler.backend.layout.Placement`)."""
    return {"shape": list(p.shape), "esize": p.esize, "planes": dict(p.planes),
            "order": list(p.order) if p.order else None}


def _host_graph(graph):
    from compiler.graph import MatrixGraph

    return MatrixGraph(inputs=list(graph.inputs), host_ops=list(graph.host_ops))


def compile(converted, config: AcceleratorConfig, batch: int = 1, *, name: str = "network",
            mode: str = "program", keep: tuple[str, ...] = ()) -> Bundle:  # noqa: A001 - the issue's API name
    """Compile a :class:`~compiler.convert.ConvertedModel` into a :class:`Bundle`.

    ``batch`` counts samples: stacks of inputs shaped like the converted model's example inputs
    (its graph's per-sample shapes); ``bundle.run`` takes tensors with that leading dim.

    ``mode``: ``"program"`` (the network as one program), ``"debug"`` (the same, but every
    node's output keeps its own DRAM region, so a run's final image holds every intermediate
    tensor: what :mod:`compiler.backend.locate` compares) or ``"profile"`` (every node its own
    program, ``bundle.node_programs``, run one after another on one DRAM image; for per-node
    cycle counters). ``keep``: node names whose outputs keep their own DRAM region in any mode
    (readable with :func:`compiler.backend.locate.node_output` after a run).

    Raises
    ------
    CompileError
        For anything the back end cannot lower (names the node, module path, limit and config).
    """
    return compile_graph(converted.graph, converted.quant, config, batch, name=name, mode=mode,
                         keep=tuple(keep))
