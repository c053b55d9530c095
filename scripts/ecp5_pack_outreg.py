"""Move the flip-flops that register a block RAM's read data into the DP16KD's output register.

Yosys's ECP5 memory mapping always leaves a DP16KD's output register off (``REGMODE_x =
"NOREG"``), so the block RAM's clock-to-output (about 6 ns at speed 6: the read latch) plus the
route to the fabric flip-flop that registers the read data bounds Fmax near 100 MHz wherever a
memory is read. Where the RTL already registers the read data with nothing in between, that
register *is* an output register in the fabric; this pass moves it into the block RAM
(``REGMODE_x = "OUTREG"``), which changes no cycle of behaviour: the output register loads the
read latch on every clock edge, exactly as the fabric flip-flop did.

A port is rewritten only when every read-data bit that has a load drives exactly one
``TRELLIS_FF`` and nothing else, and all those flip-flops are plain registers: clocked by the
port's clock, not inverted, no clock enable (``CEMUX = "1"``), no set/reset (no ``LSR``). The
RTL marks such registers ``reset_less`` (the memory read wrappers in ``hw/``). The port's
``OCE`` is then tied to 1 and its read-data nets take over the flip-flops' outputs.

Then one more rewrite, also exact: a flip-flop whose output reaches the input pins (address,
data, enables) of several DP16KDs is split into one copy per DP16KD (same clock, data, enable
and reset; each copy drives one RAM's pins, the original keeps every other load). The block RAMs
sit in a few rows across the die, so a single flip-flop feeding many of them (a memory's write
data, a bank's address) reaches the far ones over 10 ns and more of routing; each copy can be
placed near its RAM, and its own input has the whole cycle to arrive.

Used by ``scripts/synth_ecp5.py`` between Yosys and nextpnr (on the JSON netlist); also runnable
alone::

    .venv/bin/python scripts/ecp5_pack_outreg.py synth.json packed.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

__all__ = ["pack_output_registers"]

_DO = re.compile(r"DO([AB])(\d+)$")


def _plain(cell: dict) -> bool:
    """A TRELLIS_FF with no clock enable, no set/reset and a non-inverted clock."""
    p = {k: str(v).strip() for k, v in cell["parameters"].items()}
    c = cell["connections"]
    if p.get("CLKMUX", "CLK") != "CLK":
        return False
    if p.get("CEMUX", "1") != "1" and c.get("CE", ["1"]) != ["1"]:
        return False
    return c.get("LSR", ["0"]) in (["0"], []) or p.get("LSRMUX") == "0"


def _param_int(value) -> int:
    """An integer cell parameter of Yosys's JSON (a binary digit string, or a number)."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text, 2) if text and set(text) <= {"0", "1"} else int(text or 0)


def _read_ports(cell: dict) -> list[tuple[tuple[str, ...], str, list[tuple[str, int]]]]:
    """A DP16KD's read ports: (sides whose REGMODE/OCE they use, clock pin, [(pin, net bit)]).

    In the 36-bit pseudo-dual-port mode (``DATA_WIDTH_B = 36``, Yosys's ``$__PDPW16KD_``) the
    read data leaves on DOA0..17 and DOB0..17, clocked by CLKB: one port, both REGMODEs.
    """
    by_side: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for pin, bits in cell["connections"].items():
        mo = _DO.match(pin)
        if mo and bits and isinstance(bits[0], int):
            by_side[mo.group(1)].append((pin, bits[0]))
    if _param_int(cell["parameters"].get("DATA_WIDTH_B", "0")) == 36:
        return [(("A", "B"), "CLKB", by_side["A"] + by_side["B"])]
    return [((side,), f"CLK{side}", outs) for side, outs in sorted(by_side.items())]


class _Module:
    """Drivers and sinks of one module's nets (Yosys JSON bit ids), and net creation."""

    def __init__(self, module: dict) -> None:
        self.module = module
        self.cells = module.get("cells", {})
        self.sinks: dict[int, list[tuple[str, str]]] = defaultdict(list)
        top = 1
        for name, cell in self.cells.items():
            dirs = cell.get("port_directions", {})
            for port, bits in cell["connections"].items():
                for b in bits:
                    if isinstance(b, int):
                        top = max(top, b)
                        if dirs.get(port) == "input":
                            self.sinks[b].append((name, port))
        self.outputs = set()
        for p in module.get("ports", {}).values():
            for b in p["bits"]:
                if isinstance(b, int):
                    top = max(top, b)
                    if p["direction"] == "output":
                        self.outputs.add(b)
        for net in module.get("netnames", {}).values():
            top = max([top, *[b for b in net["bits"] if isinstance(b, int)]])
        self._next = top + 1

    def only_sink(self, bit: int):
        """The one (cell, port) reading ``bit``, or None (none, several, or a module output)."""
        s = self.sinks.get(bit, [])
        return s[0] if len(s) == 1 and bit not in self.outputs else None

    def new_net(self, name: str) -> int:
        bit = self._next
        self._next += 1
        self.module.setdefault("netnames", {})[name] = {"bits": [bit], "hide_name": 1,
                                                         "attributes": {}}
        return bit


def _plan_bit(mod: _Module, bit: int, clk, removed: set[str]):
    """How read-data bit ``bit`` can take the RAM's output register, or None.

    ``("ff", ff)``: it drives one plain flip-flop, which the output register replaces.
    ``("lut", lut, ff)``: it drives one LUT4 whose output drives one plain flip-flop (Yosys's
    read-during-write bypass multiplexer): the flip-flop moves back across the LUT, into the
    output register for this input and into new flip-flops for the LUT's other inputs.
    """
    sink = mod.only_sink(bit)
    if sink is None:
        return None
    name, port = sink
    cell = mod.cells[name]

    def plain_ff(ff_name, ff_port):
        ff = mod.cells[ff_name]
        return (ff["type"] == "TRELLIS_FF" and ff_port == "DI" and ff_name not in removed
                and ff["connections"].get("CLK") == clk and _plain(ff))

    if plain_ff(name, port):
        return ("ff", name)
    if cell["type"] == "LUT4" and name not in removed:
        z = cell["connections"]["Z"][0]
        after = mod.only_sink(z)
        inputs = [cell["connections"].get(p, ["0"])[0] for p in "ABCD"]
        if after is not None and plain_ff(*after) and inputs.count(bit) == 1:
            return ("lut", name, after[0])
    return None


def pack_output_registers(netlist: dict) -> dict[str, int]:
    """Rewrite ``netlist`` (Yosys JSON, flattened) in place; return counts of what moved.

    Returns
    -------
    dict
        ``ports``: DP16KD read ports switched to ``OUTREG``; ``flip_flops``: fabric flip-flops
        removed; ``retimed_luts``: bypass LUTs the register moved across (each gets new
        flip-flops on its other inputs, one per net and block RAM); ``ports_left``: DP16KD
        read ports (with loads) left unregistered; ``split_flip_flops``: flip-flops that drove
        the input pins of several DP16KDs, ``replicated_flip_flops``: flip-flops added by
        splitting them (one copy per DP16KD, less each original that no other load kept).
    """
    counts = {"ports": 0, "flip_flops": 0, "retimed_luts": 0, "added_flip_flops": 0,
              "ports_left": 0, "split_flip_flops": 0, "replicated_flip_flops": 0}
    for module in netlist["modules"].values():
        mod = _Module(module)
        cells = mod.cells
        removed: set[str] = set()
        # (clock, net, DP16KD) -> that net one cycle later, one copy per block RAM: a net such
        # as a bank's collision select reaches the bypass LUTs of every block RAM of the bank,
        # and one shared flip-flop had to route to all of them (20.5 ns on the `ecp5` design)
        delayed: dict[tuple[object, int, str], int] = {}
        for ram_name, cell in list(cells.items()):
            if cell["type"] != "DP16KD":
                continue
            conns = cell["connections"]
            for sides, clk_pin, outs in _read_ports(cell):
                loaded = [(pin, bit) for pin, bit in outs if mod.sinks.get(bit)]
                if not loaded or any(
                    str(cell["parameters"].get(f"REGMODE_{s}", "NOREG")).strip() != "NOREG"
                    for s in sides
                ):
                    continue
                clk = conns.get(clk_pin)
                plans = [_plan_bit(mod, bit, clk, removed) for _pin, bit in loaded]
                ffs = [plan[-1] for plan in plans if plan]
                if None in plans or len(set(ffs)) != len(ffs):
                    counts["ports_left"] += 1
                    continue
                for (pin, bit), plan in zip(loaded, plans, strict=True):
                    ff = cells[plan[-1]]
                    q = ff["connections"]["Q"]
                    if plan[0] == "ff":
                        conns[pin] = list(q)
                    else:
                        lut = cells[plan[1]]
                        for p in "ABC" + "D":
                            src = lut["connections"].get(p, ["0"])[0]
                            if src == bit or not isinstance(src, int):
                                continue
                            key = (tuple(clk), src, ram_name)
                            if key not in delayed:
                                name = f"$outreg_retime${src}${ram_name}"
                                d = mod.new_net(name)
                                new_ff = json.loads(json.dumps(ff))
                                new_ff["connections"]["DI"] = [src]
                                new_ff["connections"]["Q"] = [d]
                                cells[name] = new_ff
                                delayed[key] = d
                                counts["added_flip_flops"] += 1
                            lut["connections"][p] = [delayed[key]]
                        lut["connections"]["Z"] = list(q)
                        counts["retimed_luts"] += 1
                    removed.add(plan[-1])
                for side in sides:
                    cell["parameters"][f"REGMODE_{side}"] = "OUTREG"
                    conns[f"OCE{side}"] = ["1"]
                counts["ports"] += 1
                counts["flip_flops"] += len(ffs)
        for ff_name in removed:
            del cells[ff_name]
        _replicate_ram_inputs(_Module(module), counts)
    return counts


def _replicate_ram_inputs(mod: _Module, counts: dict[str, int]) -> None:
    """One copy of a flip-flop per DP16KD whose input pins it drives, when it drives several."""
    cells = mod.cells
    drivers: dict[int, str] = {}
    for name, cell in cells.items():
        if cell["type"] == "TRELLIS_FF":
            q = cell["connections"].get("Q", [None])[0]
            if isinstance(q, int):
                drivers[q] = name
    for net, ff_name in list(drivers.items()):
        by_ram: dict[str, list[str]] = defaultdict(list)
        others = net in mod.outputs
        for cell_name, port in mod.sinks.get(net, []):
            if cell_name not in cells:  # an original removed below (its copies read `net`)
                others = True
            elif cells[cell_name]["type"] == "DP16KD" and not port.startswith("CLK"):
                by_ram[cell_name].append(port)
            else:
                others = True
        if len(by_ram) < 2:
            continue
        ff = cells[ff_name]
        for ram_name, ports in sorted(by_ram.items()):
            name = f"$ram_input_copy${net}${ram_name}"
            copy_q = mod.new_net(name)
            copy = json.loads(json.dumps(ff))
            copy["connections"]["Q"] = [copy_q]
            cells[name] = copy
            ram = cells[ram_name]
            for port in ports:
                ram["connections"][port] = [copy_q if b == net else b
                                            for b in ram["connections"][port]]
            counts["replicated_flip_flops"] += 1
        counts["split_flip_flops"] += 1
        if not others:
            # nothing else reads the original: the copies replace it
            del cells[ff_name]
            counts["replicated_flip_flops"] -= 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("netlist", type=Path, help="Yosys JSON netlist (synth_ecp5 -json)")
    parser.add_argument("out", type=Path, help="rewritten netlist")
    args = parser.parse_args(argv)
    netlist = json.loads(args.netlist.read_text())
    counts = pack_output_registers(netlist)
    args.out.write_text(json.dumps(netlist))
    print(f"{counts['ports']} DP16KD read ports -> OUTREG ({counts['flip_flops']} flip-flops "
          f"absorbed, {counts['retimed_luts']} bypass LUTs retimed with "
          f"{counts['added_flip_flops']} new flip-flops); {counts['ports_left']} read ports left "
          f"unregistered; {counts['split_flip_flops']} flip-flops feeding several DP16KDs split "
          f"(+{counts['replicated_flip_flops']} flip-flops)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
