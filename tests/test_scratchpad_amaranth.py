# amaranth: UnusedElaboratable=no
"""Scratchpad and accumulator (hw/scratchpad.py, hw/accumulator.py) in Amaranth's simulator on
tiny (4x4) configs: every client at once, random backpressure, bank conflicts."""

from __future__ import annotations

import random

import pytest

from hw.accumulator import GEMM_READ_LATENCY, Accumulator
from hw.banked_memory import BankedMemory
from hw.config import preset
from hw.scratchpad import Scratchpad
from tests.banked_memory_bench import finishing, run, send

CFG = preset("tiny").replace(scratchpad_rows=16, scratchpad_banks=4, accumulator_rows=16)


def as_list(row):
    return [int(row[i]) for i in range(len(row))]


def test_rejects_bad_config():
    with pytest.raises(TypeError, match="config must be an AcceleratorConfig, got 'tiny'"):
        Scratchpad("tiny")
    with pytest.raises(TypeError, match="config must be an AcceleratorConfig, got 3"):
        Accumulator(3)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_scratchpad_clients_under_backpressure(seed):
    """Two writers fill the rows (EPI with a lane mask), then three readers read them back at
    once, each in its own random order and backpressure: every response is the row's content,
    in request order."""
    rng = random.Random(seed)
    dut = Scratchpad(CFG)
    lanes, rows = CFG.lanes, CFG.scratchpad_rows
    full = (1 << lanes) - 1
    content = {}
    writes_load, writes_epi = [], []
    for r in range(rows):
        data = [rng.randrange(-128, 128) for _ in range(lanes)]
        content[r] = data
        (writes_load if r % 3 else writes_epi).append({"addr": r, "data": data, "mask": full})
    # masked overwrite of lanes 0..1 of rows 0..3 after the first pass
    masked = []
    for r in range(4):
        new = [rng.randrange(-128, 128) for _ in range(2)]
        content[r] = new + content[r][2:]
        masked.append({"addr": r, "data": new + [0] * (lanes - 2), "mask": 0b11})
    reads = {n: [rng.randrange(rows) for _ in range(40)] for n in ("weights", "operands", "store")}
    got = {}

    @finishing
    async def main(ctx):
        await send(ctx, dut.load_write, writes_load, rng, gap=0.3)
        await send(ctx, dut.epi_write, writes_epi + masked, rng, gap=0.3)
        for _ in range(60):  # readers run in the background; wait for them
            if len(got) == 3:
                break
            await ctx.tick().repeat(10)

    def reader(name):
        async def bench(ctx):
            port = getattr(dut, name)
            await ctx.tick().repeat(3 * rows)
            reqs = [{"addr": a} for a in reads[name]]
            sub_rng = random.Random(hash((seed, name)))

            # requests and responses overlap: one loop drives both
            pending, out = list(reqs), []
            ctx.set(port.req.valid, 0)
            while len(out) < len(reqs):
                if pending and sub_rng.random() > 0.2:
                    ctx.set(port.req.payload, pending[0])
                    ctx.set(port.req.valid, 1)
                else:
                    ctx.set(port.req.valid, 0)
                ready = int(sub_rng.random() > 0.3)
                ctx.set(port.resp.ready, ready)
                _, _, rq_v, rq_r, rs_v, rs_p = await ctx.tick().sample(
                    port.req.valid, port.req.ready, port.resp.valid, port.resp.payload)
                if rq_v and rq_r:
                    pending.pop(0)
                if rs_v and ready:
                    out.append(as_list(rs_p.data))
            ctx.set(port.req.valid, 0)
            got[name] = out
        return bench

    run(dut, main, *(reader(n) for n in reads), deadline=3000)
    for name, addrs in reads.items():
        assert got[name] == [content[a] for a in addrs], name


def test_accumulator_gemm_port_forwards_and_streams_share_other_bank():
    """The GEMM port reads a row in the cycle it is written and gets the new value
    GEMM_READ_LATENCY (4) cycles later (the banks' two request stages); EPI reads from the other
    bank proceed every cycle meanwhile, five cycles after the request."""
    rng = random.Random(5)
    dut = Accumulator(CFG)
    cols = CFG.cols
    got = {}

    @finishing
    async def main(ctx):
        rows = {r: [rng.randrange(-2**31, 2**31) for _ in range(cols)] for r in range(16)}
        await send(ctx, dut.load_write, [{"addr": r, "data": v} for r, v in rows.items()], rng)
        g = dut.gemm
        # cycle 0: write row 2 = X and read row 2 in the same cycle -> X (transparent)
        x = [7, -8, 9, -10]
        ctx.set(g.write_en, 1)
        ctx.set(g.write_addr, 2)
        ctx.set(g.write_data, x)
        ctx.set(g.read_en, 1)
        ctx.set(g.read_addr, 2)
        await ctx.tick()
        # cycle 1: read row 3 while writing row 3 = Y: the read of cycle 1 sees Y, and the read
        # data of cycle 0 (row 2 = X) arrives in cycle GEMM_READ_LATENCY
        y = [1, 2, -3, -4]
        ctx.set(g.write_addr, 3)
        ctx.set(g.write_data, y)
        ctx.set(g.read_addr, 3)
        await ctx.tick()
        ctx.set(g.write_en, 0)
        ctx.set(g.read_en, 0)
        await ctx.tick().repeat(GEMM_READ_LATENCY - 2)
        got["fwd"] = as_list(ctx.get(g.read_data))
        await ctx.tick()
        got["plain"] = as_list(ctx.get(g.read_data))
        got["row3"] = y
        # stream reads of bank 1 (rows 8..15) while the GEMM port hammers bank 0
        ctx.set(g.read_en, 1)
        ctx.set(g.write_en, 1)
        ctx.set(g.read_addr, 4)
        ctx.set(g.write_addr, 4)
        ctx.set(g.write_data, x)
        port = dut.epi_read
        ctx.set(port.resp.ready, 1)
        out, cycles = [], 0
        for r in range(8, 16):
            ctx.set(port.req.payload, {"addr": r})
            ctx.set(port.req.valid, 1)
            _, _, rv, rp = await ctx.tick().sample(port.resp.valid, port.resp.payload)
            cycles += 1
            if rv:
                out.append(as_list(rp.data))
        ctx.set(port.req.valid, 0)
        while len(out) < 8:
            _, _, rv, rp = await ctx.tick().sample(port.resp.valid, port.resp.payload)
            cycles += 1
            if rv:
                out.append(as_list(rp.data))
        got["stream"] = out
        got["stream_expected"] = [rows[r] for r in range(8, 16)]
        got["cycles"] = cycles
        ctx.set(g.read_en, 0)
        ctx.set(g.write_en, 0)

    run(dut, main, deadline=500)
    assert got["fwd"] == [7, -8, 9, -10]
    assert got["plain"] == got["row3"]
    assert got["stream"] == got["stream_expected"]
    # one request per cycle, GEMM_READ_LATENCY + 1 cycles of latency (the response queue)
    assert got["cycles"] == 8 + GEMM_READ_LATENCY + 1


def test_request_stages_is_a_validated_read_only_parameter():
    kw = dict(depth=16, data_shape=8, banks=2, read_clients=("r",), write_clients=("w",))
    with pytest.raises(TypeError, match="request_stages must be an int, got True"):
        BankedMemory(**kw, request_stages=True)
    with pytest.raises(TypeError, match="request_stages must be an int, got 1.0"):
        BankedMemory(**kw, request_stages=1.0)
    with pytest.raises(ValueError, match="request_stages = -1: must be >= 0"):
        BankedMemory(**kw, request_stages=-1)
    mems = [BankedMemory(**kw, request_stages=n) for n in (0, 1, 2)]
    assert [(d.request_stages, d.read_latency, d.response_depth) for d in mems] == [
        (0, 2, 4), (1, 3, 5), (2, 4, 6)]
    with pytest.raises(AttributeError):
        mems[1].request_stages = 0
    assert Accumulator(CFG)._mem.read_latency == GEMM_READ_LATENCY == 4


@pytest.mark.parametrize("request_stages", [0, 1, 2])
def test_a_read_sees_every_write_granted_up_to_its_own_grant(request_stages):
    """In cycle ``g`` the exclusive port writes row 5 (bank 0) and stream ``w`` row 13 (bank
    1); the exclusive port reads row 5 and stream ``r`` row 13 in ``g - 1``, ``g`` and
    ``g + 1``: the first read returns the old row, the others the new one, with 0, 1 and 2
    request stages (reads and writes delayed alike)."""
    dut = BankedMemory(depth=16, data_shape=8, banks=2, read_clients=("r",),
                       write_clients=("w",), exclusive="x", request_stages=request_stages)
    lat = dut.read_latency
    got = {"x": [], "r": [], "r_granted": []}

    def write(ctx, en, v):
        ctx.set(dut.x.write_en, en)
        ctx.set(dut.x.write_addr, 5)
        ctx.set(dut.x.write_data, v)
        ctx.set(dut.w.valid, en)
        ctx.set(dut.w.payload, {"addr": 13, "data": v + 1})

    @finishing
    async def main(ctx):
        ctx.set(dut.r.resp.ready, 1)
        write(ctx, 1, 10)  # the old rows: 10 and 11
        await ctx.tick()
        write(ctx, 0, 0)
        await ctx.tick().repeat(2)
        ctx.set(dut.x.read_addr, 5)
        ctx.set(dut.r.req.payload, {"addr": 13})
        for k in range(3):  # cycles g - 1, g, g + 1
            ctx.set(dut.x.read_en, 1)
            ctx.set(dut.r.req.valid, 1)
            write(ctx, int(k == 1), 20)  # the new rows: 20 and 21
            _, _, ready = await ctx.tick().sample(dut.r.req.ready)
            got["r_granted"].append(ready)
        ctx.set(dut.x.read_en, 0)
        ctx.set(dut.r.req.valid, 0)
        write(ctx, 0, 0)
        await ctx.tick().repeat(12)

    async def sampler(ctx):
        en = []
        async for _, _, x_en, x_data, r_valid, r_data in ctx.tick().sample(
                dut.x.read_en, dut.x.read_data, dut.r.resp.valid, dut.r.resp.payload):
            en.append(x_en)
            if len(en) > lat and en[-1 - lat]:
                got["x"].append(int(x_data))
            if r_valid:
                got["r"].append(int(r_data.data))

    run(dut, main, sampler, deadline=200)
    assert got["r_granted"] == [1, 1, 1]
    assert got["x"] == [10, 20, 20], got
    assert got["r"] == [11, 21, 21], got


@pytest.mark.parametrize("seed", [1, 2])
def test_accumulator_writers_contending_for_a_bank_write_whole_rows(seed):
    """The GEMM port, the EPI and the load unit write the same two banks at random (each its
    own rows, each row several times): every element of every row ends as its writer's last
    write, through the two request stages (an element that took another grant than its row's
    would show as a row mixing two writers' data)."""
    rng = random.Random(seed)
    dut = Accumulator(CFG)
    cols = CFG.cols
    owner = {"epi_write": (0, 1, 2, 8, 9, 10), "load_write": (3, 4, 5, 11, 12, 13),
             "gemm": (6, 7, 14, 15)}
    expected, done, got = {}, set(), {}

    def row_value():
        return [rng.randrange(-2**31, 2**31) for _ in range(cols)]

    def sender(name):
        writes = [(r, row_value()) for r in rng.choices(owner[name], k=40)]
        for r, v in writes:
            expected[r] = v

        async def bench(ctx):
            await send(ctx, getattr(dut, name), [{"addr": r, "data": v} for r, v in writes],
                       rng, gap=0.3)
            done.add(name)
        return bench

    @finishing
    async def main(ctx):
        g = dut.gemm
        while len(done) < 2:
            en = rng.random() < 0.5
            r, v = rng.choice(owner["gemm"]), row_value()
            if en:
                expected[r] = v
            ctx.set(g.write_en, en)
            ctx.set(g.write_addr, r)
            ctx.set(g.write_data, v)
            await ctx.tick()
        ctx.set(g.write_en, 0)
        port = dut.store
        ctx.set(port.resp.ready, 1)
        for r in sorted(expected):
            ctx.set(port.req.payload, {"addr": r})
            ctx.set(port.req.valid, 1)
            await ctx.tick().until(port.req.ready)
            ctx.set(port.req.valid, 0)
            while True:
                _, _, rv, rp = await ctx.tick().sample(port.resp.valid, port.resp.payload)
                if rv:
                    got[r] = as_list(rp.data)
                    break

    run(dut, main, sender("epi_write"), sender("load_write"), deadline=2000)
    assert len(expected) == 16
    assert got == expected
