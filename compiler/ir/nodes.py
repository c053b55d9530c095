"""Data types of the integer IR.

A node is ``y = E(acc)`` with the accumulator built in at most two stages::

    acc = sum of the "pre" passes                 (GEMMs before the x256 epilogue)
    acc = epilogue(acc, 256, 0, identity, 32)     (only if the node has pre passes: ``shifted``)
    acc = acc + sum of the "post" passes + bias   (the bias enters with the first post pass)
    x   = requantize(acc, multiplier, shift)      (per column, or per row from a row-scale tensor)
    y   = pwl_apply(x, table, out_bits)           (split_out: int32, then hi/lo saturating split)

Every pass multiplies two int8 planes: a data plane (a tensor seen through its views; ``hi`` or
``lo`` of a 16-bit tensor) or an integer constant plane (int8 after splitting 16-bit
constants).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compiler.graph import TensorRef
from hw.numeric import PwlTable

__all__ = ["GemmPass", "IntGraph", "IntNode", "Operand", "PLANES", "STAGES"]

#: Planes of an operand: the int8 tensor itself, or a half of a 16-bit tensor ``256 hi + lo``.
PLANES = ("int8", "hi", "lo")
#: Stages of a pass: before (``pre``) or after (``post``) the node's x256 epilogue.
STAGES = ("pre", "post")


@dataclass(frozen=True)
class Operand:
    """One int8 plane read by a GEMM pass.

    Exactly one of ``ref`` (a data tensor through its views) and ``const`` (an int64 array of
    int8 values, views already applied) is set. ``plane`` selects a half of a 16-bit data
    tensor; constants are split when the IR is built, so their plane only records which half
    they are.
    """

    ref: TensorRef | None = None
    const: np.ndarray | None = field(default=None, compare=False)
    plane: str = "int8"
    const_name: str = ""

    def __post_init__(self) -> None:
        if (self.ref is None) == (self.const is None):
            raise ValueError("an operand is either a data tensor or a constant")
        if self.plane not in PLANES:
            raise ValueError(f"plane {self.plane!r} unknown; one of {PLANES}")

    @property
    def is_const(self) -> bool:
        """Whether this is a constant plane."""
        return self.const is not None

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-sample shape (constants: their own shape)."""
        return tuple(self.const.shape) if self.const is not None else tuple(self.ref.shape)

    def describe(self) -> str:
        """Short text form for listings and errors."""
        if self.const is not None:
            return f"{self.const_name or 'const'}{list(self.const.shape)}" + (
                f".{self.plane}" if self.plane != "int8" else "")
        return f"{self.ref.source}{list(self.ref.shape)}" + (
            f".{self.plane}" if self.plane != "int8" else "")


@dataclass(frozen=True)
class GemmPass:
    """``a @ b`` (matmul broadcasting over leading dims) accumulated in ``stage``."""

    a: Operand
    b: Operand
    stage: str = "post"

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage {self.stage!r} unknown; one of {STAGES}")


@dataclass
class IntNode:
    """The integer program of one matrix-graph node (see the module docstring).

    Parameters
    ----------
    name, module, aten : str
        Output tensor name, the ``nn.Module`` path and the aten op it came from.
    shape : tuple of int
        Per-sample output shape ``(*batch, M, N)``.
    passes : list of GemmPass
        In execution order within each stage.
    bias : ndarray or None
        int32 values (int64 array) broadcastable to ``(..., 1, N)``.
    multiplier : ndarray or None
        Per-column int16 multipliers broadcastable to ``(..., 1, N)``; None with ``row_scale``.
    shift : ndarray
        Per-column shifts (or the constant shift of a row-scaled epilogue).
    row_scale : TensorRef or None
        int16 data vector ``(..., M, 1)``: per-row multipliers written by an earlier node.
    table : PwlTable
    out_bits : int
        8, 16 or 32.
    split_out : bool
        The output is a 16-bit GEMM operand: int32 epilogue result, then hi/lo split.
    """

    name: str
    module: str
    aten: str
    shape: tuple[int, ...]
    passes: list[GemmPass]
    bias: np.ndarray | None
    multiplier: np.ndarray | None
    shift: np.ndarray
    row_scale: TensorRef | None
    table: PwlTable
    out_bits: int
    split_out: bool = False

    @property
    def shifted(self) -> bool:
        """Whether the node runs the x256 epilogue (it has ``pre`` passes)."""
        return any(p.stage == "pre" for p in self.passes)

    def stage(self, stage: str) -> list[GemmPass]:
        """The passes of one stage, in order."""
        return [p for p in self.passes if p.stage == stage]

    @property
    def what(self) -> str:
        """Node, module path and aten op, for error messages."""
        return f"node {self.name} (module {self.module or '<top>'}, {self.aten})"

    def listing(self) -> str:
        """One line per pass and epilogue (``nmx compile --report`` prints it)."""
        lines = [f"{self.name} {list(self.shape)}  [{self.module} {self.aten}]"]
        for p in self.passes:
            lines.append(f"  {p.stage:4s} GEMM {p.a.describe()} @ {p.b.describe()}")
        if self.shifted:
            lines.append("  EPI x256 (in place, identity, int32)")
        scale = "row" if self.row_scale is not None else "col"
        lines.append(f"  EPI {scale}-scale, {self.table.segments}-segment table -> "
                     f"int{self.out_bits}{' split hi/lo' if self.split_out else ''}")
        return "\n".join(lines)


@dataclass
class IntGraph:
    """Integer IR of a whole converted network.

    ``inputs`` maps every data tensor that enters the machine (graph inputs and host results)
    to its int8 scale; ``scales`` and ``bits`` hold every data tensor's real step and width;
    ``outputs`` are the graph outputs (views applied on the host).
    """

    nodes: list[IntNode]
    inputs: dict[str, float]
    scales: dict[str, float]
    bits: dict[str, int]
    outputs: list[TensorRef]
    wide: list[str] = field(default_factory=list)

    def node(self, name: str) -> IntNode:
        """The node producing ``name``."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)
