# amaranth: UnusedElaboratable=no
"""The epilogue with its segment table: the block the compute unit instantiates.

:class:`hw.epilogue.Epilogue` reads the tables through :class:`hw.segment_table.SegmentTable`'s
``lookup`` ports; this component wires the two and exposes the rest: the row streams, the
table's LOADT write port, its ``loaded`` bits (FN_UNLOADED) and ``clear`` (start of a run).
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.config import AcceleratorConfig
from hw.epilogue import Epilogue, epilogue_input_layout, epilogue_output_layout
from hw.segment_table import SegmentTable, table_write_layout

__all__ = ["EpilogueUnit"]


class EpilogueUnit(wiring.Component):
    """:class:`~hw.epilogue.Epilogue` wired to its :class:`~hw.segment_table.SegmentTable`.

    Parameters
    ----------
    config : AcceleratorConfig
        As for :class:`~hw.epilogue.Epilogue`.
    tag_bits : int
        Width of the tag carried from ``rows`` to ``results`` (0..64).

    Attributes
    ----------
    rows : In(stream.Signature(epilogue_input_layout(config, tag_bits)))
    results : Out(stream.Signature(epilogue_output_layout(config, tag_bits)))
        As :attr:`Epilogue.rows <hw.epilogue.Epilogue>` and ``results``; latency
        :attr:`latency`, one row per cycle.
    table_write : In(stream.Signature(table_write_layout(config)))
        LOADT's field writes (:attr:`SegmentTable.write <hw.segment_table.SegmentTable>`).
    table_loaded : Out(pwl_functions)
        Functions written since the last ``table_clear``.
    table_clear : In(1)
        Start of a run: clears ``table_loaded``.
    """

    def __init__(self, config: AcceleratorConfig, *, tag_bits: int = 0) -> None:
        self._epilogue = Epilogue(config, tag_bits=tag_bits)
        self._table = SegmentTable(config)
        super().__init__({
            "rows": In(stream.Signature(epilogue_input_layout(config, tag_bits))),
            "results": Out(stream.Signature(epilogue_output_layout(config, tag_bits))),
            "table_write": In(stream.Signature(table_write_layout(config))),
            "table_loaded": Out(config.pwl_functions),
            "table_clear": In(1),
        })

    @property
    def epilogue(self) -> Epilogue:
        """The datapath (for its ``latency``, ``lanes``, ...)."""
        return self._epilogue

    @property
    def table(self) -> SegmentTable:
        """The segment-table SRAM (for its ``write_latency``, ...)."""
        return self._table

    @property
    def latency(self) -> int:
        """Cycles from a row's handshake to its result (no backpressure)."""
        return self._epilogue.latency

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.epilogue = self._epilogue
        m.submodules.table = self._table
        wiring.connect(m, self._epilogue.table, self._table.lookup)
        wiring.connect(m, wiring.flipped(self.rows), self._epilogue.rows)
        wiring.connect(m, self._epilogue.results, wiring.flipped(self.results))
        wiring.connect(m, wiring.flipped(self.table_write), self._table.write)
        m.d.comb += [
            self.table_loaded.eq(self._table.loaded),
            self._table.clear.eq(self.table_clear),
        ]
        return m
