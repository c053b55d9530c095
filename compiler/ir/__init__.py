"""The integer IR: per node, the exact passes the machine runs (docs/compiler.md, "Integer IR").

:func:`build_ir` turns a quantised matrix graph into an :class:`IntGraph`; :func:`interpret`
runs it with integers only (``compiler.execute``'s ``int`` mode), and ``compiler.backend``
lowers the same objects to instructions, so the integer reference and the machine agree by
construction.
"""

from compiler.ir.build import build_ir
from compiler.ir.interpret import interpret, interpret_node
from compiler.ir.nodes import GemmPass, IntGraph, IntNode, Operand

__all__ = ["GemmPass", "IntGraph", "IntNode", "Operand", "build_ir", "interpret",
           "interpret_node"]
