"""Emission: the integer IR of a network -> one program, its DRAM image and a manifest.

Every node runs DRAM to DRAM: for each output tile (a problem index ``g`` of the broadcast
batch dims, a group of ``ng`` column tiles, ``m`` rows) the emitter loads the operand chunks of
every pass (double-buffered), reuses weight blocks from the weight cache (loaded once per
column group for all rows and all samples of the batch), runs the passes as GEMMs in the IR's
stage order with the x256 epilogue between the stages, applies the node's epilogue and stores
the tile. :mod:`compiler.backend.schedule` derives the tokens, so loads of the next tile overlap
the GEMMs of this one and the stores of the previous one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.backend.allocation import DramAllocator, OnChip
from compiler.backend.errors import CompileError
from compiler.backend.layout import (
    Placement,
    address_map,
    chunk_columns,
    natural_chunks,
    row_runs,
)
from compiler.backend.schedule import Access, Scheduler
from compiler.graph import Im2col, TensorRef
from compiler.ir.nodes import GemmPass, IntGraph, IntNode, Operand
from hw.config import AcceleratorConfig
from hw.isa import (
    BIAS_ENTRY_BYTES,
    Dmacfg,
    Epi,
    EpiDest,
    Gemm,
    GemmMode,
    Halt,
    Load,
    Loadt,
    MemSpace,
    ScaleMode,
    Store,
    TableKind,
    encode_bias_entries,
    encode_pwl_table,
    pwl_table_bytes,
)
from hw.numeric import PwlTable

__all__ = ["Emitted", "emit_program"]

_FIELD_MAX = 4095  # 12-bit counts: m, k_tiles, n_tiles, outer, inner, rows, tiles
_IDENTITY = PwlTable.identity()
#: sat16 as a table (int32 result): a 16-bit output kept in the accumulator.
_CLAMP16 = PwlTable((-32768, 32768), (0, 1, 0), (-32768, 0, 32767), 0)


@dataclass
class Emitted:
    """What :func:`emit_program` produces."""

    instructions: list
    dram: DramAllocator
    placements: dict[str, Placement]
    node_ranges: dict[str, tuple[int, int]]
    node_info: dict[str, dict]
    sync_count: int = 0
    #: profile emission: one program per node, (node name, instructions ending in HALT)
    node_programs: list[tuple[str, list]] | None = None


def _prod(s) -> int:
    return int(np.prod(s, dtype=np.int64)) if len(s) else 1


def _lead_index(lead: tuple[int, ...], out_lead: tuple[int, ...]) -> np.ndarray:
    """For each flattened index of ``out_lead``, the flattened index of the broadcast ``lead``."""
    idx = np.arange(_prod(lead), dtype=np.int64).reshape(lead) if lead else np.zeros((),
                                                                                       np.int64)
    pad = (1,) * (len(out_lead) - len(lead)) + tuple(lead)
    return np.broadcast_to(idx.reshape(pad), out_lead).reshape(-1)


class _Operand:
    """A pass operand resolved to DRAM addresses: ``addr[l]`` is the (rows, cols) byte address
    matrix of lead index ``l`` (-1: zero padding)."""

    def __init__(self, addr: np.ndarray, lead_of_g: np.ndarray, shared: bool):
        self.addr = addr
        self.lead_of_g = lead_of_g
        self.shared = shared


class Emitter:
    """Lowers an :class:`IntGraph` for one config and batch (see the module docstring)."""

    def __init__(self, ir: IntGraph, config: AcceleratorConfig, batch: int,
                 shapes: dict[str, tuple[int, ...]], exclude: dict[str, str] | None = None,
                 on_chip: bool = True, *, keep_outputs=False, per_node: bool = False):
        self.ir, self.cfg, self.batch = ir, config, batch
        self.keep_outputs, self.per_node = keep_outputs, per_node
        # a node kept in DRAM for inspection, or a program per node (each starts cold), leaves
        # nothing on chip between nodes
        self.on_chip = on_chip and keep_outputs is not True and not per_node
        #: tensors kept off chip (from a first emission, or kept for inspection) -> why
        self.exclude = dict(exclude or {})
        if keep_outputs and keep_outputs is not True:
            for name in keep_outputs:
                self.exclude.setdefault(name, "DRAM: output kept for inspection")
        #: resident tensors whose readers tile rows differently -> why
        self.mismatched: dict[str, str] = {}
        c = config
        self.R, self.C = c.rows, c.cols
        self.sched = Scheduler(config)
        self.dram = DramAllocator()
        self.candidates, arena = self._plan_residency()
        self.chip = OnChip(config, arena)
        self.resident: dict[str, dict] = {}  # tensor -> {"base": {plane: row}, "nt", "blocks"}
        self.out_note: dict[str, str] = {}
        self._staged = 0  # blocks staged for on-chip transposes
        self.place: dict[str, Placement] = {}
        self.geom: list = [None] * 4
        self.tables: dict[PwlTable, int] = {}
        self.node_ranges: dict[str, tuple[int, int]] = {}
        self.node_info: dict[str, dict] = {}
        self.toggle = {"a": 0, "o": 0, "acc": 0, "rs": 0}
        self.node: IntNode | None = None
        self.neg_block = None
        self._neg_addr = None
        self._ident = None
        self._ident_addr = None
        self._lanes_ready = False
        self._loaded_consts: set = set()
        for name in ir.inputs:
            planes = ("hi", "lo") if ir.bits.get(name, 8) == 16 else ("int8",)
            p = self._place(name, shapes[name], 1, planes, "input")
            if self._channels_last(name, shapes[name]):
                nd = len(shapes[name]) + 1
                p.order = (*range(nd - 3), nd - 2, nd - 1, nd - 3)
        ce = self.chip.constant_entries()
        self.const_entries = self.dram.alloc(
            "const.entries", ce.shape[1] * BIAS_ENTRY_BYTES, "constant",
            encode_bias_entries(*ce))

    # ------------------------------------------------------------------ residency

    def _reads(self):
        """tensor -> list of (node index, pass operand or None for a row scale, side)."""
        reads: dict[str, list] = {}
        for i, node in enumerate(self.ir.nodes):
            for p in node.passes:
                for side, op in (("a", p.a), ("b", p.b)):
                    if op.ref is not None:
                        reads.setdefault(op.ref.source, []).append((i, op, side))
            if node.row_scale is not None:
                reads.setdefault(node.row_scale.source, []).append((i, None, "rs"))
        return reads

    def _natural(self, op: Operand, reader: IntNode, producer: IntNode) -> bool:
        """Whether ``op`` reads the producer's output exactly as the reader's left operand in
        the producer's row-major element order: rows = the producer's rows, K = its columns,
        leading dims = the reader's (so the reader's row tiles and K chunks are the
        producer's rows and column tiles)."""
        shape = tuple(producer.shape)
        tmp = Placement(producer.name, shape, self.batch, 1, planes={op.plane: 0})
        a = address_map(op.ref, tmp, op.plane)
        if a.shape[:-2] != (self.batch, *reader.shape[:-2]) or a.shape[-1] != shape[-1]:
            return False
        return a.size == tmp.numel and np.array_equal(
            a.reshape(-1), np.arange(a.size, dtype=np.int64))

    def _plan_residency(self) -> tuple[dict[str, str], int]:
        """Tensors that may stay in the scratchpad between nodes (int8 planes, not graph
        outputs, every reader a natural left operand), with the reason for the others, and the
        arena size: the peak of the live sizes of those that fit, at most an eighth of the
        scratchpad (the arena is taken from the weight ring, which the large GEMMs need)."""
        c = self.cfg
        outs = {r.source for r in self.ir.outputs}
        reads = self._reads()
        why: dict[str, str] = {}
        sizes: dict[str, tuple[int, int, int]] = {}  # name -> (rows, first, last)
        for i, node in enumerate(self.ir.nodes):
            name = node.name
            if not self.on_chip:
                why[name] = "DRAM: on-chip activations disabled"
            elif c.rows != c.cols:
                why[name] = "DRAM: on-chip operand chunks need rows == cols"
            elif name in outs:
                why[name] = "DRAM: graph output"
            elif name in self.exclude:
                why[name] = self.exclude[name]
            elif node.out_bits != 8 and not node.split_out:
                why[name] = f"DRAM: int{node.out_bits} output"
            elif name not in reads:
                why[name] = "DRAM: no reader"
            else:
                bad = [(j, side) for j, op, side in reads[name]
                       if side != "a" or not self._natural(op, self.ir.nodes[j], node)]
                if bad:
                    j, side = bad[0]
                    what = {"a": "reads it through a view that needs a DMA walk",
                            "b": "reads it as weights", "rs": "reads it as a row scale"}[side]
                    why[name] = f"DRAM: {self.ir.nodes[j].name} {what}"
                else:
                    nt = -(-node.shape[-1] // c.cols)
                    rows = self.batch * _prod(node.shape[:-1])
                    planes = 2 if node.split_out else 1
                    sizes[name] = (planes * nt * rows, i, max(j for j, _o, _s in reads[name]))
                    why[name] = "candidate"
        cap = c.scratchpad_rows // 8
        peak = 0
        for i in range(len(self.ir.nodes)):
            peak = max(peak, sum(n for n, a, b in sizes.values() if a <= i <= b and n <= cap))
        return why, min(peak, cap)

    def _make_resident(self, node: IntNode, out: Placement) -> bool:
        """Allocate the arena blocks of ``node``'s output if it is a candidate and fits;
        records the outcome in the node's report info."""
        info = self.out_note
        why = self.candidates.get(node.name, "DRAM")
        if why != "candidate":
            info[node.name] = why
            return False
        nt = -(-node.shape[-1] // self.C)
        rows = self.batch * _prod(node.shape[:-1])
        base = {}
        for plane in out.planes:
            b = self.chip.resident.alloc(f"{node.name}.{plane}", nt * rows)
            if b is None:
                for pl in base:
                    self.chip.resident.free(f"{node.name}.{pl}")
                info[node.name] = (f"DRAM: does not fit ({len(out.planes)} x {nt * rows} "
                                  f"scratchpad rows; {self.chip.resident.free_rows} of the "
                                  f"{self.chip.resident.size}-row arena free, at most "
                                  f"{self.cfg.scratchpad_rows // 8})")
                return False
            base[plane] = b
        self.resident[node.name] = {"base": base, "nt": nt, "blocks": {}}
        info[node.name] = "scratchpad"
        return True

    # ------------------------------------------------------------------ helpers

    def _err(self, limit: str) -> CompileError:
        what = self.node.what if self.node is not None else "program"
        return CompileError(what, limit, self.cfg)

    def _channels_last(self, name: str, shape) -> bool:
        """Whether input ``name`` is read through a convolution's Im2col directly: then the
        host stores it channels-last (HWC), so that kernel rows are contiguous DMA runs."""
        if len(shape) < 3:
            return False
        for node in self.ir.nodes:
            for p in node.passes:
                for op in (p.a, p.b):
                    if (op.ref is not None and op.ref.source == name and len(op.ref.views) == 1
                            and isinstance(op.ref.views[0], Im2col)):
                        return True
        return False

    def _place(self, name, shape, esize, planes, kind) -> Placement:
        p = Placement(name, tuple(shape), self.batch, esize)
        for plane in planes:
            p.planes[plane] = self.dram.alloc(f"{name}.{plane}", p.nbytes, kind)
        self.place[name] = p
        return p

    def _const(self, name: str, data: bytes) -> int:
        return self.dram.alloc(name, len(data), "constant", data)

    def emit(self, ins, accesses=()):
        return self.sched.emit(ins, list(accesses))

    # ------------------------------------------------------------------ DMA

    def _geometry(self, key: tuple[int, int, int]) -> int:
        width, pitch, pix = key
        slot, hit = self.chip.geometry.lookup(key)
        if not hit:
            self.emit(Dmacfg(slot=slot, height=_FIELD_MAX, width=width, pitch=pitch, pix=pix,
                             sy=1, sx=0))
        return slot

    def load_rows(self, mem: MemSpace, dst: int, addr: np.ndarray, esize: int) -> None:
        """Rows ``dst ..`` of ``mem`` get the DRAM runs of ``addr`` (rows, L) (-1: zero)."""
        rows, length = addr.shape
        if rows == 0:
            return
        runs = row_runs(addr, esize)
        if runs is None:
            raise self._err("an operand row is not one contiguous DRAM run (a view the DMA "
                            "cannot walk)")
        start, left, valid = runs
        lanes = self.cfg.lanes if mem == MemSpace.SPAD else self.C
        if length > lanes or length > 127:
            raise self._err(f"row of {length} elements exceeds a {mem.name} row")
        if self._load_walk(mem, dst, start, left, valid, esize):
            return
        # groups of rows with one padding pattern and one address step: one LOAD each
        start = np.where(valid > 0, start, 0)
        firsts = [0]
        if rows > 1:
            d = np.diff(start)
            hard = np.zeros(rows, dtype=bool)
            hard[1:] = (left[1:] != left[:-1]) | (valid[1:] != valid[:-1]) | (d < 0)
            soft = np.zeros(rows, dtype=bool)
            soft[2:] = d[1:] != d[:-1]
            for i in np.nonzero(hard | soft)[0].tolist():
                # a step change splits a group unless row i-1 starts one (row i sets its step)
                if hard[i] or firsts[-1] != i - 1:
                    firsts.append(i)
        firsts.append(rows)
        for gi in range(len(firsts) - 1):
            for i in range(firsts[gi], firsts[gi + 1], _FIELD_MAX):
                j = min(i + _FIELD_MAX, firsts[gi + 1])
                n = j - i
                v = int(valid[i])
                pitch = int(start[i + 1] - start[i]) if n > 1 else 0
                if v == 0:
                    slot = self._geometry((0, 0, esize))
                    off = 0
                else:
                    slot = self._geometry((v, pitch, esize))
                    off = int(start[i])
                acc = [Access("spad" if mem == MemSpace.SPAD else "acc", dst + i, n, True)]
                if v:
                    lo = int(start[i])
                    hi = int(start[j - 1]) + v * esize
                    acc.append(Access("dram", lo, hi - lo, False))
                self.emit(Load(mem=mem, geom=slot, base=0, offset=off, dst=dst + i, outer=n,
                               inner=1, y0=0, x0=-int(left[i]), length=length), acc)

    def _load_walk(self, mem, dst, start, left, valid, esize) -> bool:
        """Rows that are one 2-D grid of unpadded runs (``outer`` blocks of ``inner`` rows:
        row ``o*inner + q`` starts at ``start[0] + o*pitch + q*pix``, e.g. the chunks of an
        operand tile, chunk-major) as one LOAD over a DMACFG image of ``outer x inner``
        pixels; False if the rows are not of that form (or one step-grouped LOAD does)."""
        rows = start.size
        if rows < 4 or (left != 0).any() or (valid != valid[0]).any() or valid[0] < 1:
            return False
        d = np.diff(start)
        change = np.nonzero(d != d[0])[0]
        if change.size == 0:
            return False  # one constant step: the grouped path issues one LOAD
        inner = int(change[0]) + 1
        if rows % inner or inner < 2:
            return False
        outer = rows // inner
        pix = int(d[0])
        pitch = int(start[inner] - start[0])
        grid = (start[0] + pitch * np.arange(outer, dtype=np.int64)[:, None]
                + pix * np.arange(inner, dtype=np.int64)[None, :]).reshape(-1)
        v = int(valid[0])
        if (not np.array_equal(grid, start) or pix < v * esize or pix > 65535 or pitch < 0
                or outer > _FIELD_MAX or inner > _FIELD_MAX):
            return False
        slot = self._conv_geometry((outer, inner, pitch, pix, 1, 1))
        self.emit(Load(mem=mem, geom=slot, base=0, offset=int(start[0]), dst=dst, outer=outer,
                       inner=inner, y0=0, x0=0, length=v),
                  [Access("spad" if mem == MemSpace.SPAD else "acc", dst, rows, True),
                   Access("dram", int(start.min()),
                          int(start.max()) + v * esize - int(start.min()), False)])
        return True

    def load_contiguous(self, dst: int, addr: int, rows: int, row_bytes: int,
                        lanes: int | None = None) -> None:
        """``rows`` consecutive DRAM rows of ``row_bytes`` bytes into scratchpad rows."""
        a = addr + row_bytes * np.arange(rows, dtype=np.int64)[:, None] + np.arange(
            row_bytes, dtype=np.int64)[None, :]
        self.load_rows(MemSpace.SPAD, dst, a, 1)

    # ------------------------------------------------------------------ tables

    def table_slot(self, table: PwlTable) -> int:
        if table.segments > self.cfg.pwl_segments:
            raise self._err(f"PWL table of {table.segments} segments exceeds pwl_segments = "
                            f"{self.cfg.pwl_segments}")
        if table not in self.tables:
            self.tables[table] = self._const(f"pwl.{len(self.tables)}",
                                             encode_pwl_table(table, self.cfg.pwl_segments))
        slot, hit = self.chip.pwl.lookup(table)
        if not hit:
            self.emit(Loadt(kind=TableKind.PWL, dst=slot, count=1, base=0,
                            offset=self.tables[table]),
                      [Access("pwl", slot, 1, True),
                       Access("dram", self.tables[table], pwl_table_bytes(self.cfg.pwl_segments),
                              False)])
        return slot

    def entries(self, key, dram_addr: int, count: int) -> int:
        """Bias/scale entries ``count`` from DRAM, cached under ``key``; returns the first."""
        start = self.chip.entries.get(key)
        if start is not None:
            return start
        start = self.chip.entries.put(key, count)
        if start is None:
            raise self._err(f"{count} bias/scale entries exceed the "
                            f"{self.chip.entries.ring.size} the entry ring holds")
        self.emit(Loadt(kind=TableKind.BIAS, dst=start, count=count, base=0, offset=dram_addr),
                  [Access("bias", start, count, True),
                   Access("dram", dram_addr, count * BIAS_ENTRY_BYTES, False)])
        return start

    def _const_set(self, which: str, base: int) -> int:
        key = ("const", which)
        if key not in self._loaded_consts:
            self._loaded_consts.add(key)
            self.emit(Loadt(kind=TableKind.BIAS, dst=base, count=self.C, base=0,
                            offset=self.const_entries + base * BIAS_ENTRY_BYTES),
                      [Access("bias", base, self.C, True),
                       Access("dram", self.const_entries + base * BIAS_ENTRY_BYTES,
                              self.C * BIAS_ENTRY_BYTES, False)])
        return base

    def neg128(self) -> int:
        """Scratchpad row of the ``-128 I`` weight block (loaded once)."""
        if self.neg_block is None:
            R, C = self.R, self.C
            blk = np.zeros((R, C), dtype=np.int8)
            np.fill_diagonal(blk, -128)
            if self._neg_addr is None:
                self._neg_addr = self._const("const.neg128", blk.tobytes())
            self.load_contiguous(0, self._neg_addr, R, C)
            self.neg_block = 0
        return self.neg_block

    # ------------------------------------------------------------------ operands

    def _data_addr(self, op: Operand) -> np.ndarray:
        src = self.place.get(op.ref.source)
        if src is None:
            raise self._err(f"operand {op.ref.source} has no DRAM placement (not an input, "
                            "host result or earlier node)")
        plane = op.plane
        if plane not in src.planes:
            raise self._err(f"operand {op.ref.source} has no {plane} plane "
                            f"(stored as {sorted(src.planes)})")
        if src.esize != 1:
            raise self._err(f"operand {op.ref.source} is stored as int32; GEMM operands are int8")
        return address_map(op.ref, src, plane)

    def _resolve(self, op: Operand, out_lead: tuple[int, ...], side: str):
        """(address array (L, rows, cols) or const array (L, rows, cols), lead index per g)."""
        if op.is_const:
            v = op.const
            lead = tuple(v.shape[:-2])
            arr = v.reshape(_prod(lead), *v.shape[-2:])
            return arr, _lead_index(lead, out_lead), True
        a = self._data_addr(op)
        lead = tuple(a.shape[:-2])
        arr = a.reshape(_prod(lead), *a.shape[-2:])
        return arr, _lead_index(lead, out_lead), False

    # ------------------------------------------------------------------ nodes

    def lower(self) -> Emitted:
        last = {}
        for i, node in enumerate(self.ir.nodes):
            for p in node.passes:
                for op in (p.a, p.b):
                    if op.ref is not None:
                        last[op.ref.source] = i
            if node.row_scale is not None:
                last[node.row_scale.source] = i
        keep = {r.source for r in self.ir.outputs}
        if self.keep_outputs is True:
            keep |= {node.name for node in self.ir.nodes}
        elif self.keep_outputs:
            keep |= set(self.keep_outputs)
        programs: list[tuple[str, list]] = []
        syncs = 0
        for i, node in enumerate(self.ir.nodes):
            self.node = node
            if self.per_node and i:
                syncs += self.sched.syncs
                self._cold_start()
            self.sched.tag = node.name
            first = len(self.sched)
            self.lower_node(node)
            self.node_ranges[node.name] = (first, len(self.sched))
            if self.per_node:
                self.emit(Halt())
                programs.append((node.name, self.sched.instructions()))
            for name, j in last.items():
                if j == i and name in self.resident:
                    for plane in self.place[name].planes:
                        self.chip.resident.free(f"{name}.{plane}")
                elif j == i and name not in keep and name in self.place and \
                        name not in self.ir.inputs:
                    for plane in self.place[name].planes:
                        self.dram.free(f"{name}.{plane}")
        self.node = None
        if self.per_node:
            return Emitted([], self.dram, self.place, self.node_ranges, self.node_info,
                           syncs + self.sched.syncs, programs)
        self.emit(Halt())
        return Emitted(self.sched.instructions(), self.dram, self.place, self.node_ranges,
                       self.node_info, self.sched.syncs)

    def _cold_start(self) -> None:
        """Start a new program: no tokens outstanding, nothing resident on chip (a profile
        emission runs every node as its own program after a HALT)."""
        self.sched = Scheduler(self.cfg)
        self.chip = OnChip(self.cfg, 0)
        self._loaded_consts = set()
        self.neg_block = None
        self._ident = None
        self._lanes_ready = False

    def lower_node(self, node: IntNode) -> None:
        R, C, B = self.R, self.C, self.batch
        shape = node.shape
        M, N = shape[-2], shape[-1]
        out_lead = (B, *shape[:-2])
        if node.split_out and R < C:
            raise self._err(
                f"splitting a 16-bit output needs rows >= cols (have {R}x{C}): the correction "
                "GEMM hi x (-128 I) streams the R operand lanes of each row and must reach all "
                "C output columns")
        if node.split_out and R > C:
            self._init_output_lanes()
        # ---- output placement
        if node.split_out:
            planes, esize = ("hi", "lo"), 1
        elif node.out_bits == 8:
            planes, esize = ("int8",), 1
        else:
            planes, esize = ("int32",), 4
        sp = self._self_products(node, out_lead)
        if sp is not None:
            out = Placement(node.name, tuple(shape), B, esize, offsets=sp["offsets"])
            for plane in planes:
                out.planes[plane] = self.dram.alloc(f"{node.name}.{plane}", out.nbytes,
                                                    "activation")
            self.place[node.name] = out
            dw = None
        else:
            dw = self._depthwise(node, out_lead)
            out = None
            if dw is None and self.candidates.get(node.name) == "candidate":
                out = Placement(node.name, tuple(shape), B, esize,
                                planes=dict.fromkeys(planes, 0))
                if not self._make_resident(node, out):
                    out = None
            if out is None:
                out = self._place(node.name, shape, esize, planes, "activation")
            else:
                self.place[node.name] = out
        if sp is not None:
            out_lead, M, N = sp["out_lead"], C, C
            passes = [self._prepare_pass(node, pi, p, out_lead, M, N, resolved=sp["resolved"][pi])
                      for pi, p in enumerate(node.passes)]
            ent_addr, ent_lead = self._node_entries(node, out_lead, N, params=sp["params"])
        elif dw is not None:
            # rows = pixels, columns = channels: stored (.., P, C) for the logical (.., C, P, 1)
            nd = len(shape) + 1
            out.order = (*range(nd - 3), nd - 2, nd - 3, nd - 1)
            out_lead, M, N = dw["out_lead"], dw["M"], dw["N"]
            passes = [self._prepare_pass(node, 0, node.passes[0], out_lead, M, N,
                                         resolved=dw["resolved"])]
            ent_addr, ent_lead = self._node_entries(node, out_lead, N, params=dw["params"])
        else:
            passes = [self._prepare_pass(node, pi, p, out_lead, M, N)
                      for pi, p in enumerate(node.passes)]
            ent_addr, ent_lead = self._node_entries(node, out_lead, N)
        G = _prod(out_lead)
        shared = all(pp["b_shared"] for pp in passes) and len(set(ent_lead.tolist())) == 1
        # row scale
        rs = None
        if node.row_scale is not None:
            rs = self._row_scale_addr(node, out_lead, M)
        # problems: (list of g, rows) ; rows enumerate (g, i)
        if shared:
            problems = [np.arange(G, dtype=np.int64)]
        else:
            problems = [np.asarray([g], dtype=np.int64) for g in range(G)]
        nt = -(-N // C)
        ng, m, kgs = self._tiling(node, passes, nt, M if not shared else G * M, rs is not None)
        graph_macs = sum(G * M * N * pp["K"] for pp in passes)
        info = {"M": M * G, "N": N, "K": [pp["K"] for pp in passes], "tiles": [ng, m, kgs],
                "G": G, "shared": shared, "pass_macs": int(graph_macs),
                "depthwise_taps": dw is not None, "self_products": sp is not None,
                "output": self.out_note.pop(node.name, None) or (
                    "DRAM: depthwise output stored pixel-major"
                    if dw is not None and self.candidates.get(node.name) == "candidate"
                    else self.candidates.get(node.name, "DRAM").replace(
                        "candidate", "scratchpad"))}
        self.node_info[node.name] = info
        for gs in problems:
            rows_g = np.repeat(gs, M)
            rows_i = np.tile(np.arange(M, dtype=np.int64), len(gs))
            nrows = rows_g.size
            for u0 in range(0, nt, ng):
                nge = min(ng, nt - u0)
                for r0 in range(0, nrows, m):
                    me = min(m, nrows - r0)
                    self._tile(node, passes, out, rows_g[r0:r0 + me], rows_i[r0:r0 + me],
                               u0, nge, kgs, ent_addr, ent_lead, rs, M, N)

    # ---- preparation

    def _self_products(self, node: IntNode, out_lead):
        """A node of per-row self-products (LayerNorm's variance ``xc_i . xc_i``: every pass
        ``x[.., 1, K] @ x[.., K, 1]`` over one data tensor, one scalar epilogue) batched over
        ``C`` rows at a time: one ``C x C`` problem ``X_blk @ X_blk^T`` per block of rows (the
        right operand loaded as transposed weight blocks), whose diagonal is the node's output.
        The whole tiles are stored; the output placement addresses their diagonal elements.
        None if ``node`` is not of that form."""
        C = self.C
        shape = node.shape
        if (len(shape) < 2 or shape[-2:] != (1, 1) or node.split_out
                or node.row_scale is not None or any(r.source == node.name
                                                     for r in self.ir.outputs)):
            return None
        G = _prod(out_lead)
        if G < 2:
            return None
        maps = []
        for p in node.passes:
            if p.a.is_const or p.b.is_const or p.a.ref.source != p.b.ref.source:
                return None
            a, b = self._data_addr(p.a), self._data_addr(p.b)
            if a.shape[:-2] != tuple(out_lead) or b.shape[:-2] != tuple(out_lead):
                return None
            if a.shape[-2] != 1 or b.shape[-1] != 1:
                return None
            a, b = a.reshape(G, -1), b.reshape(G, -1)
            src = self.place[p.a.ref.source]
            ra = np.where(a >= 0, a - src.planes[p.a.plane], -1)
            rb = np.where(b >= 0, b - src.planes[p.b.plane], -1)
            if not np.array_equal(ra, rb):
                return None
            maps.append((a, b))
        full = (*shape[:-2], 1, 1)
        params = []
        for v in (node.bias, node.multiplier, node.shift):
            if v is None:
                params.append(np.zeros((1, C), dtype=np.int64))
                continue
            v = np.broadcast_to(np.asarray(v, dtype=np.int64), full)
            if not (v == v.reshape(-1)[0]).all():
                return None
            params.append(np.full((1, C), int(v.reshape(-1)[0]), dtype=np.int64))
        nl = -(-G // C)
        resolved = []
        for a, b in maps:
            K = a.shape[1]
            a2 = np.full((nl * C, K), -1, dtype=np.int64)
            a2[:G] = a
            b2 = np.full((nl * C, K), -1, dtype=np.int64)
            b2[:G] = b
            lead = np.arange(nl, dtype=np.int64)
            resolved.append((a2.reshape(nl, C, K), lead, False,
                             b2.reshape(nl, C, K).transpose(0, 2, 1), lead, False))
        g = np.arange(G, dtype=np.int64)
        offsets = (g * C + g % C).reshape(self.batch, *shape)
        return {"out_lead": (nl,), "resolved": resolved, "params": params, "offsets": offsets}

    def _depthwise(self, node: IntNode, out_lead):
        """A depthwise convolution (one pass: data taps (.., C, P, T) times constant (C, T, 1))
        rewritten as diagonal taps: rows = pixels, K = taps x channels (tap-major, channels
        contiguous in an HWC source), block-diagonal constant weights (only diagonal blocks are
        issued). None if ``node`` is not of that form."""
        if len(node.passes) != 1 or node.split_out or node.row_scale is not None:
            return None
        p = node.passes[0]
        if p.a.is_const or not p.b.is_const:
            return None
        w = p.b.const
        shape = node.shape
        if w.ndim != 3 or w.shape[-1] != 1 or shape[-1] != 1 or len(shape) < 3:
            return None
        cc, taps = w.shape[0], w.shape[1]
        if shape[-3] != cc or p.a.shape[-3:] != (cc, shape[-2], taps):
            return None
        a = self._data_addr(p.a)  # (B, *lead, C, P, T)
        P = shape[-2]
        lead = (out_lead[0], *shape[:-3])
        L = _prod(lead)
        a2 = a.reshape(L, cc, P, taps).transpose(0, 2, 3, 1).reshape(L, P, taps * cc)
        b2 = np.zeros((1, taps * cc, cc), dtype=np.int64)
        for t in range(taps):
            b2[0, t * cc + np.arange(cc), np.arange(cc)] = w[:, t, 0]
        full = (*shape[:-1], 1)

        def vec(v, default):
            v = np.broadcast_to(np.asarray(default if v is None else v, dtype=np.int64), full)
            v = v.reshape(-1, cc, P)
            if not (v == v[:1, :, :1]).all():
                return None
            return v[0, :, 0].reshape(1, cc)

        params = [vec(node.bias, 0), vec(node.multiplier, 0), vec(node.shift, 0)]
        if any(x is None for x in params):
            return None
        return {"out_lead": lead, "M": P, "N": cc, "params": params,
                "resolved": (a2, np.arange(L, dtype=np.int64), False, b2,
                             np.zeros(L, dtype=np.int64), True)}

    def _prepare_pass(self, node, pi, p: GemmPass, out_lead, M, N, resolved=None):
        R, C = self.R, self.C
        transposed_a = False
        if resolved is not None:
            a, la, a_const, b, lb, b_const = resolved
        else:
            a, la, a_const = self._resolve(p.a, out_lead, "a")
            b, lb, b_const = self._resolve(p.b, out_lead, "b")
        K = a.shape[-1]
        # K chunking: contiguous runs of the data A in every row (any order; B follows it)
        if a_const:
            chunks = natural_chunks(K, R)
        else:
            flat = a.reshape(-1, K)
            chunks = chunk_columns(flat, R, 1)
            narrow = chunks is None or len(chunks) > 2 * -(-K // R)
            if narrow and R <= C and _columns_are_runs(a):
                chunks = natural_chunks(K, R)
                transposed_a = True
            elif chunks is None:
                chunks = [np.asarray([k]) for k in range(K)]
        kt = len(chunks)
        if kt > _FIELD_MAX:
            raise self._err(f"{kt} reduction chunks exceed {_FIELD_MAX}")
        res = None
        if not a_const and resolved is None and p.a.ref.source in self.resident:
            natural = all(np.array_equal(ch, np.arange(t * R, min(t * R + R, K)))
                          for t, ch in enumerate(chunks))
            if transposed_a or not natural or not np.array_equal(la, np.arange(la.size)):
                raise self._err(f"operand {p.a.ref.source} is kept in the scratchpad but read "
                                "in another order (the residency plan and the tiling disagree)")
            res = (p.a.ref.source, p.a.plane)
        cols = np.full((kt, R), -1, dtype=np.int64)
        for t, ch in enumerate(chunks):
            cols[t, : len(ch)] = ch
        pp = {"K": K, "kt": kt, "cols": cols, "la": la, "lb": lb, "a_const": a_const,
              "b_const": b_const, "index": pi, "N": N, "tA": transposed_a, "res": res}
        nt = -(-N // C)
        if a_const:
            # stored chunk-major per lead: [l][t][i][R]
            L = a.shape[0]
            blob = np.zeros((L, kt, a.shape[1], R), dtype=np.int8)
            for t in range(kt):
                ch = cols[t]
                ok = ch >= 0
                blob[:, t, :, : ok.sum()] = a[:, :, ch[ok]]
            addr = self._const(f"{node.name}.p{pi}.a", blob.tobytes())
            pp["a_base"], pp["a_rows"] = addr, a.shape[1]
        elif res is not None:
            pp["a_addr"] = a
            pp["conv"] = None
        else:
            pp["a_addr"] = a
            pp["conv"] = self._conv_source(p.a)
        if b_const:
            L = b.shape[0]
            blob = np.zeros((L, nt, kt, R, C), dtype=np.int8)
            for t in range(kt):
                ch = cols[t]
                ok = np.nonzero(ch >= 0)[0]
                for u in range(nt):
                    cw = min(C, N - u * C)
                    blob[:, u, t, ok, :cw] = b[:, ch[ok], u * C : u * C + cw]
            pp["b_base"] = self._const(f"{node.name}.p{pi}.b", blob.tobytes())
            nz = blob.reshape(L, nt, kt, -1).any(axis=-1)
            nz[:, :, 0] |= ~nz.any(axis=2)  # an all-zero column tile still gets one block
            pp["nz"] = nz
            pp["b_shared"] = len(set(lb.tolist())) == 1
            pp["transpose"] = False
        else:
            pp["b_addr"] = b
            pp["b_shared"] = False
            # rows of a block run along N; else columns along K (transposed blocks)
            sample = b[:1] if b.shape[0] else b
            rowwise = row_runs(sample.reshape(-1, N)[:, : min(N, C)], 1) is not None
            pp["transpose"] = not rowwise
        return pp

    def _node_entries(self, node: IntNode, out_lead, N, params=None):
        C = self.C
        nt = -(-N // C)
        lead = out_lead[1:]
        full = (*lead, 1, N)

        def bc(v, default):
            if v is None:
                return np.broadcast_to(np.asarray(default, np.int64), full)
            v = np.asarray(v, dtype=np.int64)
            try:
                return np.broadcast_to(v.reshape((1,) * (len(full) - v.ndim) + v.shape), full)
            except ValueError:
                raise self._err(f"epilogue parameters of shape {v.shape} do not broadcast to "
                                f"{full}") from None

        if params is not None:
            bias, mult, shift = (bc(v, 0) for v in params)
        else:
            bias = bc(node.bias, 0)
            if node.row_scale is None:
                mult, shift = bc(node.multiplier, 0), bc(node.shift, 0)
            else:
                mult, shift = bc(None, 0), bc(None, 0)
        L = _prod(lead)
        e = np.stack([bias, mult, shift]).reshape(3, L, N)
        # distinct parameter sets per lead index
        uniq, inv = np.unique(e.transpose(1, 0, 2).reshape(L, -1), axis=0, return_inverse=True)
        pad = np.zeros((len(uniq), 3, nt * C), dtype=np.int64)
        pad[:, :, :N] = uniq.reshape(len(uniq), 3, N)
        blob = b"".join(encode_bias_entries(*pad[i]) for i in range(len(uniq)))
        base = self._const(f"{node.name}.entries", blob)
        addrs = base + np.arange(len(uniq)) * nt * C * BIAS_ENTRY_BYTES
        # lead index per g (g runs over (B, *lead))
        per_g = np.tile(np.asarray(inv).reshape(-1), out_lead[0])
        return addrs, per_g

    def _row_scale_addr(self, node: IntNode, out_lead, M):
        ref = node.row_scale
        src = self.place.get(ref.source)
        if src is None or "int32" not in src.planes:
            raise self._err(f"row scale {ref.source} is not a stored 16-bit vector")
        a = address_map(ref, src, "int32")  # (B, *lead_r, M', 1)
        if a.shape[-1] != 1:
            raise self._err(f"row scale {ref.source} has {a.shape[-1]} columns (needs 1)")
        lead = tuple(a.shape[:-2])
        arr = a.reshape(_prod(lead), a.shape[-2])
        lg = _lead_index(lead, out_lead)
        if arr.shape[1] not in (1, M):
            raise self._err(f"row scale of {arr.shape[1]} rows for {M} output rows")
        if arr.shape[1] == 1:
            arr = np.repeat(arr, M, axis=1)
        return arr, lg

    def _tiling(self, node, passes, nt, rows, has_rs):
        """(ng column tiles per group, m rows per tile, k chunks per group for each pass)."""
        chip, R, C = self.chip, self.R, self.C
        acc_slot, a_slot, o_slot = chip.acc_slot, chip.a_slot, chip.o_slot
        out_planes = 2 if self.node.split_out else 1
        ng = max(1, min(nt, _FIELD_MAX))
        wring = chip.weights.ring.size
        while True:
            m = min(rows, _FIELD_MAX, acc_slot // ng, o_slot // (ng * out_planes))
            if self.node.split_out:
                m = min(m, _FIELD_MAX // ng)
            if has_rs or any(pp.get("tA") for pp in passes):
                m = min(m, chip.rs_slot, chip.rs_acc)
            ents = ng * C
            if m >= min(rows, 4 * R) and ents * 2 <= chip.entries.ring.size:
                break
            if ng == 1:
                break
            ng = max(1, ng // 2)
        if m < 1:
            raise self._err("no tile fits the accumulator/scratchpad arenas")
        for pp in passes:
            if pp.get("res") is not None:
                src = pp["res"][0]
                # row tiles of the resident producer's size read its blocks whole
                tb = max(self.resident[src]["blocks"].values())
                if tb != min(m, rows):
                    self.mismatched.setdefault(
                        src, f"DRAM: {node.name} tiles its rows by {min(m, rows)} (the "
                             f"producer by {tb})")
                if tb <= m:
                    m = tb
        kgs = []
        for pp in passes:
            kg = max(1, min(pp["kt"], a_slot // m, _FIELD_MAX))
            if pp.get("tA"):
                kg = max(1, min(kg, chip.rs_acc // m))
            # weights of one group must fit half of the weight ring (double buffering)
            blk = R if not pp.get("transpose") else C
            while kg > 1 and ng * kg * blk * 2 > wring:
                kg = max(1, kg // 2)
            if ng * kg * blk > wring:
                raise self._err(f"{ng * kg * blk} weight rows exceed the {wring}-row weight ring")
            kgs.append(kg)
        return ng, m, kgs

    # ---- one output tile

    def _tile(self, node, passes, out, rows_g, rows_i, u0, nge, kgs, ent_addr, ent_lead, rs,
              M, N):
        R, C, chip = self.R, self.C, self.chip
        me = rows_g.size
        # consecutive tiles alternate accumulator halves (allocation.OnChip)
        acc = chip.acc_bases[self.toggle["acc"]]
        self.toggle["acc"] ^= 1
        g0 = int(rows_g[0])
        ents = self.entries((node.name, int(ent_lead[g0]), u0, nge),
                            int(ent_addr[ent_lead[g0]]) + u0 * C * BIAS_ENTRY_BYTES, nge * C)
        written = [False] * nge
        bias_left = [node.bias is not None] * nge
        stages = [("pre", [p for p in passes if node.passes[p["index"]].stage == "pre"]),
                  ("post", [p for p in passes if node.passes[p["index"]].stage == "post"])]
        for stage, pps in stages:
            for pp in pps:
                kg = kgs[pp["index"]]
                lb = int(pp["lb"][g0])
                for t0 in range(0, pp["kt"], kg):
                    kge = min(kg, pp["kt"] - t0)
                    _w, wmap = self._load_weights(node, pp, lb, u0, nge, t0, kge)
                    ts = sorted({t for (_u, t) in wmap})
                    if not ts:
                        continue
                    a_row = self._load_operand(pp, rows_g, rows_i, ts)
                    pos = {t: i for i, t in enumerate(ts)}
                    dense = (len(wmap) == nge * kge and len(set(written)) == 1
                             and len(set(bias_left)) == 1)
                    if dense:
                        groups = [(0, nge, t0, kge)]
                    else:
                        groups = []
                        for ui in range(nge):
                            t = t0
                            while t < t0 + kge:
                                if (ui, t) not in wmap:
                                    t += 1
                                    continue
                                t1 = t
                                while (t1 < t0 + kge and (ui, t1) in wmap
                                       and wmap[(ui, t1)] == wmap[(ui, t)] + (t1 - t) * (
                                           self.C if pp["transpose"] else R)):
                                    t1 += 1
                                groups.append((ui, 1, t, t1 - t))
                                t = t1
                    for ui, nu, t, kk in groups:
                        use_bias = stage == "post" and bias_left[ui]
                        if not written[ui]:
                            mode = GemmMode.BIAS if use_bias else GemmMode.OVERWRITE
                        else:
                            mode = GemmMode.ACCUMULATE_BIAS if use_bias else GemmMode.ACCUMULATE
                        blk = C if pp["transpose"] else R
                        w_row = wmap[(ui, t)]
                        a_t = a_row + pos[t] * me
                        acc_t = acc + ui * me
                        if pp.get("res") is not None:
                            self._gemm_resident(pp, mode, wmap, ui, nu, t, kk, acc, me,
                                                int(rows_g[0]) * M + int(rows_i[0]), ents)
                            for q in range(ui, ui + nu):
                                written[q] = True
                                if use_bias:
                                    bias_left[q] = False
                            continue
                        accs = [Access("spad", w_row, nu * kk * blk, False),
                                Access("spad", a_t, kk * me, False),
                                Access("acc", acc_t, nu * me, True)]
                        if mode.reads_accumulator:
                            accs.append(Access("acc", acc_t, nu * me, False))
                        bias = ents + ui * C
                        if mode.reads_bias:
                            accs.append(Access("bias", bias, nu * C, False))
                        self.emit(Gemm(mode=mode, transpose=bool(pp["transpose"]), w=w_row,
                                       a=a_t, acc=acc_t, m=me, k_tiles=kk, n_tiles=nu,
                                       bias=bias if mode.reads_bias else 0), accs)
                        for q in range(ui, ui + nu):
                            written[q] = True
                            if use_bias:
                                bias_left[q] = False
            if stage == "pre" and pps:
                if not all(written):
                    raise self._err("a column tile got no GEMM before the x256 step")
                self._epi_inplace(acc, me * nge, "x256", _IDENTITY)
        if not all(written):
            raise self._err("a column tile got no GEMM")
        bias_pending = any(bias_left)
        if bias_pending:
            raise self._err("bias without a GEMM pass after the x256 step")
        # ---- epilogue
        fn = self.table_slot(node.table)
        if rs is not None:
            scale, mode = self._row_scale(node, rs, rows_g, rows_i), ScaleMode.ROW
            scale_acc = Access("bias", scale, me, False)
        else:
            scale, mode = ents, ScaleMode.COL
            scale_acc = Access("bias", ents, nge * C, False)
        o = chip.o_base + self.toggle["o"] * chip.o_slot
        self.toggle["o"] ^= 1
        orow = rows_g * M + rows_i  # output row (over the batch) of each tile row
        keep = self.resident.get(node.name)
        if keep is not None:
            if me > 1 and not np.all(np.diff(orow) == 1):
                raise self._err("tile rows are not consecutive output rows")
            r0 = int(orow[0])
            keep["blocks"][r0] = me
            at = {pl: b + r0 * keep["nt"] + u0 * me for pl, b in keep["base"].items()}
        if node.split_out or node.out_bits != 8:
            self.emit(Epi(src=acc, dst=acc, dest=EpiDest.ACC, scale_mode=mode, scale=scale, fn=fn,
                          m=me, n_tiles=nge),
                      [Access("acc", acc, nge * me, False), scale_acc, Access("pwl", fn, 1, False),
                       Access("acc", acc, nge * me, True)])
            if node.split_out:
                e = self._const_set("shr8", chip.e_shr8)
                ident = self.table_slot(_IDENTITY)
                rows = nge * me
                o, o_lo = (at["hi"], at["lo"]) if keep is not None else (o, o + rows)
                self.emit(Epi(src=acc, dst=o, dest=EpiDest.SPAD, scale=e, fn=ident, m=rows,
                              n_tiles=1),
                          [Access("acc", acc, rows, False), Access("bias", e, C, False),
                           Access("pwl", ident, 1, False), Access("spad", o, rows, True)])
                w = self.neg128()
                for _ in range(2):
                    self.emit(Gemm(mode=GemmMode.ACCUMULATE, w=w, a=o, acc=acc, m=rows,
                                   k_tiles=1, n_tiles=1),
                              [Access("spad", w, R, False), Access("spad", o, rows, False),
                               Access("acc", acc, rows, False), Access("acc", acc, rows, True)])
                e1 = self._const_set("unit", chip.e_unit)
                ident = self.table_slot(_IDENTITY)
                self.emit(Epi(src=acc, dst=o_lo, dest=EpiDest.SPAD, scale=e1, fn=ident,
                              m=rows, n_tiles=1),
                          [Access("acc", acc, rows, False), Access("bias", e1, C, False),
                           Access("pwl", ident, 1, False), Access("spad", o_lo, rows, True)])
                if keep is None:
                    self._store(MemSpace.SPAD, o, out, "hi", orow, u0, nge, me, N)
                    self._store(MemSpace.SPAD, o_lo, out, "lo", orow, u0, nge, me, N)
            else:
                if node.out_bits == 16:
                    self._epi_inplace(acc, me * nge, "unit", _CLAMP16)
                self._store(MemSpace.ACC, acc, out, "int32", orow, u0, nge, me, N)
        else:
            if keep is not None:
                o = at["int8"]
            self.emit(Epi(src=acc, dst=o, dest=EpiDest.SPAD, scale_mode=mode, scale=scale, fn=fn,
                          m=me, n_tiles=nge),
                      [Access("acc", acc, nge * me, False), scale_acc, Access("pwl", fn, 1, False),
                       Access("spad", o, nge * me, True)])
            if keep is None:
                self._store(MemSpace.SPAD, o, out, "int8", orow, u0, nge, me, N)

    def _gemm_resident(self, pp, mode, wmap, ui, nu, t, kk, acc, me, rho0, ents) -> None:
        """The GEMMs of column tiles ``ui .. ui+nu-1`` and chunks ``t .. t+kk-1`` whose left
        operand (rows ``rho0 ..`` of a resident tensor) is read in place: chunk ``t`` of the
        block starting at row ``b`` is at ``base + b*nt + t*size``. A tile that is one block
        runs as one GEMM; otherwise one GEMM per block piece, column tile and chunk."""
        R, C = self.R, self.C
        src, plane = pp["res"]
        res = self.resident[src]
        base, ntp, blocks = res["base"][plane], res["nt"], res["blocks"]
        pieces = [(b, n) for b, n in sorted(blocks.items()) if b < rho0 + me and rho0 < b + n]
        if sum(min(b + n, rho0 + me) - max(b, rho0) for b, n in pieces) != me:
            raise self._err(f"rows {rho0}..{rho0 + me - 1} of resident {src} were not all "
                            "written by its producer")

        def gemm(md, w, a, accr, m, k, n, bias):
            accs = [Access("spad", w, n * k * R, False), Access("spad", a, k * m, False),
                    Access("acc", accr, n * m, True)]
            if md.reads_accumulator:
                accs.append(Access("acc", accr, n * m, False))
            if md.reads_bias:
                accs.append(Access("bias", bias, n * C, False))
            self.emit(Gemm(mode=md, w=w, a=a, acc=accr, m=m, k_tiles=k, n_tiles=n,
                           bias=bias if md.reads_bias else 0), accs)

        if len(pieces) == 1 and pieces[0] == (rho0, me):
            gemm(mode, wmap[(ui, t)], base + rho0 * ntp + t * me, acc + ui * me, me, kk, nu,
                 ents + ui * C)
            return
        self.mismatched.setdefault(src, f"DRAM: {self.node.name} reads its row blocks in "
                                        "pieces")
        for b, n in pieces:
            s0, e0 = max(b, rho0), min(b + n, rho0 + me)
            for u in range(ui, ui + nu):
                for j, tt in enumerate(range(t, t + kk)):
                    md = mode if j == 0 else GemmMode.ACCUMULATE
                    gemm(md, wmap[(u, tt)], base + b * ntp + tt * n + (s0 - b),
                         acc + u * me + (s0 - rho0), e0 - s0, 1, 1, ents + u * C)

    def _epi_inplace(self, acc: int, rows: int, entries: str, table: PwlTable) -> None:
        base = {"x256": self.chip.e_x256, "unit": self.chip.e_unit}[entries]
        e = self._const_set(entries, base)
        fn = self.table_slot(table)
        self.emit(Epi(src=acc, dst=acc, dest=EpiDest.ACC, scale=e, fn=fn, m=rows, n_tiles=1),
                  [Access("acc", acc, rows, False), Access("bias", e, self.C, False),
                   Access("pwl", fn, 1, False), Access("acc", acc, rows, True)])

    def _row_scale(self, node, rs, rows_g, rows_i) -> int:
        arr, lg = rs
        chip = self.chip
        me = rows_g.size
        addr = arr[lg[rows_g], rows_i][:, None]
        stage = chip.rs_acc_base
        self.load_rows(MemSpace.ACC, stage, addr, 4)
        dst = chip.rs_base + self.toggle["rs"] * chip.rs_slot
        self.toggle["rs"] ^= 1
        e = self._const_set("unit", chip.e_unit)
        fn = self.table_slot(_IDENTITY)
        shift = int(np.asarray(node.shift).reshape(-1)[0])
        if np.any(np.asarray(node.shift) != shift):
            raise self._err("a row-scaled epilogue needs one shift")
        self.emit(Epi(src=stage, dst=dst, dest=EpiDest.SCALE, scale=e, fn=fn, m=me, n_tiles=1,
                      col=0, out_shift=shift),
                  [Access("acc", stage, me, False), Access("bias", e, self.C, False),
                   Access("pwl", fn, 1, False), Access("bias", dst, me, True)])
        return dst

    def _store(self, mem, src, out: Placement, plane, orow, u0, nge, me, N) -> None:
        C = self.C
        e = out.esize
        base = out.planes[plane]
        full = nge if (u0 + nge) * C <= N else nge - 1
        # rows are consecutive output rows when orow is a run
        if me > 1 and not np.all(np.diff(orow) == 1):
            raise self._err("tile rows are not consecutive output rows")
        r0 = int(orow[0])
        if full:
            addr = base + (r0 * N + u0 * C) * e
            self.emit(Store(mem=mem, src=src, rows=me, tiles=full, base=0, offset=addr,
                            stride=N * e, length=C),
                      [Access("spad" if mem == MemSpace.SPAD else "acc", src, full * me, False),
                       Access("dram", addr, ((me - 1) * N + full * C) * e, True)])
        if full < nge:
            cw = N - (u0 + full) * C
            addr = base + (r0 * N + (u0 + full) * C) * e
            s = src + full * me
            self.emit(Store(mem=mem, src=s, rows=me, tiles=1, base=0, offset=addr, stride=N * e,
                            length=cw),
                      [Access("spad" if mem == MemSpace.SPAD else "acc", s, me, False),
                       Access("dram", addr, ((me - 1) * N + cw) * e, True)])

    def _load_operand(self, pp, rows_g, rows_i, ts) -> int:
        if pp.get("res") is not None:
            return -1  # read in place from the resident arena (see _gemm)
        chip, R = self.chip, self.R
        me = rows_g.size
        dst = chip.a_base + self.toggle["a"] * chip.a_slot
        self.toggle["a"] ^= 1
        la = pp["la"][rows_g]
        if pp["a_const"]:
            Mc = pp["a_rows"]
            kt = pp["kt"]
            for pos, t in enumerate(ts):
                rowbase = pp["a_base"] + ((la * kt + t) * Mc + rows_i) * R
                addr = rowbase[:, None] + np.arange(R, dtype=np.int64)[None, :]
                self.load_rows(MemSpace.SPAD, dst + pos * me, addr, 1)
        elif pp.get("tA"):
            self._transpose_operand(pp, la, rows_i, ts, dst)
        else:
            a = pp["a_addr"]
            pending = []  # chunks loaded as row runs, in one call (runs may span chunks)
            for pos, t in enumerate(ts):
                ch = pp["cols"][t]
                ok = ch >= 0
                addr = np.full((me, R), -1, dtype=np.int64)
                addr[:, : ok.sum()] = a[la[:, None], rows_i[:, None], ch[ok][None, :]]
                if pp.get("conv") is None or not self._conv_walk(
                        pp["conv"], ch[ok], la, rows_i, addr[:, : max(1, int(ok.sum()))],
                        dst + pos * me):
                    pending.append((pos, addr))
            width = max((int((ad >= 0).any(axis=0).nonzero()[0].max(initial=0)) + 1
                         for _p, ad in pending), default=1)
            i = 0
            while i < len(pending):
                j = i + 1
                while j < len(pending) and pending[j][0] == pending[j - 1][0] + 1:
                    j += 1
                block = np.concatenate([ad[:, :width] for _p, ad in pending[i:j]])
                self.load_rows(MemSpace.SPAD, dst + pending[i][0] * me, block, 1)
                i = j
        return dst

    def _init_output_lanes(self) -> None:
        """With rows > cols an EPI writes lanes ``0..C-1`` of a scratchpad row but a GEMM reads
        operand lanes ``0..R-1``: zero both output slots once (lanes ``C..R-1`` then stay
        defined; the ``-128 I`` block's rows ``C..R-1`` are zero, so their values never count)."""
        if self._lanes_ready:
            return
        chip = self.chip
        rows = 2 * chip.o_slot
        self.load_rows(MemSpace.SPAD, chip.o_base,
                       np.full((rows, self.cfg.lanes), -1, dtype=np.int64), 1)
        self._lanes_ready = True

    def identity_block(self) -> int:
        """Scratchpad row of the ``I`` block (operand rows of an identity-GEMM transpose)."""
        if self._ident is None:
            R, C = self.R, self.C
            if self._ident_addr is None:
                blk = np.eye(R, C, dtype=np.int8)
                self._ident_addr = self._const("const.identity", blk.tobytes())
            self.load_contiguous(R, self._ident_addr, R, C)
            self._ident = R
        return self._ident

    def _transpose_operand(self, pp, la, rows_i, ts, dst) -> None:
        """Operand chunks of ``A`` whose columns (not rows) are DRAM runs: each block of up to
        R rows x R columns is loaded as a transposed weight block and multiplied by the
        identity (``GEMM transpose=1``), then one EPI writes the chunks to ``dst``."""
        R, C, chip = self.R, self.C, self.chip
        me = rows_i.size
        a = pp["a_addr"]
        ident = self.identity_block()
        stage = chip.rs_acc_base
        blocks = []
        r = 0
        while r < me:
            q = r + 1
            while q < me and q - r < R and la[q] == la[r] and rows_i[q] == rows_i[q - 1] + 1:
                q += 1
            blocks.append((r, q))
            r = q
        for pos, t in enumerate(ts):
            ch = pp["cols"][t]
            for r, q in blocks:
                nb = q - r
                # a transposed block is C rows (chunk elements; R <= C) of R lanes (A rows)
                addr = np.full((C, R), -1, dtype=np.int64)
                ok = np.nonzero(ch >= 0)[0]
                addr[ok, :nb] = a[la[r], rows_i[r:q][None, :], ch[ok][:, None]]
                # staged in the output slot the next epilogue writes (not in the weight ring,
                # which holds this tile's weights); the scheduler orders the reuse
                spare = chip.o_base + self.toggle["o"] * chip.o_slot
                w = spare + (self._staged % max(1, chip.o_slot // C - 1)) * C
                self._staged += 1
                self.load_rows(MemSpace.SPAD, w, addr, 1)
                acc = stage + pos * me + r
                self.emit(Gemm(mode=GemmMode.OVERWRITE, transpose=True, w=w, a=ident, acc=acc,
                               m=nb, k_tiles=1, n_tiles=1),
                          [Access("spad", w, C, False), Access("spad", ident, nb, False),
                           Access("acc", acc, nb, True)])
        rows = len(ts) * me
        e = self._const_set("unit", chip.e_unit)
        fn = self.table_slot(_IDENTITY)
        self.emit(Epi(src=stage, dst=dst, dest=EpiDest.SPAD, scale=e, fn=fn, m=rows, n_tiles=1),
                  [Access("acc", stage, rows, False), Access("bias", e, self.C, False),
                   Access("pwl", fn, 1, False), Access("spad", dst, rows, True)])

    def _conv_source(self, op: Operand):
        """Geometry of a convolution operand (last view Im2col over an HWC-stored image):
        per lead index the image base address, and (H, W, pitch, pix, C, kernel, stride, pad,
        dilation); None if the view chain is not of that form."""
        views = op.ref.views
        if not views or not isinstance(views[-1], Im2col):
            return None
        im = views[-1]
        pre = TensorRef(op.ref.source, op.ref.source_shape, views[:-1])
        src = self.place[op.ref.source]
        a = address_map(pre, src, op.plane)  # (B, *lead, C, H, W)
        if (a < 0).any() or a.ndim < 4:
            return None
        c, h, w = a.shape[-3:]
        flat = a.reshape(-1, c, h, w)
        base = flat[:, 0, 0, 0]
        expect = (base[:, None, None, None] + np.arange(c)[None, :, None, None]
                  + (np.arange(h)[None, None, :, None] * w
                     + np.arange(w)[None, None, None, :]) * c)
        if not np.array_equal(flat, expect):
            return None
        return {"base": base, "H": h, "W": w, "C": c, "im": im}

    def _conv_walk(self, conv, cols, la, rows_i, addr, dst) -> bool:
        """Load one operand chunk of a convolution as DMACFG image walks (output rows as the
        outer loop, output pixels as the inner one); False if the walk would not reproduce
        ``addr`` exactly (then the caller loads row runs)."""
        im = conv["im"]
        kh, kw = im.kernel
        sh, sw = im.stride
        ph, pw = im.padding
        dh, dw = im.dilation
        H, W, C = conv["H"], conv["W"], conv["C"]
        if sh > 63 or sw > 63 or dh != 1 or dw != 1:
            return False
        wo = (W + 2 * pw - (kw - 1) - 1) // sw + 1
        col0 = int(cols[0])
        c0, tap = divmod(col0, kh * kw)
        i, j0 = divmod(tap, kw)
        length = addr.shape[1]
        key = (H, W, W * C, C, sh, sw)
        # rows: runs of one lead index and consecutive output positions
        me = rows_i.size
        segs = []
        r = 0
        while r < me:
            q = r + 1
            while q < me and la[q] == la[r] and rows_i[q] == rows_i[q - 1] + 1:
                q += 1
            segs.append((r, q))
            r = q
        plan = []
        for r, q in segs:
            pos = int(rows_i[r])
            end = int(rows_i[q - 1]) + 1
            base = int(conv["base"][la[r]]) + c0
            while pos < end:
                oy, ox = divmod(pos, wo)
                if ox == 0 and end - pos >= wo:
                    outer = min((end - pos) // wo, _FIELD_MAX)
                    inner = wo
                else:
                    outer, inner = 1, min(wo - ox, end - pos)
                plan.append((r + pos - int(rows_i[r]), base, outer, inner, oy * sh + i - ph,
                             ox * sw + j0 - pw))
                pos += outer * inner
        # verify against the address map
        sim = np.full_like(addr, -1)
        b = np.arange(length, dtype=np.int64)[None, :]
        for row0, base, outer, inner, y0, x0 in plan:
            o = np.arange(outer, dtype=np.int64)[:, None]
            qq = np.arange(inner, dtype=np.int64)[None, :]
            y = (y0 + o * sh + 0 * qq).reshape(-1, 1)
            x = (x0 + qq * sw + 0 * o).reshape(-1, 1)
            px = x + b // C
            valid = (y >= 0) & (y < H) & (px >= 0) & (px < W)
            a = base + y * W * C + x * C + b
            sim[row0 : row0 + outer * inner] = np.where(valid, a, -1)
        if not np.array_equal(sim, addr) or length > self.cfg.lanes:
            return False
        slot = self._conv_geometry(key)
        for row0, base, outer, inner, y0, x0 in plan:
            n = outer * inner
            valid = sim[row0 : row0 + n]
            acc = [Access("spad", dst + row0, n, True)]
            if (valid >= 0).any():
                lo = int(valid[valid >= 0].min())
                hi = int(valid.max()) + 1
                acc.append(Access("dram", lo, hi - lo, False))
            self.emit(Load(mem=MemSpace.SPAD, geom=slot, base=0, offset=base, dst=dst + row0,
                           outer=outer, inner=inner, y0=y0, x0=x0, length=length), acc)
        return True

    def _conv_geometry(self, key) -> int:
        h, w, pitch, pix, sy, sx = key
        slot, hit = self.chip.geometry.lookup(("conv", *key))
        if not hit:
            self.emit(Dmacfg(slot=slot, height=h, width=w, pitch=pitch, pix=pix, sy=sy, sx=sx))
        return slot

    def _load_weights(self, node, pp, lb, u0, nge, t0, kge):
        """Weight blocks of column tiles ``u0 ..`` and chunks ``t0 ..`` (from the weight cache).
        Returns (first row, {(u', t): row of block (u0 + u', t)}); constant weights hold only
        their non-zero blocks."""
        R, C = self.R, self.C
        blk = C if pp["transpose"] else R
        key = (node.name, pp["index"], lb, u0, nge, t0, kge)
        hit = self.chip.weights.get(key)
        if hit is not None:
            return hit, pp["wmaps"][key]
        if pp["b_const"]:
            nz = pp["nz"][lb]
            runs = []  # (u', t_first, count)
            for ui in range(nge):
                t = t0
                while t < t0 + kge:
                    if not nz[u0 + ui, t]:
                        t += 1
                        continue
                    t1 = t
                    while t1 < t0 + kge and nz[u0 + ui, t1]:
                        t1 += 1
                    runs.append((ui, t, t1 - t))
                    t = t1
            n = sum(r[2] for r in runs) * R
        else:
            runs = [(ui, t0, kge) for ui in range(nge)]
            n = nge * kge * blk
        w = self.chip.weights.put(key, max(n, 1))
        if w is None:
            raise self._err(f"{n} weight rows exceed the weight ring")
        wmap = {}
        row = w
        if pp["b_const"]:
            kt = pp["kt"]
            nt = -(-pp["N"] // C)
            for ui, t, cnt in runs:
                first = pp["b_base"] + ((((lb * nt) + u0 + ui) * kt + t) * R) * C
                self.load_contiguous(row, first, cnt * R, C)
                for q in range(cnt):
                    wmap[(ui, t + q)] = row + q * R
                row += cnt * R
        else:
            b = pp["b_addr"][lb]  # (K, N)
            N = b.shape[1]
            rows = []
            for ui in range(nge):
                u = u0 + ui
                for t in range(t0, t0 + kge):
                    ch = pp["cols"][t]
                    ok = ch >= 0
                    cw = min(C, N - u * C)
                    if not pp["transpose"]:
                        blkaddr = np.full((R, C), -1, dtype=np.int64)
                        blkaddr[: ok.sum(), :cw] = b[ch[ok]][:, u * C : u * C + cw]
                    else:
                        blkaddr = np.full((C, R), -1, dtype=np.int64)
                        blkaddr[:cw, : ok.sum()] = b[ch[ok]][:, u * C : u * C + cw].T
                    rows.append(blkaddr)
                    wmap[(ui, t)] = w + (ui * kge + (t - t0)) * blk
            self.load_rows(MemSpace.SPAD, w, np.concatenate(rows), 1)
        pp.setdefault("wmaps", {})[key] = wmap
        return w, wmap


def _columns_are_runs(a: np.ndarray) -> bool:
    """Whether every column of every ``a[l]`` (L, M, K) is one contiguous DRAM run over M."""
    from compiler.backend.layout import _contiguous

    cols = a.transpose(0, 2, 1).reshape(-1, a.shape[1])
    return bool((cols >= 0).all() and _contiguous(cols, 1).all())


def emit_program(ir: IntGraph, config: AcceleratorConfig, batch: int,
                 shapes: dict[str, tuple[int, ...]], *, keep_outputs=False,
                 per_node: bool = False, retile: bool = True, on_chip: bool = True) -> Emitted:
    """Lower ``ir`` for ``config`` and ``batch`` samples (``shapes``: per-sample shapes of the
    tensors entering the machine).

    ``keep_outputs``: True: every node's output keeps its own DRAM region (no reuse after its
    last reader, nothing kept on chip), so a run's final DRAM image holds every intermediate
    tensor (a debug compile); a collection of node names: those nodes' outputs only.
    ``per_node``: every node becomes its own program ending in HALT, starting cold (no tokens,
    nothing resident on chip); ``Emitted.node_programs`` holds them and ``instructions`` is
    empty. Run in order on one DRAM image they compute what the single program computes.
    When a reader of an on-chip activation tiles its rows differently from the producer (smaller
    tiles, or the producer's row blocks in pieces), the program is emitted a second time with
    that activation in DRAM (``retile=False`` keeps the first emission; tests use it to run the
    pieces). ``on_chip=False`` sends every activation through DRAM (to measure what residency
    saves)."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    opts = dict(on_chip=on_chip, keep_outputs=keep_outputs, per_node=per_node)
    em = Emitter(ir, config, batch, shapes, **opts)
    out = em.lower()
    if not retile or not em.mismatched:
        return out
    # a reader of an on-chip activation tiles its rows differently from the producer (it took
    # smaller tiles, or reads the producer's blocks in pieces: one GEMM per piece, column tile
    # and chunk): emit again with those activations in DRAM
    return Emitter(ir, config, batch, shapes, exclude=em.mismatched, **opts).lower()
