"""AXI4 burst engines: a read engine and a write engine, both byte-granular.

:class:`ByteRealigner` moves a run of ``nbytes`` bytes that starts at byte ``src_off`` of its
first input beat so that it starts at byte ``dst_off`` of its first output beat, zeroing the
bytes outside the run and giving their byte strobes. Both engines use it:

:class:`AxiReadEngine` turns requests ``(addr, nbytes, dst_off)`` into INCR bursts (beat-aligned
addresses, at most 256 beats, never across a 4 KiB boundary; several bursts outstanding) and
returns each request's bytes as a stream of beats, DRAM byte ``addr`` at byte ``dst_off`` of the
first beat. :class:`AxiWriteEngine` takes requests ``(addr, nbytes)`` and their bytes as beats
(byte 0 of the run in byte 0 of the first beat), writes them in bursts with ``WSTRB`` set for
exactly the run's bytes, and counts write responses.

An error response (``xRESP`` SLVERR or DECERR) is reported, never hidden: the read engine flags
the data of the request it belongs to, the write engine strobes ``error`` per bad B response.
Both engines always complete the transactions they issued (drain), whatever happens downstream.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hw.axi import (
    AXI_MAX_BURST_BEATS,
    AXI_PAGE_BYTES,
    axi4_read_signature,
    axi4_write_signature,
    const_fields,
)
from hw.target import kept_flip_flop

__all__ = ["AxiReadEngine", "AxiWriteEngine", "ByteRealigner", "StreamRing", "StreamSkid"]


def _check_int(name: str, value, lo: int, hi: int, pow2: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    if pow2 and value & (value - 1):
        raise ValueError(f"{name} must be a power of two, got {value!r}")


def _log2(v: int) -> int:
    return v.bit_length() - 1


class ByteRealigner(wiring.Component):
    """Shift a byte run from one beat alignment to another, one output beat per cycle.

    Ports
    -----
    cmd : In(stream {src_off, dst_off, nbytes})
        One transfer: ``nbytes >= 1`` bytes starting at byte ``src_off`` of the first input
        beat, to start at byte ``dst_off`` of the first output beat. Accepted while idle or on
        the cycle the previous transfer's last beat leaves.
    i : In(stream {data, error})
        ``ceil((src_off + nbytes) / B)`` input beats per transfer (``B`` = beat bytes).
    o : Out(stream {data, strb, last, error})
        ``ceil((dst_off + nbytes) / B)`` output beats per transfer; bytes outside the run are 0
        and their ``strb`` bits 0; ``last`` marks a transfer's last beat; ``error`` is the OR of
        the ``error`` of the transfer's input beats consumed so far (so the last beat holds the
        transfer's whole verdict).
    active : Out(1)
        A transfer is in progress.
    """

    def __init__(self, beat_bytes: int, count_bits: int) -> None:
        _check_int("beat_bytes", beat_bytes, 1, 128, pow2=True)
        _check_int("count_bits", count_bits, 1, 48)
        self._beat_bytes = beat_bytes
        self._count_bits = count_bits
        off = max(1, _log2(beat_bytes))
        super().__init__(
            {
                "cmd": In(
                    stream.Signature(
                        data.StructLayout({"src_off": off, "dst_off": off, "nbytes": count_bits})
                    )
                ),
                "i": In(stream.Signature(data.StructLayout({"data": 8 * beat_bytes, "error": 1}))),
                "o": Out(
                    stream.Signature(
                        data.StructLayout(
                            {"data": 8 * beat_bytes, "strb": beat_bytes, "last": 1, "error": 1}
                        )
                    )
                ),
                "active": Out(1),
            }
        )

    @property
    def beat_bytes(self) -> int:
        """Bytes per beat."""
        return self._beat_bytes

    def elaborate(self, platform):
        m = Module()
        bw = self._beat_bytes
        lb = _log2(bw)
        cb = self._count_bits + 1

        active = Signal()
        in_left = Signal(cb)
        out_left = Signal(cb)
        have = Signal()
        first = Signal()
        sh = Signal(max(1, lb))
        # The strobe's two bounds as masks registered with the command (the first beat's bytes
        # from `dst_off` on, the last beat's bytes up to the run's end), so the strobe and the
        # data mask are one LUT from flip-flops, not a shift and a decrement.
        lo_mask = Signal(bw)
        hi_mask = Signal(bw)
        prev = Signal(8 * bw)
        err = Signal()
        direct = Signal()  # src_off == dst_off: output beat k is input beat k
        in_more = Signal()  # in_left != 0, registered
        out_last = Signal()  # out_left == 1, registered

        m.d.comb += self.active.eq(active)

        fill = active & ~have & in_more
        flush = active & ~in_more
        cur = Mux(flush, 0, self.i.payload.data)
        shifted = Signal(8 * bw)
        m.d.comb += shifted.eq(Mux(direct, cur, Cat(prev, cur).bit_select(sh * 8, 8 * bw)))

        ones = Const((1 << bw) - 1, bw)
        strb = Signal(bw)
        m.d.comb += strb.eq(Mux(first, lo_mask, ones) & Mux(out_last, hi_mask, ones))
        masked = Signal(8 * bw)
        m.d.comb += masked.eq(shifted & Cat(*[strb[j].replicate(8) for j in range(bw)]))

        o_valid = Signal()
        with m.If(fill):
            m.d.comb += self.i.ready.eq(1)
        with m.Elif(active & in_more):
            m.d.comb += [o_valid.eq(self.i.valid), self.i.ready.eq(self.o.ready)]
        with m.Elif(active):
            m.d.comb += o_valid.eq(1)
        # The beat being shifted out includes the current input beat (not ready-dependent).
        consume_err = active & have & in_more & self.i.payload.error
        m.d.comb += [
            self.o.valid.eq(o_valid),
            self.o.payload.data.eq(masked),
            self.o.payload.strb.eq(strb),
            self.o.payload.last.eq(out_last),
            self.o.payload.error.eq(err | consume_err),
        ]

        i_fire = self.i.valid & self.i.ready
        o_fire = self.o.valid & self.o.ready
        with m.If(i_fire):
            m.d.sync += [
                prev.eq(self.i.payload.data),
                in_left.eq(in_left - 1),
                in_more.eq(in_left != 1),
                have.eq(1),
            ]
            m.d.sync += err.eq(err | self.i.payload.error)
        with m.If(o_fire):
            m.d.sync += [out_left.eq(out_left - 1), out_last.eq(out_left == 2), first.eq(0)]
            with m.If(out_last):
                m.d.sync += active.eq(0)

        done_now = o_fire & out_last
        m.d.comb += self.cmd.ready.eq(~active | done_now)
        with m.If(self.cmd.valid & self.cmd.ready):
            c = self.cmd.payload
            so = c.src_off if lb else Const(0, 1)
            do = c.dst_off if lb else Const(0, 1)
            # the last output beat's last byte: (dst_off + nbytes - 1) mod B
            end = (do + c.nbytes[:lb] - 1)[:lb] if lb else Const(0, 1)
            m.d.sync += [
                active.eq(1),
                in_left.eq((so + c.nbytes + bw - 1) >> lb),
                in_more.eq(1),  # nbytes >= 1
                out_left.eq((do + c.nbytes + bw - 1) >> lb),
                out_last.eq(do + c.nbytes <= bw),
                # (equal offsets need no beat ahead: one output beat a cycle from the first)
                have.eq(so <= do),
                direct.eq(so == do),
                first.eq(1),
                sh.eq((so - do)[: max(1, lb)] if lb else 0),
                lo_mask.eq((ones << do)[:bw]),
                hi_mask.eq(Cat(Const(1, 1), *[j <= end for j in range(1, bw)])),
                prev.eq(0),
                err.eq(0),
            ]
        return m


class StreamSkid(wiring.Component):
    """A two-entry register slice: ``i.ready`` and ``o.valid`` / ``o.payload`` come from
    registers, so no combinational path crosses it; one beat per cycle, order kept.

    Parameters
    ----------
    shape : shape-like
        The payload shape.
    """

    def __init__(self, shape) -> None:
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        # (no reset on the entries: a reset empties the slice through the valid flags; the
        # entries' fan-out stays off the reset net)
        main_valid = Signal()
        main = Signal.like(self.o.payload.as_value(), reset_less=True)
        spare_valid = Signal()
        spare = Signal.like(self.o.payload.as_value(), reset_less=True)
        m.d.comb += [
            self.i.ready.eq(~spare_valid),
            self.o.valid.eq(main_valid),
            self.o.payload.eq(main),
        ]
        pop = main_valid & self.o.ready
        push = self.i.valid & ~spare_valid
        # The payload registers' enables and selects avoid `o.ready` where they can (it is
        # often deep logic with these registers as its widest load): `spare` takes the input
        # in every cycle it is free, and `main` loads (from `spare` if it holds a beat, else
        # from the input) whenever it is empty or popped; the valid flags decide what counts.
        with m.If(~spare_valid):
            m.d.sync += spare.eq(self.i.payload)
        with m.If(~main_valid | self.o.ready):
            m.d.sync += main.eq(Mux(spare_valid, spare, self.i.payload))
        with m.If(pop):
            with m.If(spare_valid):
                m.d.sync += spare_valid.eq(0)
            with m.Else():
                m.d.sync += main_valid.eq(0)
        with m.If(push):
            with m.If(~main_valid | (pop & ~spare_valid)):
                m.d.sync += main_valid.eq(1)
            with m.Else():
                m.d.sync += spare_valid.eq(1)
        return m


class StreamRing(wiring.Component):
    """A two-entry queue whose pop moves only a read pointer.

    Like :class:`StreamSkid`, ``i.ready`` and ``o.valid`` come from flip-flops and one beat per
    cycle passes in order; unlike it, the entry under the write pointer takes ``i.payload`` in
    every cycle it is free (its enable is the write pointer and the fill level, never
    ``i.valid`` or ``o.ready``) and ``o.payload`` is a two-way multiplexer selected by the read
    pointer. A producer's valid or a consumer's pop that is deep logic therefore drives only
    the pointers and the fill level, not the enables of two wide payload registers; the price
    is one LUT on ``o.payload``.

    Parameters
    ----------
    shape : shape-like
        The payload shape.
    rp_copies : int
        Copies of the read pointer, each selecting one slice of ``o.payload`` (1: the pointer
        itself). For a wide payload whose multiplexer is a critical path through the pointer's
        fan-out: the copies are flip-flops synthesis keeps apart
        (:func:`hw.target.kept_flip_flop`), loaded with the pointer's next value and without
        reset, so after a reset ``o.payload`` may show the other entry for the one cycle in
        which ``o.valid`` is low; the queue's cycles and its valid payloads are those of one
        pointer.
    """

    def __init__(self, shape, rp_copies: int = 1) -> None:
        if isinstance(rp_copies, bool) or not isinstance(rp_copies, int):
            raise TypeError(f"rp_copies must be an int, got {rp_copies!r}")
        if rp_copies < 1:
            raise ValueError(f"rp_copies = {rp_copies}: must be at least 1")
        self._rp_copies = rp_copies
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    @property
    def rp_copies(self) -> int:
        """Copies of the read pointer selecting slices of ``o.payload``."""
        return self._rp_copies

    def elaborate(self, platform):
        m = Module()
        # (no reset: a reset empties the queue through `count`; the entries' fan-out stays off
        # the reset net)
        entry = [Signal.like(self.o.payload.as_value(), name=f"entry{k}", reset_less=True)
                 for k in range(2)]
        wp = Signal()
        rp = Signal()
        count = Signal(2)  # 0, 1 or 2: count[1] is "full"
        push = self.i.valid & ~count[1]
        pop = self.o.valid & self.o.ready
        m.d.comb += [
            self.i.ready.eq(~count[1]),
            self.o.valid.eq(count != 0),
        ]
        if self._rp_copies == 1:
            m.d.comb += self.o.payload.eq(Mux(rp, entry[1], entry[0]))
        else:
            # Copy k equals `rp` in every cycle after one without a reset (it is loaded with
            # `rp`'s next value but ignores the reset), so in every cycle with `count != 0`.
            width = len(entry[0])
            step = -(-width // self._rp_copies)
            out = self.o.payload.as_value()
            for k, lo in enumerate(range(0, width, step)):
                hi = min(width, lo + step)
                rp_k = kept_flip_flop(m, rp ^ pop, platform, name=f"rp_c{k}")
                m.d.comb += out[lo:hi].eq(Mux(rp_k, entry[1][lo:hi], entry[0][lo:hi]))
        with m.If(push):
            m.d.sync += wp.eq(~wp)
        # The free entry under the write pointer takes the payload whether or not it is
        # valid (nothing reads a free entry): its enable is two flip-flops.
        for k in range(2):
            with m.If((wp == k) & ~count[1]):
                m.d.sync += entry[k].eq(self.i.payload)
        with m.If(pop):
            m.d.sync += rp.eq(~rp)
        m.d.sync += count.eq(count + push - pop)
        return m


class _BurstSplitter(wiring.Component):
    """Split ``(aligned addr, beats)`` into AXI bursts: ``burst`` carries ``(addr, len - 1)``.

    A run is taken into a plan register (``start.ready`` is high while it is empty or moving
    on), where its first burst is sized; it moves on when the previous run's last burst
    leaves, so runs of one burst issue one a cycle. Every later burst of a run is sized in the
    cycle after its predecessor leaves (one idle cycle on ``burst``): each cycle's logic is one
    small compare deep (256-beat and 4 KiB rules), none of it on ``start.ready``.
    """

    def __init__(self, addr_bits: int, beat_bytes: int, count_bits: int) -> None:
        self._addr_bits = addr_bits
        self._beat_bytes = beat_bytes
        self._count_bits = count_bits
        super().__init__(
            {
                "start": In(
                    stream.Signature(data.StructLayout({"addr": addr_bits, "beats": count_bits}))
                ),
                "burst": Out(stream.Signature(data.StructLayout({"addr": addr_bits, "len": 8}))),
                "busy": Out(1),
                "planned": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        lb = _log2(self._beat_bytes)
        page = AXI_PAGE_BYTES // self._beat_bytes  # beats of a 4 KiB page
        cap = AXI_MAX_BURST_BEATS
        pb = page.bit_length()

        def limit(page_left):
            # beats the next burst may have at most: to the page end, at most 256
            return page_left if page <= cap else Mux(page_left <= cap, page_left, cap)

        def fits(beats, lim):
            # beats <= lim with lim <= 256: a narrow compare and a zero test
            return (beats[9:] == 0) & (beats[:9] <= lim) if len(beats) > 9 else beats <= lim

        # plan register: the next run, its first burst sized from registers only
        p_valid = Signal()
        p_addr = Signal(self._addr_bits)
        p_beats = Signal(self._count_bits)
        p_page = Signal(pb)
        p_lim = limit(p_page)
        p_fits = fits(p_beats, p_lim)

        addr = Signal(self._addr_bits)
        left = Signal(self._count_bits)  # beats after the current burst
        n = Signal(range(cap + 1))  # beats of the current burst
        last = Signal()  # the current burst is its run's last
        page_left = Signal(pb)  # beats from `addr` to the page end
        busy = Signal()
        calc = Signal()  # sizing the run's next burst
        m.d.comb += [
            self.busy.eq(busy | p_valid),
            self.planned.eq(p_valid),
            self.burst.valid.eq(busy & ~calc),
            self.burst.payload.addr.eq(addr),
            self.burst.payload.len.eq(n - 1),
        ]
        fire = self.burst.valid & self.burst.ready
        p_move = p_valid & (~busy | (fire & last))
        with m.If(fire):
            with m.If(last):
                m.d.sync += busy.eq(0)
            with m.Else():
                m.d.sync += [
                    calc.eq(1),
                    addr.eq(addr + (n << lb)),
                    page_left.eq(Mux(page_left == n, page, page_left - n)),
                ]
        with m.If(calc):
            lim = limit(page_left)
            f = fits(left, lim)
            m.d.sync += [
                calc.eq(0),
                n.eq(Mux(f, left, lim)),
                last.eq(f),
                left.eq(left - lim),
            ]
        with m.If(p_move):
            m.d.sync += [
                busy.eq(1),
                calc.eq(0),
                addr.eq(p_addr),
                n.eq(Mux(p_fits, p_beats, p_lim)),
                last.eq(p_fits),
                left.eq(p_beats - p_lim),
                page_left.eq(p_page),
                p_valid.eq(0),
            ]
        m.d.comb += self.start.ready.eq(~p_valid | p_move)
        with m.If(self.start.valid & self.start.ready):
            a = self.start.payload.addr
            m.d.sync += [
                p_valid.eq(1),
                p_addr.eq(a),
                p_beats.eq(self.start.payload.beats),
                p_page.eq(page - a[lb:12]),
            ]
        return m


def _counter_with_room(m: Module, limit: int, inc, dec, name: str):
    """A counter of things in flight (``+inc - dec`` a cycle) and the registered flag
    ``count < limit`` that gates ``inc`` (no compare on the handshake path)."""
    count = Signal(range(limit + 1), name=name)
    room = Signal(init=1, name=f"{name}_room")
    m.d.sync += count.eq(count + inc - dec)
    with m.If(inc & ~dec):
        m.d.sync += room.eq(count < limit - 1)
    with m.Elif(dec & ~inc):
        m.d.sync += room.eq(1)
    return count, room


def _queue_head(m: Module, desc, ra):
    """The realigner's next transfer in a register in front of it: the descriptor queue's
    read data (a block RAM's slow output latch when the queue is deep) reaches only this
    register. Returns ``(valid, head)``."""
    valid = Signal(name="cmd_valid")
    head = Signal(ra.cmd.payload.shape(), name="cmd_head")
    with m.If(ra.cmd.ready):
        m.d.sync += valid.eq(0)
    with m.If(desc.r_rdy & desc.r_en):
        m.d.sync += [head.eq(desc.r_data), valid.eq(1)]
    return valid, head


def _request_skid(engine, m: Module):
    """Put ``engine._req_skid`` in front of the engine's ``req`` port; returns the stream the
    engine takes requests from (``ready`` from a register seen by the producer)."""
    m.submodules.req_skid = skid = engine._req_skid
    wiring.connect(m, wiring.flipped(engine.req), skid.i)
    return skid.o


def _validate_engine(addr_bits, data_bits, id_bits, len_bits, max_outstanding):
    _check_int("addr_bits", addr_bits, 12, 64)
    _check_int("data_bits", data_bits, 32, 1024, pow2=True)
    _check_int("id_bits", id_bits, 1, 32)
    _check_int("len_bits", len_bits, 1, 40)
    _check_int("max_outstanding", max_outstanding, 1, 256)


class AxiReadEngine(wiring.Component):
    """AXI4 read engine: byte-granular requests in, realigned data beats out.

    Parameters
    ----------
    addr_bits, data_bits, id_bits : int
        AXI widths (``data_bits`` = beat width, power of two, 32..1024).
    len_bits : int
        Width of a request's byte count.
    max_outstanding : int
        Bursts issued on AR whose last R beat has not arrived yet (latency hiding).
    arid : int
        Constant ``arid`` of every burst (R beats are taken in order; ``rid`` is not checked).

    Ports
    -----
    req : In(stream {addr: addr_bits, nbytes: len_bits, dst_off: log2(B)})
        Read ``nbytes >= 1`` bytes from byte address ``addr``; DRAM byte ``addr`` appears at
        byte ``dst_off`` of the first output beat.
    data : Out(stream {data, strb, last, error})
        ``ceil((dst_off + nbytes) / B)`` beats per request, in request order (see
        :class:`ByteRealigner`); ``error`` on the ``last`` beat is set when any R beat of the
        request had RRESP SLVERR/DECERR.
    axi : Out(axi4_read_signature)
        The AR and R channels.
    busy : Out(1)
        A request is accepted but not all of its data has left ``data``.
    queued : Out(1)
        An accepted request waits for the burst splitter to start it (flip-flops): the bus has
        work queued, so a producer may keep merging.
    """

    def __init__(
        self,
        *,
        addr_bits: int,
        data_bits: int,
        id_bits: int = 4,
        len_bits: int = 32,
        max_outstanding: int = 8,
        arid: int = 0,
    ) -> None:
        _validate_engine(addr_bits, data_bits, id_bits, len_bits, max_outstanding)
        _check_int("arid", arid, 0, (1 << id_bits) - 1)
        self._addr_bits = addr_bits
        self._data_bits = data_bits
        self._id_bits = id_bits
        self._len_bits = len_bits
        self._max_outstanding = max_outstanding
        self._arid = arid
        bw = data_bits // 8
        self._realigner = ByteRealigner(bw, len_bits)
        self._splitter = _BurstSplitter(addr_bits, bw, len_bits + 1)
        self._desc = SyncFIFOBuffered(
            width=len(self._realigner.cmd.payload.as_value()), depth=max_outstanding
        )
        self._skid = StreamSkid(self._realigner.o.payload.shape())
        req_layout = data.StructLayout(
            {"addr": addr_bits, "nbytes": len_bits, "dst_off": max(1, _log2(bw))}
        )
        self._req_skid = StreamRing(req_layout)
        super().__init__(
            {
                "req": In(stream.Signature(req_layout)),
                "data": Out(self._realigner.o.signature),
                "axi": Out(axi4_read_signature(addr_bits, data_bits, id_bits)),
                "busy": Out(1),
                "queued": Out(1),
            }
        )

    @property
    def beat_bytes(self) -> int:
        """Bytes per AXI beat."""
        return self._data_bits // 8

    @property
    def max_outstanding(self) -> int:
        """Bursts in flight at most."""
        return self._max_outstanding

    def elaborate(self, platform):
        m = Module()
        m.submodules.realigner = ra = self._realigner
        m.submodules.splitter = sp = self._splitter
        m.submodules.desc = desc = self._desc
        bw = self.beat_bytes
        lb = _log2(bw)
        axi = self.axi

        rq = _request_skid(self, m)
        # the descriptor queue's room as a registered flag (not its level compare)
        _, desc_room = _counter_with_room(
            m, self._max_outstanding, desc.w_en, desc.r_en & desc.r_rdy, "descs")
        cmd_valid, cmd_head = _queue_head(m, desc, ra)
        req = rq.payload
        src_off = req.addr[:lb] if lb else Const(0, 1)
        cmd = Signal(ra.cmd.payload.shape())
        m.d.comb += [
            cmd.src_off.eq(src_off),
            cmd.dst_off.eq(req.dst_off),
            cmd.nbytes.eq(req.nbytes),
            desc.w_data.eq(cmd),
            sp.start.payload.addr.eq(req.addr & ~(bw - 1)),
            sp.start.payload.beats.eq((src_off + req.nbytes + bw - 1) >> lb),
            rq.ready.eq(desc_room & sp.start.ready),
            desc.w_en.eq(rq.valid & rq.ready),
            sp.start.valid.eq(rq.valid & rq.ready),
        ]

        ar_fire = axi.arvalid & axi.arready
        # A burst's last R handshake is counted out of `outstanding` a cycle late (from a
        # flip-flop): `rready` (the realigner's and the consumer's handshake) stays off the
        # counter's carry chain; `room` errs on the safe side for that cycle.
        r_last = Signal()
        m.d.sync += r_last.eq(axi.rvalid & axi.rready & axi.rlast)
        outstanding, room = _counter_with_room(
            m, self._max_outstanding, ar_fire, r_last, "outstanding")
        m.d.comb += [
            axi.arvalid.eq(sp.burst.valid & room),
            sp.burst.ready.eq(axi.arready & room),
            axi.araddr.eq(sp.burst.payload.addr),
            axi.arlen.eq(sp.burst.payload.len),
            axi.arid.eq(self._arid),
            *const_fields(axi, "ar", self._data_bits),
        ]

        m.d.comb += [
            ra.cmd.valid.eq(cmd_valid),
            ra.cmd.payload.eq(cmd_head),
            desc.r_en.eq(~cmd_valid | ra.cmd.ready),
            ra.i.valid.eq(axi.rvalid),
            ra.i.payload.data.eq(axi.rdata),
            ra.i.payload.error.eq(axi.rresp[1]),
            axi.rready.eq(ra.i.ready),
        ]
        # The register slice keeps the consumer's ready (and the data) off the realigner's and
        # the R channel's combinational paths. (A StreamSkid, not a StreamRing: the load unit's
        # table parser compares the data straight from its registers; its pop is shallow.)
        m.submodules.skid = skid = self._skid
        wiring.connect(m, ra.o, skid.i)
        wiring.connect(m, skid.o, wiring.flipped(self.data))
        m.d.comb += self.busy.eq(
            rq.valid | sp.busy | desc.r_rdy | cmd_valid | ra.active | (outstanding != 0)
            | skid.o.valid
        )
        m.d.comb += self.queued.eq(rq.valid | sp.planned)
        return m


class AxiWriteEngine(wiring.Component):
    """AXI4 write engine: byte-granular requests and their data in, bursts with WSTRB out.

    Parameters
    ----------
    addr_bits, data_bits, id_bits, len_bits, max_outstanding : int
        As :class:`AxiReadEngine`; ``max_outstanding`` bounds bursts awaiting their B response.
    awid : int
        Constant ``awid``.

    Ports
    -----
    req : In(stream {addr: addr_bits, nbytes: len_bits})
        Write ``nbytes >= 1`` bytes to byte address ``addr``.
    data : In(stream {data})
        Per request ``ceil(nbytes / B)`` beats, the run's byte 0 in byte 0 of the first beat
        (bytes beyond ``nbytes`` in the last beat are ignored).
    axi : Out(axi4_write_signature)
        The AW, W and B channels. A burst's W beats follow its AW handshake.
    error : Out(1)
        Strobe: a B response with BRESP SLVERR/DECERR arrived this cycle.
    busy : Out(1)
        Some accepted request has data not yet written or B responses not yet received
        (low = every write issued so far is complete).
    """

    def __init__(
        self,
        *,
        addr_bits: int,
        data_bits: int,
        id_bits: int = 4,
        len_bits: int = 32,
        max_outstanding: int = 8,
        awid: int = 0,
    ) -> None:
        _validate_engine(addr_bits, data_bits, id_bits, len_bits, max_outstanding)
        _check_int("awid", awid, 0, (1 << id_bits) - 1)
        self._addr_bits = addr_bits
        self._data_bits = data_bits
        self._id_bits = id_bits
        self._max_outstanding = max_outstanding
        self._awid = awid
        bw = data_bits // 8
        self._realigner = ByteRealigner(bw, len_bits)
        self._splitter = _BurstSplitter(addr_bits, bw, len_bits + 1)
        self._desc = SyncFIFOBuffered(
            width=len(self._realigner.cmd.payload.as_value()), depth=max_outstanding
        )
        self._bursts = SyncFIFOBuffered(width=8, depth=max_outstanding)
        req_layout = data.StructLayout({"addr": addr_bits, "nbytes": len_bits})
        self._req_skid = StreamRing(req_layout)
        super().__init__(
            {
                "req": In(stream.Signature(req_layout)),
                "data": In(stream.Signature(data.StructLayout({"data": data_bits}))),
                "axi": Out(axi4_write_signature(addr_bits, data_bits, id_bits)),
                "error": Out(1),
                "busy": Out(1),
            }
        )

    @property
    def beat_bytes(self) -> int:
        """Bytes per AXI beat."""
        return self._data_bits // 8

    @property
    def max_outstanding(self) -> int:
        """Bursts awaiting a write response at most."""
        return self._max_outstanding

    def elaborate(self, platform):
        m = Module()
        m.submodules.realigner = ra = self._realigner
        m.submodules.splitter = sp = self._splitter
        m.submodules.desc = desc = self._desc
        m.submodules.bursts = bursts = self._bursts
        bw = self.beat_bytes
        lb = _log2(bw)
        axi = self.axi

        rq = _request_skid(self, m)
        # the descriptor queue's room as a registered flag (not its level compare)
        _, desc_room = _counter_with_room(
            m, self._max_outstanding, desc.w_en, desc.r_en & desc.r_rdy, "descs")
        cmd_valid, cmd_head = _queue_head(m, desc, ra)
        req = rq.payload
        dst_off = req.addr[:lb] if lb else Const(0, 1)
        cmd = Signal(ra.cmd.payload.shape())
        m.d.comb += [
            cmd.src_off.eq(0),
            cmd.dst_off.eq(dst_off),
            cmd.nbytes.eq(req.nbytes),
            desc.w_data.eq(cmd),
            sp.start.payload.addr.eq(req.addr & ~(bw - 1)),
            sp.start.payload.beats.eq((dst_off + req.nbytes + bw - 1) >> lb),
            rq.ready.eq(desc_room & sp.start.ready),
            desc.w_en.eq(rq.valid & rq.ready),
            sp.start.valid.eq(rq.valid & rq.ready),
        ]

        b_fire = axi.bvalid & axi.bready
        outstanding, room = _counter_with_room(
            m, self._max_outstanding, axi.awvalid & axi.awready, b_fire, "outstanding")
        # (a burst leaves `bursts` at its last W beat, before its B response: `bursts` cannot be
        # full while `room` is high)
        can_issue = room
        m.d.comb += [
            axi.awvalid.eq(sp.burst.valid & can_issue),
            sp.burst.ready.eq(axi.awready & can_issue),
            axi.awaddr.eq(sp.burst.payload.addr),
            axi.awlen.eq(sp.burst.payload.len),
            axi.awid.eq(self._awid),
            *const_fields(axi, "aw", self._data_bits),
            bursts.w_data.eq(sp.burst.payload.len),
            bursts.w_en.eq(axi.awvalid & axi.awready),
        ]
        m.d.comb += axi.bready.eq(1)
        m.d.comb += self.error.eq(b_fire & axi.bresp[1])

        m.d.comb += [
            ra.cmd.valid.eq(cmd_valid),
            ra.cmd.payload.eq(cmd_head),
            desc.r_en.eq(~cmd_valid | ra.cmd.ready),
            ra.i.valid.eq(self.data.valid),
            ra.i.payload.data.eq(self.data.payload.data),
            ra.i.payload.error.eq(0),
            self.data.ready.eq(ra.i.ready),
        ]

        beat = Signal(8)
        m.d.comb += [
            axi.wvalid.eq(ra.o.valid & bursts.r_rdy),
            ra.o.ready.eq(axi.wready & bursts.r_rdy),
            axi.wdata.eq(ra.o.payload.data),
            axi.wstrb.eq(ra.o.payload.strb),
            axi.wlast.eq(beat == bursts.r_data),
        ]
        w_fire = axi.wvalid & axi.wready
        m.d.comb += bursts.r_en.eq(w_fire & axi.wlast)
        with m.If(w_fire):
            m.d.sync += beat.eq(Mux(axi.wlast, 0, beat + 1))

        m.d.comb += self.busy.eq(
            rq.valid | sp.busy | desc.r_rdy | cmd_valid | ra.active | bursts.r_rdy
            | (outstanding != 0)
        )
        return m
