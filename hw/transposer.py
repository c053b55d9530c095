"""Transposer: ``C`` stored rows of ``R`` int8 (a transposed weight block) -> ``R`` beats of ``C``.

GEMM with ``transpose = 1`` stores weight block ``(u, t)`` as ``C`` scratchpad rows of ``R``
values: ``Wblk[r][c] = row_c[r]`` (docs/isa.md, GEMM). The array takes a block as ``R`` beats,
beat ``r`` = ``Wblk[r][0..C-1]``. Beat 0 needs element 0 of every stored row, so a whole block
is collected before it is emitted; two block buffers (ping-pong) let the next block arrive while
the current one leaves, so blocks pass at one per ``max(R, C)`` cycles.

Ports (``lib.stream``):

``rows`` (in), payload ``ArrayLayout(signed(8), R)``
    The ``C`` stored rows of a block, in order (row ``c`` first for ``c = 0``).
``beats`` (out), payload ``ArrayLayout(signed(8), C)``
    Beat ``r`` of the block, ``r = 0 .. R-1``.
``idle`` (out, 1 bit)
    No block is held or partly collected (lets a caller switch a shared consumer to another
    source without reordering).

Latency: the block's last row accepted in cycle ``t`` -> beat 0 valid in ``t + 1``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.config import AcceleratorConfig

__all__ = ["Transposer"]


class Transposer(wiring.Component):
    """Double-buffered ``C x R`` -> ``R x C`` block transposer (see module docs).

    Parameters
    ----------
    config : AcceleratorConfig
        Uses ``rows`` (R), ``cols`` (C) and ``operand_bits``.
    """

    def __init__(self, config: AcceleratorConfig) -> None:
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
        self._config = config
        ow = config.operand_bits
        super().__init__({
            "rows": In(stream.Signature(data.ArrayLayout(signed(ow), config.rows))),
            "beats": Out(stream.Signature(data.ArrayLayout(signed(ow), config.cols))),
            "idle": Out(1),
        })

    @property
    def config(self) -> AcceleratorConfig:
        """The configuration the transposer was built for."""
        return self._config

    def elaborate(self, platform) -> Module:
        m = Module()
        R, C, ow = self._config.rows, self._config.cols, self._config.operand_bits
        # buf[k][c][r] = element r of stored row c of the block in buffer k. The buffers have no
        # reset: a buffer is emitted only once `full`, after all C of its rows were written
        # since the last reset (`full`, `wsel`, `wcount` and `wen` are reset), so no beat
        # reads a value held across a reset. No reset multiplexer in front of the 2 x C x R
        # enabled registers (plain enabled flip-flops; less work on every Verilator clock edge).
        buf = [[[Signal(signed(ow), name=f"buf{k}_{c}_{r}", reset_less=True) for r in range(R)]
                for c in range(C)] for k in range(2)]
        full = [Signal(name=f"full{k}") for k in range(2)]
        wsel = Signal()  # buffer being filled
        wcount = Signal(range(max(C, 2)))
        rsel = Signal()  # buffer being emitted
        rcount = Signal(range(max(R, 2)))

        take = self.rows.valid & self.rows.ready
        give = self.beats.valid & self.beats.ready
        m.d.comb += [
            self.rows.ready.eq(~full[0] & ~wsel | ~full[1] & wsel),
            self.beats.valid.eq(full[0] & ~rsel | full[1] & rsel),
            self.idle.eq(~full[0] & ~full[1] & (wcount == 0)),
        ]
        # The row buffers' enables are flip-flops: slot `wen[k][c]` is high while row `c` of
        # buffer `k` is the next to arrive and that buffer is not full. The slot takes the
        # input's payload in every such cycle, accepted or not (an unaccepted payload is
        # overwritten before the buffer is full), so no decode of `wsel`/`wcount` and no
        # handshake sits in front of the 2 x C x R x 8 buffer enables.
        wen = [[Signal(name=f"wen{k}_{c}", init=(k == 0 and c == 0)) for c in range(C)]
               for k in range(2)]
        wsel_next = Signal()
        wcount_next = Signal.like(wcount)
        full_next = [Signal(name=f"full{k}_next") for k in range(2)]
        m.d.comb += [wsel_next.eq(wsel), wcount_next.eq(wcount)]
        m.d.comb += [full_next[k].eq(full[k]) for k in range(2)]
        for k in range(2):
            for c in range(C):
                with m.If(wen[k][c]):
                    m.d.sync += [buf[k][c][r].eq(self.rows.payload[r]) for r in range(R)]
        with m.If(take):
            with m.If(wcount == C - 1):
                m.d.comb += [wcount_next.eq(0), wsel_next.eq(~wsel)]
                with m.If(wsel):
                    m.d.comb += full_next[1].eq(1)
                with m.Else():
                    m.d.comb += full_next[0].eq(1)
            with m.Else():
                m.d.comb += wcount_next.eq(wcount + 1)
        for c in range(C):
            column = [Cat(*buf[k][c]) for k in range(2)]  # element r at bits 8r
            m.d.comb += self.beats.payload[c].eq(
                Mux(rsel, column[1], column[0]).word_select(rcount, ow))
        with m.If(give):
            with m.If(rcount == R - 1):
                m.d.sync += [rcount.eq(0), rsel.eq(~rsel)]
                with m.If(rsel):
                    m.d.comb += full_next[1].eq(0)
                with m.Else():
                    m.d.comb += full_next[0].eq(0)
            with m.Else():
                m.d.sync += rcount.eq(rcount + 1)
        m.d.sync += [wsel.eq(wsel_next), wcount.eq(wcount_next)]
        m.d.sync += [full[k].eq(full_next[k]) for k in range(2)]
        for k in range(2):
            for c in range(C):
                m.d.sync += wen[k][c].eq((wsel_next == k) & (wcount_next == c) & ~full_next[k])
        return m
