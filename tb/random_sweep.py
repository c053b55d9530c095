"""Long sweeps of tb/random_programs.py's cases on the fast C++ harness (sim/rtl_harness.py).

    python -m tb.random_sweep --config tiny --seed 2 --count 10000

Each case runs on one of three harness instances that differ in their bus (no pauses and no
latency; read/write latency 20 with 30 % pauses on every channel; latency 3 with 60 % pauses),
chosen by the case index; the status, word offset and DRAM image (byte for byte, 256 guard bytes
after the image included) must equal the golden model's. Cases that inject AXI error responses
at chosen bytes need the cocotb testbench (the harness's DRAM answers SLVERR only at and above
its size): they are counted as skipped here and run in ``make test`` / ``make test-slow`` under
cocotb. A mismatch raises with the command that replays the case under cocotb.
"""

from __future__ import annotations

import argparse
import time

from hw.config import preset
from hw.isa import WORD_BYTES
from hw.registers import RunState, by_name, decode_fields
from sim.golden import StatusCode

#: (read/write latency, pause probability) of the three harness instances.
BUSES = ((0, 0.0), (20, 0.3), (3, 0.6))


class _Machine:
    """One harness instance and the register accesses a host makes."""

    def __init__(self, config, latency: int, backpressure: float, seed: int):
        from sim.rtl_harness import VerilatorTransport

        self.t = VerilatorTransport(config, mem_size=1 << 20, latency=latency,
                                    backpressure=backpressure, seed=seed)
        self.bus = f"harness latency {latency}, pauses {backpressure}"

    def write(self, name: str, value: int) -> None:
        reg = by_name(name)
        for w in range(reg.words):
            self.t.write32(reg.offset + 4 * w, (value >> (32 * w)) & 0xFFFFFFFF)

    def read(self, name: str) -> int:
        reg = by_name(name)
        return sum(self.t.read32(reg.offset + 4 * w) << (32 * w) for w in range(reg.words))

    def run(self, case, max_cycles: int) -> tuple[int, int]:
        words = b"".join(w.to_bytes(WORD_BYTES, "little") for w in case.words)
        self.t.write_mem(case.prog_addr, words)
        self.write("PROG_ADDR", case.prog_addr)
        self.write("PROG_LEN", case.prog_len)
        self.write("DRAM_LIMIT", case.dram_limit)
        self.write("CTRL", 1 << by_name("CTRL").field("start").lsb)
        if not self.t.run_until_idle(max_cycles):
            raise AssertionError(f"watchdog: still BUSY after {max_cycles} cycles")
        status = decode_fields("STATUS", self.read("STATUS"))
        assert status["state"] == RunState.DONE, status
        return int(status["code"]), self.read("STATUS_OFFSET")


def sweep(name: str, seed: int, first: int, count: int, *, progress: bool = False) -> dict:
    """Run cases ``first .. first + count - 1``; returns counts by status and skipped cases."""
    from tb.random_programs import make_case

    config = preset(name)
    machines = [_Machine(config, lat, bp, seed * 10 + i) for i, (lat, bp) in enumerate(BUSES)]
    codes: dict[str, int] = {}
    skipped = 0
    t0 = time.perf_counter()
    cycles = 0
    for index in range(first, first + count):
        case = make_case(config, name, seed, index)
        if case.faults:
            skipped += 1
            continue
        mach = machines[index % len(machines)]
        where = f"{name}:{seed}:{index} ({case.kind}; {mach.bus})"
        guard = bytes((index * 7 + i) & 0xFF for i in range(256))
        mach.t.write_mem(0, case.image + guard)
        before = mach.t.cycles
        try:
            got = mach.run(case, 200_000 + 1000 * len(case.words))
        except AssertionError as e:
            raise AssertionError(f"{where}: {e}\nreplay: {case.replay()}") from None
        cycles += mach.t.cycles - before
        assert got == case.expect, (
            f"{where}: RTL ended {StatusCode(got[0]).name} at {got[1]}, golden "
            f"{StatusCode(case.expect[0]).name} at {case.expect[1]}\nreplay: {case.replay()}")
        final = mach.t.read_mem(0, len(case.image) + len(guard))
        expect = case.expect_dram + guard
        if final != expect:
            diff = [a for a in range(len(expect)) if final[a] != expect[a]]
            raise AssertionError(f"{where}: {len(diff)} DRAM bytes differ, first at "
                                 f"{diff[0]:#x}\nreplay: {case.replay()}")
        key = StatusCode(got[0]).name
        codes[key] = codes.get(key, 0) + 1
        if progress and (index - first) % 500 == 499:
            print(f"{index - first + 1} cases, {time.perf_counter() - t0:.0f} s, {codes}",
                  flush=True)
    for m in machines:
        m.t.close()
    return {"codes": codes, "skipped_faults": skipped, "cycles": cycles,
            "seconds": time.perf_counter() - t0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tb.random_sweep",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="tiny")
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--count", type=int, default=10_000)
    a = p.parse_args(argv)
    s = sweep(a.config, a.seed, a.first, a.count, progress=True)
    print(f"{a.config} seed {a.seed} cases [{a.first}, {a.first + a.count}): "
          f"{sum(s['codes'].values())} run, 0 mismatches, by status {s['codes']}; "
          f"{s['skipped_faults']} with injected AXI errors left to cocotb; "
          f"{s['cycles']} cycles in {s['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
