"""First-mismatch locator: which node's output first differs, where, and which instruction wrote it.

A ``"debug"`` (or ``"profile"``) compile keeps every node's output in its own DRAM region
(``compile(..., mode="debug")``), so the final DRAM image of a run holds every intermediate tensor
and the manifest says where (``node_outputs``: planes, element size, storage order). The locator
reads every node's output from a run's image and compares it, node by node in program order, with
a reference: another run's image (RTL vs golden model) or the integer executor's values
(golden model vs integer IR, :func:`reference_values`). For the first node that differs it names
the node, its module, its instruction range, the first differing element (sample-stacked index,
plane, both values, how many elements differ), the STORE instruction that wrote that element
(word offset, source row, tile, column) and the output tile of the node's tiling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from compiler.backend.errors import CompileError
from hw.isa import MemSpace, Setbase, Store
from sim.dram_image import DramImage

__all__ = ["Mismatch", "locate", "node_output", "reference_values"]


@dataclass(frozen=True)
class Mismatch:
    """The first differing node output (see the module docstring)."""

    node: str
    module: str
    node_index: int
    words: tuple[int, int]
    program: str
    index: tuple[int, ...]
    plane: str
    got: int
    want: int
    differing: int
    elements: int
    address: int
    store_word: int | None
    store_row: int | None
    store_tile: int | None
    store_column: int | None
    tile: dict

    def __str__(self) -> str:
        store = ("no STORE of this node writes it" if self.store_word is None else
                 f"written by STORE at word {self.store_word} (source row {self.store_row}, "
                 f"tile {self.store_tile}, column {self.store_column})")
        tile = ", ".join(f"{k} {v}" for k, v in self.tile.items())
        return (f"first mismatch: node {self.node} ({self.module}), node {self.node_index}, "
                f"instructions [{self.words[0]}, {self.words[1]}) of {self.program}; element "
                f"{list(self.index)} ({self.plane} plane, DRAM {self.address:#x}): got "
                f"{self.got}, expected {self.want}; {self.differing} of {self.elements} "
                f"elements differ; {store}; output tile: {tile}")

    def to_json(self) -> dict:
        """JSON-serialisable form."""
        from dataclasses import asdict

        d = asdict(self)
        d["index"] = list(self.index)
        d["words"] = list(self.words)
        return d


def _data(dram) -> np.ndarray:
    if isinstance(dram, DramImage):
        return dram.data
    if isinstance(dram, (bytes, bytearray, memoryview)):
        return np.frombuffer(bytes(dram), dtype=np.uint8)
    return np.asarray(dram, dtype=np.uint8)


def _addresses(spec: dict, batch: int, plane: str) -> np.ndarray:
    shape = (batch, *spec["shape"])
    esize = spec["esize"]
    n = int(np.prod(shape, dtype=np.int64))
    flat = spec["planes"][plane] + esize * np.arange(n, dtype=np.int64)
    order = spec["order"]
    if not order:
        return flat.reshape(shape)
    return flat.reshape([shape[d] for d in order]).transpose(np.argsort(order))


def _plane_values(data: np.ndarray, addr: np.ndarray, esize: int) -> np.ndarray:
    if esize == 4:
        b = data[(addr[..., None] + np.arange(4)).reshape(-1)].reshape(*addr.shape, 4)
        return np.ascontiguousarray(b).view("<i4")[..., 0].astype(np.int64)
    return data[addr].view(np.int8).astype(np.int64)


def _need_outputs(bundle) -> dict:
    outs = bundle.manifest.get("node_outputs")
    if not outs or bundle.manifest.get("mode") not in ("debug", "profile"):
        raise CompileError(f"bundle {bundle.manifest.get('name')}",
                           "the locator needs every node's output in DRAM: compile with "
                           "mode='debug' (or 'profile'); a 'program' compile reuses the space "
                           "of dead intermediate tensors")
    return outs


def node_output(bundle, dram, name: str) -> dict[str, np.ndarray]:
    """Node ``name``'s output read from a final DRAM image: the integer values per plane, each
    shaped ``(batch, *shape)`` (``int8``, ``int32``, or ``hi`` and ``lo`` of a 16-bit output).
    The node must be one whose output the compile kept (``manifest["kept_outputs"]``: every
    node in a debug/profile compile, the graph outputs and ``keep`` otherwise)."""
    if name not in bundle.manifest.get("kept_outputs", ()):
        raise CompileError(f"bundle {bundle.manifest.get('name')}", f"node {name}'s output is "
                           "not kept in DRAM (compile with keep=(name,) or mode='debug')")
    spec = bundle.manifest["node_outputs"][name]
    data = _data(dram)
    return {plane: _plane_values(data, _addresses(spec, bundle.batch, plane), spec["esize"])
            for plane in spec["planes"]}


def reference_values(bundle, qinputs: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Every node's output per plane from the integer executor (the IR the bundle was compiled
    from), for the quantised machine inputs ``qinputs`` (:meth:`Bundle.quantize_inputs`)."""
    from compiler.ir.interpret import interpret
    from compiler.quant.wide import split_int16

    ir = bundle.extra.get("ir")
    if ir is None:
        raise CompileError(f"bundle {bundle.manifest.get('name')}", "holds no integer IR (a "
                           "bundle loaded from files); compile it in-process to compare with "
                           "the integer executor")
    vals = interpret(ir, {k: torch.from_numpy(np.asarray(v, dtype=np.int64))
                          for k, v in qinputs.items()})
    out = {}
    for name, spec in _need_outputs(bundle).items():
        v = vals[name].numpy().astype(np.int64)
        if "hi" in spec["planes"]:
            hi, lo = split_int16(v)
            out[name] = {"hi": np.asarray(hi, np.int64), "lo": np.asarray(lo, np.int64)}
        else:
            out[name] = {next(iter(spec["planes"])): v}
    return out


def _store_writing(instructions, words: tuple[int, int], address: int, config):
    """(word, source row, tile, column) of the last STORE in ``words`` writing ``address``."""
    bases = [0, 0, 0, 0]
    found = None
    for pc, ins in enumerate(instructions[: words[1]]):
        if isinstance(ins, Setbase):
            bases[ins.reg] = ins.value
            continue
        if pc < words[0] or not isinstance(ins, Store):
            continue
        esize = 4 if ins.mem == MemSpace.ACC else 1
        row_bytes = ins.length * esize
        rel = address - (bases[ins.base] + ins.offset)
        if rel < 0:
            continue
        i = rel // ins.stride if ins.stride else 0
        if i >= ins.rows:
            continue
        within = rel - i * ins.stride
        u, b = divmod(within, row_bytes)
        if u < ins.tiles:
            found = (pc, ins.src + u * ins.rows + i, u, b // esize)
    return found


def _tile(info: dict, spec: dict, batch: int, index: tuple[int, ...], config) -> dict:
    """The node's output tile holding element ``index`` (sample-stacked, logical)."""
    ng, m, _kgs = info["tiles"]
    shape = (batch, *spec["shape"])
    if info.get("depthwise_taps"):  # rows = pixels, columns = channels: logical (.., C, P, 1)
        lead, i, j = index[:-3], index[-2], index[-3]
        lead_dims = shape[:-3]
    else:
        lead, i, j = index[:-2], index[-2], index[-1]
        lead_dims = shape[:-2]
    g = int(np.ravel_multi_index(lead, lead_dims)) if lead else 0
    per = info["M"] // max(1, info["G"])
    row = g * per + i if info["shared"] else i
    col_tile = j // config.cols
    return {"problem": "all (shared weights)" if info["shared"] else g,
            "row tile": row // m, "rows": f"{(row // m) * m}..{(row // m) * m + m - 1}",
            "column tile": col_tile, "column group": col_tile // ng}


def locate(bundle, dram, reference) -> Mismatch | None:
    """The first node (program order) whose output in ``dram`` differs from ``reference``.

    Parameters
    ----------
    bundle : Bundle
        A ``"debug"`` or ``"profile"`` compile (every node's output kept in DRAM).
    dram : DramImage, bytes or uint8 array
        The final DRAM image of the run under test.
    reference : DramImage, bytes, uint8 array, or dict
        The reference run's final image, or :func:`reference_values`.

    Returns
    -------
    Mismatch or None
        None when every node output is equal.
    """
    outs = _need_outputs(bundle)
    data = _data(dram)
    ref_data = None if isinstance(reference, dict) else _data(reference)
    programs = bundle.node_programs
    for k, nd in enumerate(bundle.manifest["nodes"]):
        name = nd["name"]
        spec = outs[name]
        for plane in spec["planes"]:
            addr = _addresses(spec, bundle.batch, plane)
            got = _plane_values(data, addr, spec["esize"])
            if ref_data is None:
                want = np.asarray(reference[name][plane], dtype=np.int64).reshape(got.shape)
            else:
                want = _plane_values(ref_data, addr, spec["esize"])
            diff = got != want
            if not diff.any():
                continue
            index = tuple(int(x) for x in np.argwhere(diff)[0])
            a = int(addr[index])
            words = tuple(nd["words"])
            if programs is not None:
                instructions, label = programs[k][1].instructions, f"node program {k} ({name})"
            else:
                instructions, label = bundle.program.instructions, "the program"
            st = _store_writing(instructions, words, a, bundle.config)
            return Mismatch(
                node=name, module=nd["module"], node_index=k, words=words, program=label,
                index=index, plane=plane, got=int(got[index]), want=int(want[index]),
                differing=int(diff.sum()), elements=int(diff.size), address=a,
                store_word=None if st is None else st[0],
                store_row=None if st is None else st[1],
                store_tile=None if st is None else st[2],
                store_column=None if st is None else st[3],
                tile=_tile(nd, spec, bundle.batch, index, bundle.config))
    return None
