"""Program files and DRAM images carry the config they were built for; a mismatch is an error."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from hw.config import ConfigMismatchError, preset
from hw.isa import PROGRAM_HEADER_BYTES, Dmacfg, Halt, IsaError, Program
from sim.dram_image import DramImage, DramImageError
from sim.golden import GoldenModel

TINY, DEFAULT = preset("tiny"), preset("default")
PROG = Program([Dmacfg(slot=1, height=3), Halt()])


def test_program_header_layout_and_roundtrip():
    blob = PROG.to_bytes(TINY)
    assert len(blob) == PROGRAM_HEADER_BYTES + 2 * 16 and PROGRAM_HEADER_BYTES == 32
    magic, version, words, count, rows, cols = struct.unpack_from("<4sHHIHH", blob)
    assert (magic, version, words, count, rows, cols) == (b"NMXP", 3, 2, 2, 4, 4)
    assert blob[16:26] == TINY.fingerprint.encode() and blob[26:32] == bytes(6)
    header = Program.read_header(blob)
    assert header.count == 2 and header.stamp == TINY.stamp
    assert Program.from_bytes(blob, TINY) == PROG == Program.from_bytes(blob)
    assert GoldenModel(TINY).run(blob, DramImage.zeros(16)).ok


def test_version_2_files_still_load():
    """Version 3 only made GemmMode 3 legal: a version 2 file's words mean the same."""
    blob = bytearray(PROG.to_bytes(TINY))
    blob[4:6] = (2).to_bytes(2, "little")
    assert Program.from_bytes(bytes(blob), TINY) == PROG


def test_program_for_another_config_is_rejected():
    blob = PROG.to_bytes(TINY)
    for call in (lambda: Program.from_bytes(blob, DEFAULT, source="program file 'p.bin'"),
                 lambda: GoldenModel(DEFAULT).run(blob, DramImage.zeros(16))):
        with pytest.raises(ConfigMismatchError) as e:
            call()
        assert TINY.fingerprint in str(e.value) and DEFAULT.fingerprint in str(e.value)
        assert "(4x4)" in str(e.value) and "(16x16)" in str(e.value)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ((4, b"\x01\x00"), "version 1 files carry no config fingerprint"),
        ((6, b"\x01\x00"), "unsupported program header: header words 1"),
        ((30, b"\x01"), "reserved bytes"),
        ((16, b"XYZ"), "invalid config stamp"),
        ((12, b"\x00\x00"), "invalid config stamp"),
    ],
)
def test_malformed_program_header(patch, message):
    blob = bytearray(PROG.to_bytes(TINY))
    at, data = patch
    blob[at : at + len(data)] = data
    with pytest.raises(IsaError, match=message):
        Program.from_bytes(bytes(blob))


def test_to_bytes_needs_a_config():
    with pytest.raises(TypeError, match="config must be an AcceleratorConfig"):
        PROG.to_bytes("tiny")  # type: ignore[arg-type]


def test_dram_image_stamp_roundtrip_and_mismatch(tmp_path):
    img = DramImage.zeros(64, TINY)
    img.add("x", 8, np.arange(4, dtype=np.int32))
    path = tmp_path / "a.dram"
    img.save(path)
    back = DramImage.load(path)
    assert back.stamp == TINY.stamp and back.copy().stamp == TINY.stamp
    np.testing.assert_array_equal(back.read("x", np.int32), np.arange(4))
    assert GoldenModel(TINY).run(PROG, back).dram.stamp == TINY.stamp
    with pytest.raises(ConfigMismatchError, match=f"DRAM image was built for config "
                                                  f"{TINY.fingerprint}"):
        GoldenModel(DEFAULT).run(PROG, back)
    with pytest.raises(DramImageError, match="no config stamp"):
        DramImage.zeros(64).save(tmp_path / "b.dram")
    blob = bytearray(path.read_bytes())
    blob[24:34] = b"not-a-hash"
    with pytest.raises(DramImageError, match="invalid config stamp"):
        DramImage.from_bytes(bytes(blob))


def test_dram_image_read_errors_are_dram_image_errors():
    img = DramImage.zeros(64, TINY)
    img.add("x", 0, bytes(6))
    with pytest.raises(DramImageError, match="not a whole number of 4-byte"):
        img.read("x", np.int32)
    with pytest.raises(DramImageError, match="do not form shape"):
        img.read("x", np.int8, (4, 4))
