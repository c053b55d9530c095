"""The fast simulation path: the Verilated accelerator in a C++ harness, driven through ctypes.

``sim/harness/nmx_harness.cpp`` wraps the Verilated ``nmx_accelerator`` (built by
:func:`sim.verilator.build_library`: optimised, no ``--public-flat-rw``, no cocotb) with

- a flat DRAM model behind the AXI4 master (``mem_size`` bytes at address 0): reads return data
  ``read_latency`` cycles after AR at the earliest, writes answer B ``write_latency`` cycles after
  their last W beat; with ``backpressure`` = p every ready the model drives (AR, AW, W) and every
  new R beat and B response pauses with probability p (a seeded PRNG). A beat touching a byte at
  or above ``mem_size`` gets SLVERR (a write burst with such a byte writes nothing), which the
  accelerator reports as DRAM_RANGE: the golden model's rule for an image of ``mem_size`` bytes;
- AXI protocol checks that stop the simulation with :class:`AxiProtocolError`: a burst crossing
  a 4 KiB boundary, AxSIZE wider than the bus, a burst type other than INCR, AxVALID/WVALID
  dropped before READY or its payload changed while waiting, WLAST on the wrong beat, WSTRB bits
  outside the beat's byte lanes;
- an AXI4-Lite master for the registers, and run-until-irq / run-until-idle with a cycle budget.

:class:`VerilatorTransport` implements :class:`nmx.runtime.transport.Transport` on it; host code
uses it through :class:`nmx.runtime.device.Device`. The harness has no arithmetic of its own:
the RTL computes, the harness moves bytes.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np

from hw.config import AcceleratorConfig
from hw.errors import NmxError
from hw.registers import REGISTER_BYTES, RunState, by_name
from hw.rtl import TOPS, write_if_changed
from sim.rtl_cache import cached_rtl
from sim.verilator import BUILD_ROOT, build_library, pgo_enabled

__all__ = [
    "HARNESS_SOURCES",
    "AxiProtocolError",
    "HarnessError",
    "VerilatorTransport",
    "build_harness",
]

#: The C++ sources of the harness (package data).
HARNESS_SOURCES = (Path(__file__).resolve().with_name("harness") / "nmx_harness.cpp",)
_VERILOG_DIR = BUILD_ROOT.parent / "harness"
_TRAINING_DIR = _VERILOG_DIR / "training"
_RUN_REACHED, _RUN_BUDGET, _RUN_FAILED = 1, 0, -1
_UNTIL_IRQ, _UNTIL_IDLE = 0, 1
_STATUS_OFFSET = 0x008  # the C++ polls STATUS here: checked against hw.registers below
_STATE_BUSY = 1
#: Simulated cycles per call into C++ while waiting with a wall-clock timeout.
_WAIT_CHUNK = 200_000


class HarnessError(NmxError):
    """The C++ harness could not be created or a register access failed."""


class AxiProtocolError(HarnessError):
    """The accelerator broke the AXI protocol (the message names the rule, the cycle, the burst)."""


def _check_register_constants() -> None:
    status = by_name("STATUS")
    state = status.field("state")
    if status.offset != _STATUS_OFFSET or state.lsb != 0 or RunState.BUSY != _STATE_BUSY:
        raise AssertionError("sim/harness/nmx_harness.cpp's STATUS constants no longer match "
                             "hw.registers: update kStatusOffset/kStateBusy there")


_check_register_constants()


#: Top-level module of the fast path's model (:func:`sim_top_verilog`).
SIM_TOP = "nmx_sim_top"
_PORT = re.compile(r"^\s*(input|output)\s+(\[[^\]]+\]\s*)?([A-Za-z_][A-Za-z0-9_$]*)\s*;", re.M)


# Yosys's write_verilog form of an Amaranth register assigned under a condition (Amaranth's IR
# has no flip-flop with an enable): a $dff fed by a process that holds the register's value
#     always @(posedge clk)
#       q <= \$N ;
#     always @* begin
#       if (\$auto$verilog_backend.cc:...) begin end
#       \$N  = q;
#       if (en) begin
#         \$N  = d;
#       end
#     end
_HOLD_PROCESS = re.compile(
    r"  always @\* begin\n"
    r"    if \(\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ \) begin end\n"
    r"    (?P<n>\\\$\d+)  = (?P<q>[A-Za-z_][A-Za-z0-9_]*);\n"
    r"    if \((?P<en>[^()\n]+)\) begin\n      (?P=n)  = (?P<d>[^;\n]+);\n    end\n  end\n")
_MODULE_START = re.compile(r"(?m)^(?=module )")
# The flip-flop a hold process feeds: ``always @(posedge clk) q <= \$N ;``.
_HELD_FLOP = re.compile(r"  always @\(posedge (?P<clk>[A-Za-z_][A-Za-z0-9_]*)\)\n"
                        r"    (?P<q>[A-Za-z_][A-Za-z0-9_]*) <= (?P<n>\\\$\d+) ;\n")
_ESCAPED_REF = re.compile(r"\\\$\d+ ")


def _apply_edits(text: str, edits: list[tuple[int, int, str]]) -> str:
    """``text`` with each ``(begin, end, replacement)`` of ``edits`` (disjoint spans) applied."""
    pieces, at = [], 0
    for begin, end, replacement in sorted(edits):
        pieces += [text[at:begin], replacement]
        at = end
    pieces.append(text[at:])
    return "".join(pieces)


def enable_form_verilog(verilog: str) -> tuple[str, int]:
    """``verilog`` with every register that Yosys wrote as a ``$dff`` plus a hold process (see
    ``_HOLD_PROCESS``) written as ``always @(posedge clk) if (en) q <= d;``; returns the text and
    the number of registers rewritten.

    Simulation only, and the same machine: the process's variable ``\\$N`` must occur nowhere
    else in its module (its declaration, the flip-flop and the process's two assignments), so
    ``q`` takes ``d`` on the clock edges where ``en`` is high and keeps its value otherwise, as
    before; a register in any other form is left as it is. Why: Verilator inlines the hold
    process into the register's update, which then reads the register itself; that self-read is a
    cycle in Verilator's ordering graph, which it breaks by cutting the soft edge that orders
    every other reader of the register before its update, so readers may be scheduled after it
    and the register gets a ``__Vdly__`` copy, a conditional update into the copy and a write-back
    on every clock edge (the array's held weights, 256 registers on ``default``). A conditional
    assignment reads nothing of the register, so its readers stay ordered before it and the
    update is one conditional store. docs/simulation.md, "Speed".
    """
    out, total = [], 0
    for module in _MODULE_START.split(verilog):
        # One scan each for the references to every escaped identifier (one ends at white
        # space, so this counts each reference) and for every flip-flop of the form the hold
        # process feeds; the rewrites below then splice the module in one pass.
        refs = Counter(_ESCAPED_REF.findall(module))
        flops: dict[tuple[str, str], list[re.Match]] = {}
        for f in _HELD_FLOP.finditer(module):
            flops.setdefault((f["q"], f["n"]), []).append(f)
        edits = []
        for m in _HOLD_PROCESS.finditer(module):
            found = flops.get((m["q"], m["n"]), [])
            if len(found) != 1 or refs[m["n"] + " "] != 4:
                continue
            f = found[0]
            edits.append((m.start(), m.end(), ""))
            edits.append((f.start(), f.end(), f"  always @(posedge {f['clk']})\n"
                                              f"    if ({m['en']}) {m['q']} <= {m['d']};\n"))
            total += 1
        out.append(_apply_edits(module, edits))
    return "".join(out), total


# Yosys's write_verilog form of a memory write port with byte (lane) enables, and of a read port
# transparent to it: one conditional assignment per lane of ``g`` bits,
#     always @(posedge clk) begin
#       if (en [i])
#         mem[wa][g*i+g-1:g*i] <= wd [g*i+g-1:g*i];
#       ...
#     end
#     always @(posedge clk) begin
#       if (re) begin
#         q <= mem[ra];
#         if (en [i] && ra == wa)
#           q[g*i+g-1:g*i] <= wd [g*i+g-1:g*i];
#         ...
#       end
#     end
_ID = r"(?:\\\S+ |[A-Za-z_][A-Za-z0-9_$]*)"
_ADDR = _ID + r"(?:\[\d+:\d+\])?"
_LANE_WRITE = re.compile(
    r"  always @\(posedge (?P<clk>[A-Za-z_][A-Za-z0-9_]*)\) begin\n"
    r"(?P<lanes>(?:    if \(" + _ID + r"\[\d+\]\)\n      [A-Za-z_][A-Za-z0-9_]*\[" + _ADDR
    + r"\]\[\d+:\d+\] <= " + _ID + r"\[\d+:\d+\];\n)+)  end\n")
_LANE = re.compile(
    r"    if \((?P<en>" + _ID + r")\[(?P<i>\d+)\]\)\n      (?P<mem>[A-Za-z_][A-Za-z0-9_]*)\["
    r"(?P<wa>" + _ADDR + r")\]\[(?P<hi>\d+):(?P<lo>\d+)\] <= (?P<wd>" + _ID
    + r")\[(?P=hi):(?P=lo)\];\n")
_LANE_READ = re.compile(
    r"  always @\(posedge (?P<clk>[A-Za-z_][A-Za-z0-9_]*)\) begin\n"
    r"    if \((?P<re>" + _ID + r")\) begin\n"
    r"      (?P<q>[A-Za-z_][A-Za-z0-9_]*) <= (?P<mem>[A-Za-z_][A-Za-z0-9_]*)\[(?P<ra>" + _ADDR
    + r")\];\n(?P<lanes>(?:      if \(" + _ID + r"\[\d+\] && " + _ADDR + r" == " + _ADDR
    + r"\)\n        [A-Za-z_][A-Za-z0-9_]*\[\d+:\d+\] <= " + _ID + r"\[\d+:\d+\];\n)+)"
    r"    end\n  end\n")
_READ_LANE = re.compile(
    r"      if \((?P<en>" + _ID + r")\[(?P<i>\d+)\] && (?P<ra>" + _ADDR + r") == (?P<wa>" + _ADDR
    + r")\)\n        (?P<q>[A-Za-z_][A-Za-z0-9_]*)\[(?P<hi>\d+):(?P<lo>\d+)\] <= (?P<wd>"
    + _ID + r")\[(?P=hi):(?P=lo)\];\n")


def _lanes(text: str, pattern: re.Pattern, fields: tuple[str, ...]) -> tuple | None:
    """The shared ``fields`` of the lane assignments in ``text`` and the lane width, or None
    unless they are lanes 0, 1, ... of equal width from bit 0 with those fields in common."""
    found = list(pattern.finditer(text))
    if not found or sum(len(m.group(0)) for m in found) != len(text):
        return None
    common = tuple(found[0][f] for f in fields)
    width = int(found[0]["hi"]) + 1
    for i, m in enumerate(found):
        if (tuple(m[f] for f in fields) != common or int(m["i"]) != i
                or int(m["lo"]) != i * width or int(m["hi"]) != (i + 1) * width - 1):
            return None
    return common, width, len(found)


def row_write_verilog(verilog: str) -> tuple[str, int]:
    """``verilog`` with every memory write port that Yosys wrote as one conditional assignment
    per byte lane (see ``_LANE_WRITE``) written as one conditional row write of the lanes merged
    into the stored row, and the read port transparent to it (``_LANE_READ``) as one assignment
    of the same merge; returns the text and the number of write ports rewritten.

    Simulation only, and the same machine: a port is rewritten only when its lanes are lanes
    0, 1, ... of one width covering the memory's row, all with the same enable vector, address
    and data, and it is the memory's only write (the lines assigning ``mem[`` in the module are
    its lanes), so reading the stored row in the write's process sees the row before this clock
    edge and the lanes whose enable is low keep it. Why: Verilator gives every lane's delayed
    write a ``__VdlySet__`` flag (with its value and address) that is cleared, set and tested on
    every clock edge (the scratchpad banks: 16 per bank on ``default``); a row write has one.
    docs/simulation.md, "Speed".
    """
    out, total = [], 0
    for module in _MODULE_START.split(verilog):
        edits, masks = [], {}
        for m in _LANE_WRITE.finditer(module):
            lanes = _lanes(m["lanes"], _LANE, ("en", "mem", "wa", "wd"))
            if lanes is None:
                continue
            (en, mem, wa, wd), g, n = lanes
            decl = re.search(r"(?m)^  reg \[(\d+):0\] " + re.escape(mem) + r" \[", module)
            writes = re.findall(r"(?m)^\s*" + re.escape(mem) + r"\[.*<=", module)
            if decl is None or int(decl.group(1)) + 1 != g * n or len(writes) != n:
                continue
            w = g * n
            mask = "\\" + mem + "$lanes "
            lanes_expr = ", ".join(f"{{{g}{{{en}[{i}]}}}}" for i in reversed(range(n)))
            edits.append((m.start(), m.end(),
                          f"  wire [{w - 1}:0] {mask};\n  assign {mask} = {{{lanes_expr}}};\n"
                          f"  always @(posedge {m['clk']})\n"
                          f"    if (|{en}) {mem}[{wa}] <= ({mem}[{wa}] & ~{mask}) | ({wd} & "
                          f"{mask});\n"))
            masks[mem] = (en, wa, wd, mask, m.end())
            total += 1
        for m in _LANE_READ.finditer(module):
            if m["mem"] not in masks:
                continue
            en, wa, wd, mask, after = masks[m["mem"]]
            lanes = _lanes(m["lanes"], _READ_LANE, ("en", "ra", "wa", "wd", "q"))
            if (m.start() < after or lanes is None
                    or lanes[0] != (en, m["ra"], wa, wd, m["q"])):
                continue
            mem, ra, q = m["mem"], m["ra"], m["q"]
            edits.append((m.start(), m.end(),
                          f"  always @(posedge {m['clk']})\n"
                          f"    if ({m['re']}) {q} <= {ra} == {wa} ? ({mem}[{ra}] & ~{mask}) | "
                          f"({wd} & {mask}) : {mem}[{ra}];\n"))
        out.append(_apply_edits(module, edits))
    return "".join(out), total


# A clocked process as Yosys (or row_write_verilog) writes it: a begin/end block of statements
# indented by four spaces or more, or a single statement on the next line.
_CLOCKED = re.compile(
    r"  always @\(posedge (?P<clk>[A-Za-z_][A-Za-z0-9_]*)\)"
    r"(?: begin\n(?P<block>(?:    .*\n)*?)  end\n|\n(?P<single>    .*\n))")
_MEMORY = re.compile(r"(?m)^  reg \[\d+:0\] (?P<mem>[A-Za-z_][A-Za-z0-9_]*) \[\d+:0\];\n")


def memory_process_verilog(verilog: str) -> tuple[str, int]:
    """``verilog`` with every memory whose one write port and one synchronous read port are
    processes on the same clock merged into one process: the read port's statements first, then
    the write with a blocking assignment; returns the text and the number of memories merged.

    Simulation only, and the same machine: a memory is merged only when nothing but those two
    processes (and its ``initial`` values) refers to it, the write process assigns nothing else
    and the read process assigns with non-blocking assignments only. The read statements run
    before the write in the merged process, so they read the row stored before this clock edge,
    as before; nothing else reads the memory. Why: Verilator gives a memory written with a
    non-blocking assignment a ``__VdlySet__`` flag, a value and an address copy per write,
    cleared, set and tested on every clock edge (on ``default``: the segment tables, the bias and
    scale banks, the scratchpad and accumulator banks, 130-odd memories); a blocking write in
    the one process that reads the memory needs none. docs/simulation.md, "Speed".
    """
    out, total = [], 0
    for module in _MODULE_START.split(verilog):
        processes = list(_CLOCKED.finditer(module))
        edits = []
        for decl in _MEMORY.finditer(module):
            mem = decl["mem"]
            ref = re.compile(r"(?<![A-Za-z0-9_$\\])" + re.escape(mem) + r"\[")
            init = re.compile(r"    " + re.escape(mem) + r"\[\d+\] = [^;\n]*;\n")
            # Every reference outside the initial values must be in one of two processes.
            refs = len(ref.findall(module)) - len(init.findall(module))
            users = [(m, m["block"] or m["single"]) for m in processes
                     if ref.search(m["block"] or m["single"])]
            if (len(users) != 2 or users[0][0]["clk"] != users[1][0]["clk"]
                    or refs != sum(len(ref.findall(body)) for _, body in users)):
                continue
            lhs = re.compile(r"(?m)^\s*(?:if \([^\n]*\) )?" + ref.pattern + r"[^\n]*?\] <= ")
            writes = [u for u in users if lhs.search(u[1])]
            if len(writes) != 1:
                continue
            (w, wbody), (r, rbody) = writes[0], next(u for u in users if u is not writes[0])
            if (re.search(r"(?<![<>!=])=(?!=)", rbody) or wbody.count("<=") != 1
                    or any(e[0] < max(w.end(), r.end()) and e[1] > min(w.start(), r.start())
                           for e in edits)):
                continue
            body = rbody + wbody.replace("] <= ", "] = ", 1)
            merged = f"  always @(posedge {r['clk']}) begin\n{body}  end\n"
            edits += [(w.start(), w.end(), ""), (r.start(), r.end(), merged)]
            total += 1
        out.append(_apply_edits(module, edits))
    return "".join(out), total


_SIGNED_PRODUCT = re.compile(
    r"(?m)^  assign (?P<n>\\\S+ |[A-Za-z_][A-Za-z0-9_$]*) = \$signed\([^()\n]+\) \* "
    r"\$signed\([^()\n]+\);\n")


def signed_product_verilog(verilog: str) -> tuple[str, int]:
    """``verilog`` with every wire narrower than 32 (or 64) bits that is assigned a signed
    product (``assign p = $signed(a) * $signed(b);``) declared 32 (or 64) bits wide, and every
    other reference to it selecting its original bits; returns the text and the number of
    wires widened.

    Simulation only, and the same values: the low ``W`` bits of a product of sign-extended
    operands do not depend on how far beyond ``W`` bits they are extended. Why: Verilator
    evaluates a ``W``-bit signed product as ``VL_MULS_III(W, ...)``, which sign-extends both
    operands again from ``W`` to 32 bits (four sign extensions per product of two 8-bit
    operands); at 32 (64) bits that second extension is the identity, which the C++ compiler
    removes (the array's 256 multipliers: 6 instructions each per cycle on ``default``).
    docs/simulation.md, "Speed".
    """
    out, total = [], 0
    for module in _MODULE_START.split(verilog):
        for m in list(_SIGNED_PRODUCT.finditer(module)):
            n = m["n"]
            decl = re.compile(r"(?m)^  wire \[(\d+):0\] " + re.escape(n) + r";\n")
            found = decl.findall(module)
            if len(found) != 1 or int(found[0]) + 1 in (32, 64) or int(found[0]) + 1 > 64:
                continue
            width = int(found[0]) + 1
            wide = 32 if width < 32 else 64
            if n.startswith("\\"):
                ref = re.compile(r"(?<![A-Za-z0-9_$\\])" + re.escape(n) + r"(?!\[)")
            else:
                ref = re.compile(r"(?<![A-Za-z0-9_$\\])" + re.escape(n) + r"(?![A-Za-z0-9_$])"
                                 r"(?! ?\[)")
            sel = ("" if n.endswith(" ") else " ") + f"[{width - 1}:0]"
            body = decl.sub("\0DECL\0", module.replace(m.group(0), "\0ASSIGN\0", 1), count=1)
            body = ref.sub(lambda r, sel=sel: r.group(0) + sel, body)
            module = body.replace("\0DECL\0", f"  wire [{wide - 1}:0] {n};\n", 1).replace(
                "\0ASSIGN\0", m.group(0), 1)
            total += 1
        out.append(module)
    return "".join(out), total


def sim_top_verilog(verilog: str, top: str) -> str:
    """Verilog of :data:`SIM_TOP`: module ``top`` of ``verilog`` with every port passed through,
    except that its ``rst`` comes from a flip-flop that samples the ``rst`` input.

    Simulation only, cycle for cycle the same machine (reset is asserted and released one clock
    edge later; the harness clocks once more after releasing it). Verilator evaluates a process
    that reads a top-level input in its input phase (``ico``) as well as on the clock edge; every
    register's reset multiplexer reads ``rst``, so with ``rst`` an input nearly the whole design
    was re-evaluated whenever an input changed (every R beat). Behind a flip-flop only the logic
    that reads the AXI inputs is.
    """
    body = verilog.split(f"\nmodule {top}(", 1)
    if len(body) != 2:
        raise NmxError(f"module {top} not found in the generated Verilog")
    module = body[1].split("\nendmodule", 1)[0]
    ports = [(d, w or "", n) for d, w, n in _PORT.findall(module)]
    names = [n for _, _, n in ports]
    if "rst" not in names or "clk" not in names:
        raise NmxError(f"module {top} has no clk/rst ports (ports: {', '.join(names)})")
    lines = [f"// Generated by sim/rtl_harness.py (sim_top_verilog) for module {top}: "
             "simulation only.", f"module {SIM_TOP}({', '.join(names)});"]
    lines += [f"  {d} {w}{n};" for d, w, n in ports]
    lines += ["  reg rst_q = 1'b1;", "  always @(posedge clk) rst_q <= rst;",
              f"  {top} core ("]
    conns = [f"    .{n}({'rst_q' if n == 'rst' else n})" for n in names]
    lines += [",\n".join(conns), "  );", "endmodule", ""]
    return "\n".join(lines)


@functools.cache
def _rewriters_version() -> str:
    """Names the fast path's Verilog rewriters: this module's source, which holds them, their
    patterns and the helpers they share (part of the fast Verilog's key; an edit elsewhere in
    the module reruns them for the same output, a few seconds)."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def _write_fast_verilog(source: str, fast: Path) -> None:
    """Write the fast path's Verilog of ``source`` (:func:`enable_form_verilog`, then
    :func:`row_write_verilog`, :func:`memory_process_verilog`, :func:`signed_product_verilog`)
    to ``fast`` unless ``fast``
    already holds it: ``<fast>.key`` records the input's SHA-256, the rewriters' version and the
    output's SHA-256, all of which must match (a file edited by hand is rewritten)."""
    key_file = fast.with_name(fast.name + ".key")
    key = {"input": hashlib.sha256(source.encode()).hexdigest(),
           "rewriter": _rewriters_version()}
    try:
        recorded = json.loads(key_file.read_text())
        if ({k: recorded.get(k) for k in key} == key and recorded.get("output")
                == hashlib.sha256(fast.read_bytes()).hexdigest()):
            return
    except (OSError, ValueError):
        pass
    data = source
    for rewrite in (enable_form_verilog, row_write_verilog, memory_process_verilog,
                    signed_product_verilog):
        data = rewrite(data)[0]
    data = data.encode()
    write_if_changed(fast, data)
    write_if_changed(key_file, json.dumps(
        {**key, "output": hashlib.sha256(data).hexdigest()}, sort_keys=True).encode())


def build_harness(config: AcceleratorConfig) -> Path:
    """Generate the accelerator's Verilog for ``config`` and build (or reuse) the harness library.

    The Verilog is regenerated only when its sources changed (:func:`sim.rtl_cache.cached_rtl`),
    the library only when the Verilog, the harness, a build flag or the training program
    changed. The model is Verilated from ``<stem>_fast.v``, the Verilog with its held registers
    in the enable form (:func:`enable_form_verilog`), its byte-lane memory writes as row writes
    (:func:`row_write_verilog`), its memories' write and read ports in one process
    (:func:`memory_process_verilog`) and its signed products 32 or 64 bits wide
    (:func:`signed_product_verilog`), under :func:`sim_top_verilog`'s top level.
    The library is built with GCC profile-guided optimisation (unless ``NMX_PGO=0`` is in the
    environment) trained on :mod:`sim.harness_training`'s GEMM and compiled network (see
    :func:`sim.verilator.build_library`). Returns the path of the shared library,
    ``build/verilator/<stem>_fast_<hash>/lib<...>.so``.
    """
    from sim.harness_training import training_for

    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
    top = TOPS["accelerator"]
    verilog = cached_rtl(config, _VERILOG_DIR, "accelerator")
    source = verilog.read_text()
    wrapper = verilog.with_name(verilog.stem + "_simtop.v")
    fast = verilog.with_name(verilog.stem + "_fast.v")
    write_if_changed(wrapper, sim_top_verilog(source, top).encode())
    _write_fast_verilog(source, fast)
    return build_library(
        sources=[fast, wrapper],
        toplevel=SIM_TOP,
        name=config.artifact_stem(top) + "_fast",
        cpp_sources=HARNESS_SOURCES,
        training=training_for(config, _TRAINING_DIR) if pgo_enabled() else None,
    )


@functools.cache
def _load(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)
    h = ctypes.c_void_p
    u64, u32 = ctypes.c_uint64, ctypes.c_uint32
    sigs = {
        "nmx_create": (h, [u64, u32, u32, u32, ctypes.c_double, u64]),
        "nmx_last_create_error": (ctypes.c_char_p, []),
        "nmx_destroy": (None, [h]),
        "nmx_mem": (ctypes.c_void_p, [h]),
        "nmx_mem_size": (u64, [h]),
        "nmx_reg_read": (ctypes.c_int, [h, u32, ctypes.POINTER(u32)]),
        "nmx_reg_write": (ctypes.c_int, [h, u32, u32, u32]),
        "nmx_run": (ctypes.c_int, [h, u64, ctypes.c_int, u32]),
        "nmx_step": (ctypes.c_int, [h, u64]),
        "nmx_cycles": (u64, [h]),
        "nmx_irq": (ctypes.c_int, [h]),
        "nmx_error": (ctypes.c_char_p, [h]),
        "nmx_axi_stats": (None, [h, ctypes.POINTER(u64 * 6)]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


class VerilatorTransport:
    """:class:`~nmx.runtime.transport.Transport` to a Verilated accelerator in the C++ harness.

    Parameters
    ----------
    config : AcceleratorConfig
        The accelerator to build (cached by content hash) and simulate.
    mem_size : int
        Bytes of DRAM behind the AXI master (address 0 up); bytes at or above it answer SLVERR.
    latency : int or (int, int)
        Read and write latency in cycles (one number for both).
    backpressure : float
        Probability in [0, 1) that the DRAM model pauses a ready or a new R/B beat in a cycle.
    seed : int
        Seed of the backpressure PRNG.
    library : path-like, optional
        A harness library built for ``config`` (by default :func:`build_harness`'s); the
        profile-guided build's training run passes its instrumented library here.

    Attributes
    ----------
    cycles : int
        Clock cycles simulated since reset (register accesses included).
    """

    def __init__(self, config: AcceleratorConfig, *, mem_size: int = 1 << 24,
                 latency: int | tuple[int, int] = 0, backpressure: float = 0.0,
                 seed: int = 1, library: str | Path | None = None):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
        if isinstance(latency, int):
            latency = (latency, latency)
        read_latency, write_latency = (int(x) for x in latency)
        if not (0 <= read_latency < 1 << 20 and 0 <= write_latency < 1 << 20):
            raise ValueError(f"latency must be 0 .. 2**20 - 1 cycles, got {latency}")
        if not 0.0 <= backpressure < 1.0:
            raise ValueError(f"backpressure must be in [0, 1), got {backpressure}")
        if not 0 < mem_size <= 1 << config.addr_bits:
            raise ValueError(f"mem_size {mem_size} must be 1 .. 2**addr_bits = "
                             f"{1 << config.addr_bits}")
        self.config = config
        self.mem_size = int(mem_size)
        self.latency = (read_latency, write_latency)
        self.backpressure = float(backpressure)
        self.seed = int(seed)
        self._lib = _load(str(build_harness(config) if library is None else Path(library)))
        self._h = self._lib.nmx_create(self.mem_size, config.dma_data_bits, read_latency,
                                       write_latency, self.backpressure,
                                       self.seed & (2**64 - 1))
        if not self._h:
            raise HarnessError(self._lib.nmx_last_create_error().decode())
        ptr = self._lib.nmx_mem(self._h)
        self._mem = np.ctypeslib.as_array(
            (ctypes.c_uint8 * self.mem_size).from_address(ptr))

    # ------------------------------------------------------------------ Transport

    def _handle(self):
        if self._h is None:
            raise HarnessError("the VerilatorTransport is closed")
        return self._h

    def _raise_failure(self) -> None:
        msg = self._lib.nmx_error(self._h).decode()
        if msg.startswith("cycle") and "AXI4-Lite" not in msg:
            raise AxiProtocolError(f"AXI protocol violation by the accelerator at {msg}")
        raise HarnessError(msg or "harness failed")

    def read32(self, offset: int) -> int:
        """Read a register word over AXI4-Lite; a SLVERR/DECERR answer raises HarnessError."""
        value = ctypes.c_uint32()
        resp = self._lib.nmx_reg_read(self._handle(), self._offset(offset), ctypes.byref(value))
        if resp < 0:
            self._raise_failure()
        if resp:
            raise HarnessError(f"register read at offset {offset:#x} answered RRESP={resp}")
        return value.value

    def write32(self, offset: int, value: int) -> None:
        """Write a register word over AXI4-Lite (all four byte strobes)."""
        self.write_strobed(offset, value, 0xF)

    def write_strobed(self, offset: int, value: int, strobe: int) -> None:
        """Write the bytes of a register word selected by ``strobe`` (4 bits)."""
        if not 0 <= value < 1 << 32:
            raise ValueError(f"register value {value:#x} does not fit 32 bits")
        resp = self._lib.nmx_reg_write(self._handle(), self._offset(offset), value, strobe & 0xF)
        if resp < 0:
            self._raise_failure()
        if resp:
            raise HarnessError(f"register write at offset {offset:#x} answered BRESP={resp}")

    @staticmethod
    def _offset(offset: int) -> int:
        if not 0 <= offset < 1 << 12 or offset % REGISTER_BYTES:
            raise ValueError(f"register offset {offset:#x} is not a word offset below 0x1000")
        return offset

    def _range(self, address: int, length: int) -> None:
        if length < 0 or address < 0 or address + length > self.mem_size:
            raise ValueError(f"DRAM access {address:#x}+{length} is outside the "
                             f"{self.mem_size}-byte device memory")

    def read_mem(self, address: int, length: int) -> bytes:
        """Bytes of the DRAM model (host backdoor: no simulated cycles)."""
        self._handle()
        self._range(address, length)
        return self._mem[address:address + length].tobytes()

    def write_mem(self, address: int, data: bytes) -> None:
        """Write bytes into the DRAM model (host backdoor: no simulated cycles)."""
        self._handle()
        data = bytes(data)
        self._range(address, len(data))
        self._mem[address:address + len(data)] = np.frombuffer(data, dtype=np.uint8)

    def wait_irq(self, timeout: float) -> bool:
        """Simulate until ``irq`` is high (True) or ``timeout`` wall-clock seconds passed."""
        deadline = time.monotonic() + timeout
        while True:
            if self.run_until_irq(_WAIT_CHUNK):
                return True
            if time.monotonic() >= deadline:
                return False

    def close(self) -> None:
        """Free the simulation (idempotent)."""
        if self._h is not None:
            self._mem = None
            self._lib.nmx_destroy(self._h)
            self._h = None

    def __enter__(self) -> VerilatorTransport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_h", None) is not None:
            self.close()

    # ------------------------------------------------------------------ simulation control

    @property
    def cycles(self) -> int:
        """Clock cycles simulated since reset."""
        return int(self._lib.nmx_cycles(self._handle()))

    @property
    def irq(self) -> bool:
        """The accelerator's ``irq`` output."""
        return bool(self._lib.nmx_irq(self._handle()))

    def step(self, cycles: int) -> None:
        """Simulate ``cycles`` clock cycles."""
        if self._lib.nmx_step(self._handle(), int(cycles)) < 0:
            self._raise_failure()

    def _run(self, max_cycles: int, until: int, poll: int) -> bool:
        if max_cycles < 0:
            raise ValueError(f"max_cycles must be >= 0, got {max_cycles}")
        r = self._lib.nmx_run(self._handle(), int(max_cycles), until, int(poll))
        if r == _RUN_FAILED:
            self._raise_failure()
        return r == _RUN_REACHED

    def run_until_irq(self, max_cycles: int) -> bool:
        """Simulate until ``irq`` is high (True) or ``max_cycles`` cycles passed (False)."""
        return self._run(max_cycles, _UNTIL_IRQ, 1)

    def run_until_idle(self, max_cycles: int, poll: int = 64) -> bool:
        """Simulate until ``STATUS.state`` is not BUSY, read over AXI4-Lite every ``poll``
        cycles (True), or until ``max_cycles`` cycles passed (False)."""
        return self._run(max_cycles, _UNTIL_IDLE, poll)

    def axi_stats(self) -> dict[str, int]:
        """AXI traffic the DRAM model served since reset."""
        out = (ctypes.c_uint64 * 6)()
        self._lib.nmx_axi_stats(self._handle(), ctypes.byref(out))
        names = ("ar_bursts", "r_beats", "aw_bursts", "w_beats", "b_responses",
                 "error_responses")
        return dict(zip(names, (int(x) for x in out), strict=True))


def run_bundle(bundle, inputs, *, transport: VerilatorTransport | None = None,
               latency: int | tuple[int, int] = 0, backpressure: float = 0.0, seed: int = 1,
               timeout: float = 3600.0, irq: bool = True):
    """Run a :class:`compiler.backend.bundle.Bundle` on the Verilated accelerator.

    Uses ``transport`` if given (its memory must hold the bundle), else a new
    :class:`VerilatorTransport` sized to the bundle's image and program with ``latency``,
    ``backpressure`` and ``seed``. Returns ``(DeviceRun, real outputs, integer outputs)``; a
    non-zero status raises :class:`nmx.runtime.device.RunError`.
    """
    from nmx.runtime.device import Device, bundle_layout

    own = transport is None
    if own:
        transport = VerilatorTransport(bundle.config, mem_size=bundle_layout(bundle).mem_needed,
                                       latency=latency, backpressure=backpressure, seed=seed)
    try:
        return Device(transport, bundle.config).run_bundle(bundle, inputs, timeout=timeout,
                                                           irq=irq)
    finally:
        if own:
            transport.close()
