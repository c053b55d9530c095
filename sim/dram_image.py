"""DRAM image files: the memory a program runs on, with named regions.

File format (all integers little-endian)::

    header   8 bytes  magic b"NMXDRAM1"
             u64      size: DRAM bytes in the image
             u32      n: number of named regions
             u32      reserved, 0
    n times  u64      region address
             u64      region length in bytes
             u16      name length L, then L bytes of UTF-8 name
    size bytes        the DRAM contents, address 0 first

Regions are labels only (inputs, weights, tables, outputs); they must lie inside the image, have
unique names, and may not overlap. Any deviation raises :class:`DramImageError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hw.errors import NmxError

__all__ = ["DRAM_MAGIC", "DramImage", "DramImageError", "Region"]

DRAM_MAGIC = b"NMXDRAM1"
_HEADER = struct.Struct("<8sQII")
_REGION = struct.Struct("<QQH")


class DramImageError(NmxError, ValueError):
    """A malformed DRAM image or an invalid region."""


@dataclass(frozen=True)
class Region:
    """A named byte range of the image."""

    name: str
    addr: int
    length: int

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.addr + self.length


@dataclass
class DramImage:
    """A byte-addressed DRAM image (``data``, uint8) plus named regions."""

    data: np.ndarray
    regions: dict[str, Region] = field(default_factory=dict)

    @classmethod
    def zeros(cls, size: int) -> DramImage:
        """An all-zero image of ``size`` bytes."""
        if size <= 0:
            raise DramImageError(f"DRAM size must be positive, got {size}")
        return cls(np.zeros(size, dtype=np.uint8))

    @property
    def size(self) -> int:
        """Bytes in the image."""
        return int(self.data.size)

    def add(self, name: str, addr: int, content) -> Region:
        """Write ``content`` (bytes or an array, stored little-endian) at ``addr`` as ``name``."""
        raw = np.frombuffer(_as_bytes(content), dtype=np.uint8)
        region = Region(name, int(addr), int(raw.size))
        self._check(region)
        self.data[region.addr : region.end] = raw
        self.regions[name] = region
        return region

    def reserve(self, name: str, addr: int, length: int) -> Region:
        """Label ``length`` bytes at ``addr`` (e.g. an output buffer) without writing them."""
        region = Region(name, int(addr), int(length))
        self._check(region)
        self.regions[name] = region
        return region

    def _check(self, region: Region) -> None:
        if not region.name or len(region.name.encode()) > 0xFFFF:
            raise DramImageError(f"region name {region.name!r} must be 1..65535 UTF-8 bytes")
        if region.name in self.regions:
            raise DramImageError(f"region {region.name!r} defined twice")
        if region.addr < 0 or region.length < 0 or region.end > self.size:
            raise DramImageError(
                f"region {region.name!r} [{region.addr:#x}, {region.end:#x}) lies outside the "
                f"{self.size}-byte image"
            )
        for other in self.regions.values():
            if (
                region.addr < other.end
                and other.addr < region.end
                and region.length
                and other.length
            ):
                raise DramImageError(
                    f"region {region.name!r} [{region.addr:#x}, {region.end:#x}) overlaps "
                    f"{other.name!r} [{other.addr:#x}, {other.end:#x})"
                )

    def read(self, name: str, dtype=np.uint8, shape=None) -> np.ndarray:
        """Contents of region ``name`` as ``dtype`` (little-endian), optionally reshaped."""
        if name not in self.regions:
            raise DramImageError(f"no region {name!r}; regions: {sorted(self.regions)}")
        r = self.regions[name]
        arr = self.data[r.addr : r.end].view(np.dtype(dtype).newbyteorder("<")).copy()
        return arr.reshape(shape) if shape is not None else arr

    def copy(self) -> DramImage:
        """A deep copy."""
        return DramImage(self.data.copy(), dict(self.regions))

    def to_bytes(self) -> bytes:
        """The file form (see the module docstring)."""
        parts = [_HEADER.pack(DRAM_MAGIC, self.size, len(self.regions), 0)]
        for r in self.regions.values():
            name = r.name.encode()
            parts.append(_REGION.pack(r.addr, r.length, len(name)) + name)
        parts.append(self.data.tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, blob: bytes, *, source: str = "DRAM image") -> DramImage:
        """Parse the file form; any inconsistency raises DramImageError naming ``source``."""
        if len(blob) < _HEADER.size:
            raise DramImageError(f"{source}: {len(blob)} bytes, shorter than the header")
        magic, size, n, reserved = _HEADER.unpack_from(blob)
        if magic != DRAM_MAGIC:
            raise DramImageError(f"{source}: bad magic {magic!r}, expected {DRAM_MAGIC!r}")
        if reserved != 0 or size == 0:
            raise DramImageError(f"{source}: invalid header (size {size}, reserved {reserved})")
        pos = _HEADER.size
        entries = []
        for i in range(n):
            if pos + _REGION.size > len(blob):
                raise DramImageError(f"{source}: truncated in region table entry {i}")
            addr, length, name_len = _REGION.unpack_from(blob, pos)
            pos += _REGION.size
            if pos + name_len > len(blob):
                raise DramImageError(f"{source}: truncated in the name of region {i}")
            try:
                name = blob[pos : pos + name_len].decode()
            except UnicodeDecodeError:
                raise DramImageError(f"{source}: region {i} name is not UTF-8") from None
            pos += name_len
            entries.append(Region(name, addr, length))
        if len(blob) - pos != size:
            raise DramImageError(
                f"{source}: header announces {size} data bytes but {len(blob) - pos} follow the "
                "region table"
            )
        img = cls(np.frombuffer(blob, dtype=np.uint8, offset=pos, count=size).copy())
        for r in entries:
            try:
                img.reserve(r.name, r.addr, r.length)
            except DramImageError as e:
                raise DramImageError(f"{source}: {e}") from None
        return img

    def save(self, path) -> None:
        """Write the file form to ``path``."""
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path) -> DramImage:
        """Read an image file; a missing or malformed file raises DramImageError."""
        p = Path(path)
        try:
            blob = p.read_bytes()
        except OSError as e:
            raise DramImageError(f"cannot read DRAM image {str(p)!r}: {e.strerror}") from None
        return cls.from_bytes(blob, source=str(p))


def _as_bytes(content) -> bytes:
    if isinstance(content, (bytes, bytearray, memoryview)):
        return bytes(content)
    arr = np.ascontiguousarray(content)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr.tobytes()
