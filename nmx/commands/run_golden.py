"""``nmx run-golden PROGRAM --dram IMAGE``: run a program on the golden model and cycle model."""

from __future__ import annotations

import io
import time
import zipfile

import numpy as np

from hw.assembler import assemble_file
from hw.errors import NmxError
from hw.isa import Program
from nmx import files
from nmx.commands.rtl import add_config_arguments, config_from_args
from sim.cycle_model import estimate_cycles
from sim.dram_image import DramImage
from sim.golden import ExecutionError, GoldenModel


def add_arguments(parser) -> None:
    """Register the command's arguments."""
    parser.add_argument("program", help="program binary (or .nmasm text, assembled first)")
    parser.add_argument("--dram", required=True, help="DRAM image file (sim/dram_image.py)")
    add_config_arguments(parser)
    parser.add_argument("-o", "--output", help="write the final DRAM image here")
    parser.add_argument(
        "--timeline",
        type=int,
        default=0,
        metavar="N",
        help="print dispatch/start/finish cycles of the first N executed instructions",
    )
    parser.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="REGION=FILE.npy|FILE.npz:KEY",
        help="check a region of the final image against a NumPy array, bit for bit (repeatable)",
    )
    parser.add_argument(
        "--show",
        action="append",
        default=[],
        metavar="REGION[:DTYPE[:COLS]]",
        help="print a region of the final image, e.g. probs:int8:16 (repeatable)",
    )


def _load_program(path: str, cfg) -> Program:
    if path.endswith(".nmasm"):
        return assemble_file(path)
    blob = files.read_bytes(path, "program")
    return Program.from_bytes(blob, cfg, source=f"program file {path!r}")


def _show(image: DramImage, spec: str) -> None:
    name, dt, arr = _shown(image, spec)
    with np.printoptions(linewidth=120, threshold=4096):
        print(f"{name} ({dt}):\n{arr}")


def _shown(image: DramImage, spec: str):
    """``(region, dtype, array)`` of a ``--show`` spec (checks it against ``image``)."""
    name, _, rest = spec.partition(":")
    dtype, _, cols = rest.partition(":")
    try:
        dt = np.dtype(dtype or "uint8")
    except TypeError:
        raise NmxError(f"--show {spec!r}: unknown dtype {dtype!r}") from None
    if cols:
        try:
            ncols = int(cols)
        except ValueError:
            raise NmxError(f"--show {spec!r}: COLS {cols!r} is not an integer") from None
        if ncols < 1:
            raise NmxError(f"--show {spec!r}: COLS must be >= 1, got {ncols}")
        arr = image.read(name, dt)
        if arr.size % ncols:
            raise NmxError(
                f"--show {spec!r}: region {name!r} holds {arr.size} {dt} values, not a multiple "
                f"of {ncols} columns"
            )
        arr = arr.reshape(-1, ncols)
    else:
        arr = image.read(name, dt)
    return name, dt, arr


def _load_expected(spec: str, path: str) -> np.ndarray:
    file, colon, key = path.rpartition(":")
    if not (colon and file.endswith(".npz")):
        file, key = path, ""
    blob = files.read_bytes(file, f"--expect {spec!r}: file")
    if not blob.startswith((b"\x93NUMPY", b"PK\x03\x04")):
        raise NmxError(f"--expect {spec!r}: {file!r} is not a NumPy .npy/.npz file")
    try:
        loaded = np.load(io.BytesIO(blob), allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile) as e:
        raise NmxError(f"--expect {spec!r}: {file!r} is not a NumPy .npy/.npz file: {e}") from None
    if isinstance(loaded, np.ndarray):
        if key:
            raise NmxError(f"--expect {spec!r}: {file!r} is a single array, not an .npz archive")
        return loaded
    with loaded:
        keys = sorted(loaded.files)
        if not key:
            raise NmxError(
                f"--expect {spec!r}: {file!r} is an .npz archive; name the array as "
                f"{file}:KEY, one of {keys}"
            )
        if key not in keys:
            raise NmxError(f"--expect {spec!r}: {file!r} has no array {key!r}; arrays: {keys}")
        return loaded[key]


def _expect(image: DramImage, spec: str, *, compare: bool = True) -> str:
    name, sep, path = spec.partition("=")
    if not sep:
        raise NmxError(f"--expect {spec!r}: expected REGION=FILE.npy or REGION=FILE.npz:KEY")
    want = _load_expected(spec, path)
    if want.dtype.kind not in "iub":
        raise NmxError(
            f"--expect {spec!r}: {path!r} holds {want.dtype} values; a bit-exact check needs "
            "integers"
        )
    got = image.read(name, want.dtype)
    if got.size != want.size:
        raise NmxError(
            f"--expect {name}: region holds {got.size} {want.dtype} values, {path} {want.size}"
        )
    if not compare:
        return ""
    bad = np.flatnonzero(got != want.ravel())
    if bad.size:
        i = int(bad[0])
        raise NmxError(
            f"--expect {name}: {bad.size} of {want.size} values differ from {path} "
            f"(first at index {i}: {got[i]} != {want.ravel()[i]})"
        )
    return f"{name} matches {path} ({want.size} values)"


def run(args) -> int:
    """Run the program and print status, counts and the cycle-model summary."""
    cfg = config_from_args(args)
    program = _load_program(args.program, cfg)
    image = DramImage.load(args.dram)
    image.check_config(cfg, f"DRAM image {args.dram!r}")
    # every --show / --expect is checked against the input image (same regions and sizes)
    # before the run, so a typo costs no run
    for spec in args.show:
        _shown(image, spec)
    for spec in args.expect:
        _expect(image, spec, compare=False)
    model = GoldenModel(cfg)
    t0 = time.perf_counter()
    result = model.run(program, image)
    elapsed = time.perf_counter() - t0
    print(f"config            {args.config} ({cfg.rows}x{cfg.cols}, {cfg.fingerprint})")
    if not result.ok:
        # no summary of a partial run: the one-line error (stderr, exit 2) is the result
        print(f"status            FAILED: {result.status}")
        print(f"instructions      {len(result.trace)} executed before the failure")
        raise ExecutionError(result.status)
    print(f"status            {result.status}")
    print(f"instructions      {len(result.trace)} executed of {len(program)}")
    macs = result.macs
    rate = f"{macs / elapsed / 1e6:.1f} M MAC/s" if elapsed > 0 else "too fast to time"
    print(f"golden model      {elapsed * 1e3:.2f} ms, {rate}")
    report = estimate_cycles(result.trace, cfg)
    print(report.summary())
    if args.timeline:
        print(report.format_timeline(args.timeline))
    if args.output:
        result.dram.save(args.output)
        print(f"final DRAM image  -> {args.output}")
    for spec in args.show:
        _show(result.dram, spec)
    for spec in args.expect:
        print(_expect(result.dram, spec))
    return 0
