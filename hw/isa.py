"""The instruction set: the one definition used by the assembler, golden model, compiler and RTL.

Every instruction is one 128-bit word. Bits ``[3:0]`` hold the :class:`Opcode`, bits ``[7:4]`` the
four dependency-token flags (``pop_prev``, ``pop_next``, ``push_prev``, ``push_next``), and the
opcode's fields follow from bit 8 upward in the order the instruction's dataclass declares them.
Bits above the last field are reserved and must be zero. ``docs/isa.md`` describes the semantics;
``tests/test_isa_doc.py`` checks that every opcode and field below appears there and vice versa.

Each instruction dataclass field carries its encoding in ``metadata`` (width, signedness, minimum),
so the dataclasses, the bit layout, the encoder/decoder and the Amaranth ``lib.data`` layouts
(:func:`body_layout`, :data:`HEADER_LAYOUT`, :data:`WORD_LAYOUT`) all derive from one place.

Field widths are fixed and generous; whether an address fits a particular
:class:`~hw.config.AcceleratorConfig` is checked when the instruction executes (an error code in
the status register, never a silent wrap).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import ClassVar

import numpy as np
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum

from hw.config import AcceleratorConfig, ConfigError, ConfigStamp
from hw.errors import NmxError
from hw.numeric import ACC_BITS, MAX_SHIFT, SCALE_BITS, PwlTable, int_range

__all__ = [
    "ALLOWED_DEPS",
    "BIAS_ENTRY_BYTES",
    "DEP_FLAGS",
    "Dmacfg",
    "EpiDest",
    "Epi",
    "FieldSpec",
    "Gemm",
    "GemmMode",
    "HEADER_BITS",
    "HEADER_LAYOUT",
    "Halt",
    "INSTRUCTION_CLASSES",
    "Instruction",
    "IsaError",
    "Load",
    "Loadt",
    "MemSpace",
    "Opcode",
    "PROGRAM_HEADER_BYTES",
    "PROGRAM_MAGIC",
    "PROGRAM_VERSION",
    "READABLE_VERSIONS",
    "PWL_HEADER_BYTES",
    "Program",
    "ProgramHeader",
    "ScaleMode",
    "Setbase",
    "Store",
    "Sync",
    "SyncTarget",
    "TOKEN_POPS",
    "TOKEN_PUSHES",
    "TOKEN_QUEUES",
    "TableKind",
    "Unit",
    "WORD_BITS",
    "WORD_BYTES",
    "WORD_LAYOUT",
    "body_layout",
    "decode",
    "encode_bias_entries",
    "encode_pwl_table",
    "encode",
    "field_specs",
    "pwl_table_bytes",
]

WORD_BITS = 128
WORD_BYTES = WORD_BITS // 8
HEADER_BITS = 8
BODY_BITS = WORD_BITS - HEADER_BITS


class IsaError(NmxError, ValueError):
    """A malformed instruction or program; names the word offset and the field when known."""

    def __init__(self, message: str, *, word: int | None = None, field: str | None = None):
        self.word = word
        self.field = field
        self.detail = message
        where = []
        if word is not None:
            where.append(f"word {word}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(": ".join([*where, message]))


class Opcode(enum.Enum, shape=4):
    """Instruction opcodes (bits ``[3:0]``). Values not listed (0 and 10..15) are illegal."""

    HALT = 1
    SETBASE = 2
    DMACFG = 3
    LOAD = 4
    LOADT = 5
    GEMM = 6
    EPI = 7
    STORE = 8
    SYNC = 9


class Unit(enum.Enum):
    """The unit that executes an instruction (each has its own in-order queue)."""

    DISPATCH = 0
    LOAD = 1
    COMPUTE = 2
    STORE = 3


class SyncTarget(enum.Enum, shape=2):
    """The unit whose queue runs a SYNC (value 0 is illegal)."""

    LOAD = 1
    COMPUTE = 2
    STORE = 3


class MemSpace(enum.Enum, shape=1):
    """On-chip memory reached by LOAD/STORE: scratchpad (int8 rows) or accumulator (int32 rows)."""

    SPAD = 0
    ACC = 1


class TableKind(enum.Enum, shape=1):
    """Table memory filled by LOADT: bias/scale SRAM entries or PWL segment tables."""

    BIAS = 0
    PWL = 1


class GemmMode(enum.Enum, shape=2):
    """How GEMM combines its product with the accumulator rows.

    ``ACCUMULATE_BIAS`` adds both the bias entries and the old accumulator row (the bias of a
    term that follows the ``x256`` step of a 16-bit operand).
    """

    OVERWRITE = 0
    ACCUMULATE = 1
    BIAS = 2
    ACCUMULATE_BIAS = 3

    @property
    def reads_accumulator(self) -> bool:
        """True for the modes that add the old accumulator row."""
        return self in (GemmMode.ACCUMULATE, GemmMode.ACCUMULATE_BIAS)

    @property
    def reads_bias(self) -> bool:
        """True for the modes that add bias entries ``bias + u*C + c``."""
        return self in (GemmMode.BIAS, GemmMode.ACCUMULATE_BIAS)


class EpiDest(enum.Enum, shape=2):
    """Where EPI writes its results (value 3 is illegal)."""

    SPAD = 0
    ACC = 1
    SCALE = 2


class ScaleMode(enum.Enum, shape=1):
    """Source of EPI's requantisation multiplier/shift: per output column or per row."""

    COL = 0
    ROW = 1


#: Dependency-token flags in header order (bits 4..7).
DEP_FLAGS = ("pop_prev", "pop_next", "push_prev", "push_next")


@dataclass(frozen=True)
class FieldSpec:
    """Encoding of one instruction field: bit offset in the word, width and value constraints."""

    name: str
    offset: int
    bits: int
    kind: str  # "u" (unsigned), "s" (two's complement), "enum" or "bool"
    enum: type | None
    minimum: int
    doc: str

    @property
    def value_range(self) -> tuple[int, int]:
        """Inclusive range of encodable integer values (enums: raw values)."""
        if self.kind == "s":
            return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        return self.minimum, (1 << self.bits) - 1


def _u(bits: int, doc: str, *, minimum: int = 0):
    return field(default=minimum, metadata={"bits": bits, "kind": "u", "min": minimum, "doc": doc})


def _s(bits: int, doc: str):
    return field(default=0, metadata={"bits": bits, "kind": "s", "min": 0, "doc": doc})


def _e(enum_cls, doc: str):
    first = next(iter(enum_cls))
    bits = enum_cls.as_shape().width
    return field(
        default=first,
        metadata={"bits": bits, "kind": "enum", "enum": enum_cls, "min": 0, "doc": doc},
    )


@dataclass(frozen=True)
class Instruction:
    """Base of every instruction: the four dependency-token flags of the header."""

    OPCODE: ClassVar[Opcode]
    UNIT: ClassVar[Unit]

    pop_prev: bool = False
    pop_next: bool = False
    push_prev: bool = False
    push_next: bool = False

    @property
    def opcode(self) -> Opcode:
        """This instruction's opcode."""
        return self.OPCODE

    @property
    def unit(self) -> Unit:
        """The unit whose queue executes this instruction."""
        return self.UNIT

    def body(self) -> dict[str, object]:
        """The opcode-specific fields as a dict (header flags excluded)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in DEP_FLAGS}

    def encode(self) -> int:
        """Encode as a 128-bit integer (see :func:`encode`)."""
        return encode(self)


@dataclass(frozen=True)
class Halt(Instruction):
    """End of program: the dispatcher stops fetching and waits until every unit is idle."""

    OPCODE: ClassVar[Opcode] = Opcode.HALT
    UNIT: ClassVar[Unit] = Unit.DISPATCH


@dataclass(frozen=True)
class Setbase(Instruction):
    """Set DRAM base register ``reg`` (resolved by the dispatcher, in program order)."""

    OPCODE: ClassVar[Opcode] = Opcode.SETBASE
    UNIT: ClassVar[Unit] = Unit.DISPATCH

    reg: int = _u(2, "base register index 0..3")
    value: int = _u(64, "byte address written to the base register")


@dataclass(frozen=True)
class Dmacfg(Instruction):
    """Set DMA geometry slot ``slot`` of the load unit (the 2-D image walked by LOAD)."""

    OPCODE: ClassVar[Opcode] = Opcode.DMACFG
    UNIT: ClassVar[Unit] = Unit.LOAD

    slot: int = _u(2, "geometry slot 0..3")
    height: int = _u(14, "image height H in pixels; rows with y outside 0..H-1 read as zero")
    width: int = _u(14, "image width W in pixels; pixels with x outside 0..W-1 read as zero")
    pitch: int = _u(32, "bytes between consecutive image rows (y)")
    pix: int = _u(16, "bytes between consecutive pixels (x); also the padding-test unit", minimum=1)
    sy: int = _u(6, "y step per outer iteration")
    sx: int = _u(6, "x step per inner iteration")


@dataclass(frozen=True)
class Load(Instruction):
    """DMA from DRAM into scratchpad or accumulator rows along a padded, strided 2-D walk."""

    OPCODE: ClassVar[Opcode] = Opcode.LOAD
    UNIT: ClassVar[Unit] = Unit.LOAD

    mem: MemSpace = _e(MemSpace, "destination memory: SPAD (int8 rows) or ACC (int32 rows)")
    geom: int = _u(2, "DMA geometry slot")
    base: int = _u(2, "DRAM base register")
    offset: int = _u(32, "byte offset added to the base register")
    dst: int = _u(20, "first destination row")
    outer: int = _u(12, "outer iteration count (y direction)", minimum=1)
    inner: int = _u(12, "inner iteration count (x direction)", minimum=1)
    y0: int = _s(14, "y coordinate of the first row (negative: top padding)")
    x0: int = _s(14, "x coordinate of the first row (negative: left padding)")
    length: int = _u(7, "elements per row (bytes for SPAD, int32 for ACC)", minimum=1)


@dataclass(frozen=True)
class Loadt(Instruction):
    """DMA ``count`` consecutive table records from DRAM into the bias/scale or PWL SRAM."""

    OPCODE: ClassVar[Opcode] = Opcode.LOADT
    UNIT: ClassVar[Unit] = Unit.LOAD

    kind: TableKind = _e(TableKind, "BIAS: 8-byte bias/scale entries; PWL: segment tables")
    dst: int = _u(16, "first destination entry (BIAS) or function index (PWL)")
    count: int = _u(16, "number of entries or tables", minimum=1)
    base: int = _u(2, "DRAM base register")
    offset: int = _u(32, "byte offset added to the base register")


@dataclass(frozen=True)
class Gemm(Instruction):
    """``n_tiles`` x ``k_tiles`` weight-stationary GEMM blocks over ``m`` operand rows."""

    OPCODE: ClassVar[Opcode] = Opcode.GEMM
    UNIT: ClassVar[Unit] = Unit.COMPUTE

    mode: GemmMode = _e(
        GemmMode,
        "OVERWRITE, ACCUMULATE, BIAS (bias + product) or ACCUMULATE_BIAS (acc + bias + product)",
    )
    transpose: bool = field(
        default=False,
        metadata={"bits": 1, "kind": "bool", "min": 0, "doc": "weight blocks stored transposed"},
    )
    w: int = _u(20, "scratchpad row of the first weight block")
    a: int = _u(20, "scratchpad row of the first operand row")
    acc: int = _u(18, "first accumulator row")
    m: int = _u(12, "operand rows streamed per block", minimum=1)
    k_tiles: int = _u(12, "reduction blocks accumulated (K = k_tiles * rows)", minimum=1)
    n_tiles: int = _u(12, "output column blocks (N = n_tiles * cols)", minimum=1)
    bias: int = _u(16, "first bias entry (modes BIAS and ACCUMULATE_BIAS)")


@dataclass(frozen=True)
class Epi(Instruction):
    """Epilogue: requantise accumulator rows, apply a PWL function, write int8/int32/scale."""

    OPCODE: ClassVar[Opcode] = Opcode.EPI
    UNIT: ClassVar[Unit] = Unit.COMPUTE

    src: int = _u(18, "first accumulator row read")
    dst: int = _u(20, "first destination row (SPAD/ACC) or bias entry (SCALE)")
    dest: EpiDest = _e(EpiDest, "SPAD (int8), ACC (int32) or SCALE (int16 multipliers)")
    scale_mode: ScaleMode = _e(ScaleMode, "COL: multiplier per output column; ROW: per row")
    scale: int = _u(16, "first bias/scale entry holding the multipliers and shifts")
    fn: int = _u(6, "PWL function index")
    m: int = _u(12, "rows per tile", minimum=1)
    n_tiles: int = _u(12, "column tiles (tile u uses rows src + u*m ...)", minimum=1)
    col: int = _u(6, "column written to the scale SRAM (dest SCALE)")
    out_shift: int = _u(6, "shift stored with each multiplier (dest SCALE), 0..47")


@dataclass(frozen=True)
class Store(Instruction):
    """DMA scratchpad or accumulator rows to DRAM (row-strided, tile after tile)."""

    OPCODE: ClassVar[Opcode] = Opcode.STORE
    UNIT: ClassVar[Unit] = Unit.STORE

    mem: MemSpace = _e(MemSpace, "source memory: SPAD (int8) or ACC (int32)")
    src: int = _u(20, "first source row")
    rows: int = _u(12, "rows per tile", minimum=1)
    tiles: int = _u(12, "tiles; tile u reads rows src + u*rows ...", minimum=1)
    base: int = _u(2, "DRAM base register")
    offset: int = _u(32, "byte offset added to the base register")
    stride: int = _u(24, "DRAM bytes between consecutive rows")
    length: int = _u(7, "elements per row (bytes for SPAD, int32 for ACC)", minimum=1)


@dataclass(frozen=True)
class Sync(Instruction):
    """No operation on unit ``target``; only its dependency tokens act (relays ordering)."""

    OPCODE: ClassVar[Opcode] = Opcode.SYNC
    UNIT: ClassVar[Unit] = Unit.COMPUTE

    target: SyncTarget = _e(SyncTarget, "unit whose queue runs the SYNC: LOAD, COMPUTE or STORE")

    @property
    def unit(self) -> Unit:
        """The unit named by ``target``."""
        return Unit(self.target.value)


#: Opcode -> instruction dataclass.
INSTRUCTION_CLASSES: dict[Opcode, type[Instruction]] = {
    cls.OPCODE: cls for cls in (Halt, Setbase, Dmacfg, Load, Loadt, Gemm, Epi, Store, Sync)
}

#: Which dependency flags each unit may set (the others must be zero).
ALLOWED_DEPS: dict[Unit, frozenset[str]] = {
    Unit.DISPATCH: frozenset(),
    Unit.LOAD: frozenset({"pop_next", "push_next"}),
    Unit.COMPUTE: frozenset(DEP_FLAGS),
    Unit.STORE: frozenset({"pop_prev", "push_prev"}),
}


#: Token queues between units: load->compute, compute->load, compute->store, store->compute.
TOKEN_QUEUES = ("l2c", "c2l", "c2s", "s2c")
#: (unit, flag) -> token queue the flag pops (waits on) before the instruction starts.
TOKEN_POPS: dict[tuple[Unit, str], str] = {
    (Unit.LOAD, "pop_next"): "c2l",
    (Unit.COMPUTE, "pop_prev"): "l2c",
    (Unit.COMPUTE, "pop_next"): "s2c",
    (Unit.STORE, "pop_prev"): "c2s",
}
#: (unit, flag) -> token queue the flag pushes to when the instruction completes.
TOKEN_PUSHES: dict[tuple[Unit, str], str] = {
    (Unit.LOAD, "push_next"): "l2c",
    (Unit.COMPUTE, "push_prev"): "c2l",
    (Unit.COMPUTE, "push_next"): "c2s",
    (Unit.STORE, "push_prev"): "s2c",
}


def _build_specs(cls: type[Instruction]) -> tuple[FieldSpec, ...]:
    specs = []
    offset = HEADER_BITS
    for f in fields(cls):
        if f.name in DEP_FLAGS:
            continue
        md = f.metadata
        specs.append(
            FieldSpec(
                name=f.name,
                offset=offset,
                bits=md["bits"],
                kind=md["kind"],
                enum=md.get("enum"),
                minimum=md["min"],
                doc=md["doc"],
            )
        )
        offset += md["bits"]
    if offset > WORD_BITS:
        raise AssertionError(f"{cls.__name__} needs {offset} bits, more than {WORD_BITS}")
    return tuple(specs)


_SPECS: dict[Opcode, tuple[FieldSpec, ...]] = {
    op: _build_specs(cls) for op, cls in INSTRUCTION_CLASSES.items()
}


def field_specs(opcode: Opcode) -> tuple[FieldSpec, ...]:
    """Encodings of ``opcode``'s fields, in bit order (the header is not included)."""
    return _SPECS[opcode]


def _amaranth_shape(spec: FieldSpec):
    if spec.kind == "enum":
        return spec.enum
    if spec.kind == "s":
        return signed(spec.bits)
    return unsigned(spec.bits)


#: Header of every word: opcode and dependency flags (bits 0..7).
HEADER_LAYOUT = data.StructLayout(
    {"opcode": Opcode, "pop_prev": 1, "pop_next": 1, "push_prev": 1, "push_next": 1}
)


def body_layout(opcode: Opcode) -> data.StructLayout:
    """``lib.data`` layout of bits ``[127:8]`` of an ``opcode`` word (reserved bits included)."""
    members = {s.name: _amaranth_shape(s) for s in _SPECS[opcode]}
    used = sum(s.bits for s in _SPECS[opcode])
    if used < BODY_BITS:
        members["reserved"] = unsigned(BODY_BITS - used)
    return data.StructLayout(members)


#: The whole 128-bit word: header plus a union of every opcode's body (named by mnemonic).
WORD_LAYOUT = data.StructLayout(
    {
        "header": HEADER_LAYOUT,
        "body": data.UnionLayout({op.name.lower(): body_layout(op) for op in Opcode}),
    }
)


def _raw(spec: FieldSpec, value) -> int:
    if spec.kind == "enum":
        if not isinstance(value, spec.enum):
            raise IsaError(f"expected a {spec.enum.__name__}, got {value!r}", field=spec.name)
        return value.value
    if spec.kind == "bool":
        if not isinstance(value, (bool, int)) or int(value) not in (0, 1):
            raise IsaError(f"expected a boolean, got {value!r}", field=spec.name)
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise IsaError(f"expected an integer, got {value!r}", field=spec.name)
    lo, hi = spec.value_range
    if not lo <= value <= hi:
        raise IsaError(f"value {value} outside {lo}..{hi}", field=spec.name)
    return value & ((1 << spec.bits) - 1)


def encode(instr: Instruction) -> int:
    """Encode ``instr`` as a 128-bit unsigned integer; an out-of-range field raises IsaError."""
    if not isinstance(instr, Instruction) or type(instr) not in INSTRUCTION_CLASSES.values():
        raise IsaError(f"not an instruction: {instr!r}")
    word = instr.OPCODE.value
    for spec in _SPECS[instr.OPCODE]:
        word |= _raw(spec, getattr(instr, spec.name)) << spec.offset
    allowed = ALLOWED_DEPS[instr.unit]
    for i, name in enumerate(DEP_FLAGS):
        flag = getattr(instr, name)
        if flag not in (True, False, 0, 1):
            raise IsaError(f"expected a boolean, got {flag!r}", field=name)
        if flag and name not in allowed:
            raise IsaError(
                f"{instr.OPCODE.name} runs on the {instr.unit.name} unit, which allows only "
                f"{sorted(allowed) or 'no'} dependency flags",
                field=name,
            )
        word |= int(bool(flag)) << (4 + i)
    return word


def decode(word: int, *, offset: int | None = None) -> Instruction:
    """Decode a 128-bit word; illegal opcodes, enum values, flags or reserved bits raise IsaError.

    ``offset`` (the word's index in its program) is quoted in the error message.
    """
    if not 0 <= word < (1 << WORD_BITS):
        raise IsaError(f"not a {WORD_BITS}-bit word: {word!r}", word=offset)
    raw_op = word & 0xF
    try:
        opcode = Opcode(raw_op)
    except ValueError:
        raise IsaError(
            f"illegal opcode {raw_op}; legal: "
            + ", ".join(f"{op.value}={op.name}" for op in Opcode),
            word=offset,
            field="opcode",
        ) from None
    cls = INSTRUCTION_CLASSES[opcode]
    kwargs: dict[str, object] = {}
    end = HEADER_BITS
    for spec in _SPECS[opcode]:
        raw = (word >> spec.offset) & ((1 << spec.bits) - 1)
        end = spec.offset + spec.bits
        if spec.kind == "enum":
            try:
                kwargs[spec.name] = spec.enum(raw)
            except ValueError:
                raise IsaError(
                    f"illegal {spec.enum.__name__} value {raw}; legal: "
                    + ", ".join(f"{e.value}={e.name}" for e in spec.enum),
                    word=offset,
                    field=spec.name,
                ) from None
        elif spec.kind == "bool":
            kwargs[spec.name] = bool(raw)
        elif spec.kind == "s":
            kwargs[spec.name] = raw - (1 << spec.bits) if raw >> (spec.bits - 1) else raw
        else:
            if raw < spec.minimum:
                raise IsaError(
                    f"value {raw} below the minimum {spec.minimum}", word=offset, field=spec.name
                )
            kwargs[spec.name] = raw
    if word >> end:
        raise IsaError(
            f"reserved bits {WORD_BITS - 1}..{end} of {opcode.name} must be zero",
            word=offset,
            field="reserved",
        )
    for i, name in enumerate(DEP_FLAGS):
        kwargs[name] = bool((word >> (4 + i)) & 1)
    ins = cls(**kwargs)
    allowed = ALLOWED_DEPS[ins.unit]
    for name in DEP_FLAGS:
        if kwargs[name] and name not in allowed:
            raise IsaError(
                f"{opcode.name} runs on the {ins.unit.name} unit, which allows only "
                f"{sorted(allowed) or 'no'} dependency flags",
                word=offset,
                field=name,
            )
    return ins


def _first_cut_field(first_byte: int, bits_present: int) -> str:
    """The first field of a word cut after ``bits_present`` bits (opcode from the first byte)."""
    try:
        opcode = Opcode(first_byte & 0xF)
    except ValueError:
        return "opcode"
    for spec in _SPECS[opcode]:
        if spec.offset + spec.bits > bits_present:
            return spec.name
    return "reserved"


#: First four bytes of a program file.
PROGRAM_MAGIC = b"NMXP"
#: The version written. 3: GemmMode 3 (ACCUMULATE_BIAS) is legal; 2 added the config stamp.
PROGRAM_VERSION = 3
#: Versions read: a version 2 file's words mean the same in version 3 (3 only adds a mode);
#: version 1 files (no config stamp) are rejected.
READABLE_VERSIONS = (2, 3)
# magic, version, header words, instruction count, rows, cols, config fingerprint, reserved
_HEADER = struct.Struct("<4sHHIHH10s6s")
#: Bytes of the program file header (two 16-byte words).
PROGRAM_HEADER_BYTES = _HEADER.size
_HEADER_WORDS = PROGRAM_HEADER_BYTES // WORD_BYTES


@dataclass(frozen=True)
class ProgramHeader:
    """The parsed header of a program file: instruction count and the config it was built for."""

    count: int
    stamp: ConfigStamp


@dataclass(frozen=True)
class Program:
    """A sequence of instructions and its file form.

    File form (little-endian): a 32-byte header (``b"NMXP"``, version u16 = 3, header words
    u16 = 2, instruction count u32, the config's ``rows`` u16 and ``cols`` u16, its 10-character
    fingerprint in ASCII, 6 reserved zero bytes) followed by one 16-byte word per instruction.
    Instruction memory holds the words only; word offsets count from the first instruction.
    Reading a file for a config other than the one in its header raises
    :class:`~hw.config.ConfigMismatchError` naming both fingerprints.
    """

    instructions: tuple[Instruction, ...]

    def __init__(self, instructions: Iterable[Instruction]):
        object.__setattr__(self, "instructions", tuple(instructions))

    def __len__(self) -> int:
        return len(self.instructions)

    def words(self) -> list[int]:
        """Encoded words; an invalid instruction raises IsaError naming its word offset.

        The words are computed once per program (a Program and its instructions are immutable)
        and, within a program, once per distinct instruction. Instructions count as the same only
        if they have the same class and every field has the same type and value: ``Gemm(m=True)``
        equals ``Gemm(m=1)`` but is rejected (a bool is not an integer) wherever it stands.
        """
        words = self.__dict__.get("_words")
        if words is None:
            words = self._encode()
            object.__setattr__(self, "_words", words)  # a cache, not a field: eq/repr ignore it
        return list(words)

    def _encode(self) -> tuple[int, ...]:
        seen: dict[tuple, int] = {}
        out = []
        for i, ins in enumerate(self.instructions):
            values = tuple(getattr(ins, "__dict__", {}).values())
            key: tuple | None = (type(ins), values, tuple(map(type, values)))
            try:
                word = seen.get(key)
            except TypeError:  # an unhashable field value; encode() says what is wrong with it
                key = word = None
            if word is None:
                try:
                    word = encode(ins)
                except IsaError as e:
                    raise IsaError(e.detail, word=i, field=e.field) from None
                if key is not None:
                    seen[key] = word
            out.append(word)
        return tuple(out)

    def to_bytes(self, config: AcceleratorConfig) -> bytes:
        """The program file for ``config``: header (with the config's stamp) plus words."""
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
        body = b"".join(w.to_bytes(WORD_BYTES, "little") for w in self.words())
        header = _HEADER.pack(
            PROGRAM_MAGIC,
            PROGRAM_VERSION,
            _HEADER_WORDS,
            len(self.instructions),
            config.rows,
            config.cols,
            config.fingerprint.encode("ascii"),
            bytes(6),
        )
        return header + body

    @staticmethod
    def read_header(blob: bytes) -> ProgramHeader:
        """Parse and check a program file's header (not its words)."""
        if len(blob) < 4 or blob[:4] != PROGRAM_MAGIC:
            raise IsaError(f"not a program file: magic {bytes(blob[:4])!r}, expected "
                           f"{PROGRAM_MAGIC!r}")
        if len(blob) >= 6:
            (version,) = struct.unpack_from("<H", blob, 4)
            if version not in READABLE_VERSIONS:
                raise IsaError(
                    f"unsupported program file version {version} (supported: "
                    f"{', '.join(map(str, READABLE_VERSIONS))}; version 1 files carry no config "
                    "fingerprint: assemble the source again)"
                )
        if len(blob) < _HEADER.size:
            raise IsaError(
                f"program file is {len(blob)} bytes, shorter than its {_HEADER.size}-byte header"
            )
        _, _, header_words, count, rows, cols, fp, reserved = _HEADER.unpack_from(blob)
        if header_words != _HEADER_WORDS or any(reserved):
            raise IsaError(
                f"unsupported program header: header words {header_words}, reserved bytes "
                f"{reserved.hex()} (supported: {_HEADER_WORDS}, all zero)"
            )
        try:
            stamp = ConfigStamp(fp.decode("ascii"), rows, cols)
        except (UnicodeDecodeError, ConfigError) as e:
            raise IsaError(f"program header holds an invalid config stamp: {e}") from None
        return ProgramHeader(count, stamp)

    @staticmethod
    def split_words(
        blob: bytes, config: AcceleratorConfig | None = None, *, source: str = "program file"
    ) -> list[int]:
        """Check a program file's header and return its raw words (not decoded).

        With ``config``, a file built for another config raises
        :class:`~hw.config.ConfigMismatchError` (``source`` names the file in the message).
        """
        header = Program.read_header(blob)
        if config is not None:
            header.stamp.check(config, source)
        count = header.count
        body = blob[_HEADER.size :]
        whole, rest = divmod(len(body), WORD_BYTES)
        if rest:
            raise IsaError(
                f"truncated: {rest} of {WORD_BYTES} bytes present",
                word=whole,
                field=_first_cut_field(body[whole * WORD_BYTES], rest * 8),
            )
        if whole != count:
            raise IsaError(
                f"header announces {count} instructions but the file holds {whole}",
                word=min(whole, count),
            )
        return [
            int.from_bytes(body[i * WORD_BYTES : (i + 1) * WORD_BYTES], "little")
            for i in range(whole)
        ]

    @classmethod
    def from_words(cls, words: Sequence[int]) -> Program:
        """Decode raw words; the first malformed one raises IsaError with its offset."""
        return cls(decode(w, offset=i) for i, w in enumerate(words))

    @classmethod
    def from_bytes(
        cls, blob: bytes, config: AcceleratorConfig | None = None, *, source: str = "program file"
    ) -> Program:
        """Parse a program file (see the class docstring).

        With ``config``, a file built for another config raises
        :class:`~hw.config.ConfigMismatchError`; without, the header's stamp is checked for form
        only (for inspection, e.g. disassembly; :meth:`read_header` returns it).
        """
        return cls.from_words(cls.split_words(blob, config, source=source))


# --- Table memory formats (what LOADT reads from DRAM) -------------------------------------------

#: Bytes of one bias/scale entry in DRAM: bias int32, multiplier int16, shift u8, reserved u8 (0).
BIAS_ENTRY_BYTES = 8
#: Bytes of a PWL table's header in DRAM: shift u8, then 15 reserved bytes (0).
PWL_HEADER_BYTES = 16


def pwl_table_bytes(segments: int) -> int:
    """DRAM bytes of one PWL table of ``segments`` segments (the config's ``pwl_segments``).

    Layout: 16-byte header (shift u8, 15 zero bytes), ``segments - 1`` breakpoints int32,
    ``segments`` slopes int16, ``segments`` intercepts int32; little-endian, packed.
    """
    return PWL_HEADER_BYTES + 4 * (segments - 1) + 2 * segments + 4 * segments


def encode_bias_entries(bias, multiplier, shift) -> bytes:
    """Pack equal-length sequences into bias/scale SRAM entries (the LOADT BIAS format)."""
    b = np.asarray(bias, dtype=np.int64).ravel()
    m = np.asarray(multiplier, dtype=np.int64).ravel()
    s = np.asarray(shift, dtype=np.int64).ravel()
    if not b.size == m.size == s.size:
        raise IsaError(f"bias/multiplier/shift lengths differ: {b.size}, {m.size}, {s.size}")
    for name, v, (lo, hi) in (
        ("bias", b, int_range(ACC_BITS)),
        ("multiplier", m, int_range(SCALE_BITS)),
        ("shift", s, (0, MAX_SHIFT)),
    ):
        if v.size and (v.min() < lo or v.max() > hi):
            raise IsaError(f"{name} values outside {lo}..{hi}", field=name)
    rec = np.zeros(b.size, dtype=[("b", "<i4"), ("m", "<i2"), ("s", "u1"), ("r", "u1")])
    rec["b"], rec["m"], rec["s"] = b, m, s
    return rec.tobytes()


def encode_pwl_table(table: PwlTable, segments: int) -> bytes:
    """Pack a :class:`hw.numeric.PwlTable` into the LOADT PWL format with ``segments`` segments.

    A table with fewer segments is padded by repeating its last segment behind breakpoints equal
    to the int32 maximum, which selects the same (slope, intercept) for every input: the padded
    table computes exactly the same function.
    """
    n = table.segments
    if n > segments:
        raise IsaError(f"PWL table has {n} segments; the SRAM holds {segments} per function")
    pad = segments - n
    bp = list(table.breakpoints) + [(1 << 31) - 1] * pad
    k = list(table.slopes) + [table.slopes[-1]] * pad
    b = list(table.intercepts) + [table.intercepts[-1]] * pad
    header = bytes([table.shift]) + bytes(PWL_HEADER_BYTES - 1)
    return (
        header
        + np.asarray(bp, dtype="<i4").tobytes()
        + np.asarray(k, dtype="<i2").tobytes()
        + np.asarray(b, dtype="<i4").tobytes()
    )
