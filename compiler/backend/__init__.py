"""The compiler back end: integer IR -> program, DRAM image and manifest (a :class:`Bundle`).

Modules, in pass order: :mod:`~compiler.backend.layout` (DRAM placements, view chains as address
maps, reduction chunking), :mod:`~compiler.backend.allocation` (DRAM regions, on-chip arenas,
entry/table/geometry slots), :mod:`~compiler.backend.emit` (tiling and instruction emission per
node), :mod:`~compiler.backend.schedule` (dependency tokens), :mod:`~compiler.backend.bundle`
(the artifact), :mod:`~compiler.backend.report` (per-node figures).
"""

from compiler.backend.bundle import Bundle, BundleResult
from compiler.backend.compile import compile, compile_graph
from compiler.backend.errors import CompileError

__all__ = ["Bundle", "BundleResult", "CompileError", "compile", "compile_graph"]
