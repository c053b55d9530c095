"""DRAM image files: the memory a program runs on, with named regions.

File format (all integers little-endian)::

    header   8 bytes  magic b"NMXDRAM2"
             u64      size: DRAM bytes in the image
             u32      n: number of named regions
             u16      rows, u16 cols: the array shape of the config the image was built for
             10 bytes that config's fingerprint (ASCII hex)
             6 bytes  reserved, 0
    n times  u64      region address
             u64      region length in bytes
             u16      name length L, then L bytes of UTF-8 name
    size bytes        the DRAM contents, address 0 first

Regions are labels only (inputs, weights, tables, outputs); they must lie inside the image, have
unique names, and may not overlap. Any deviation raises :class:`DramImageError`.

Table formats and operand layouts depend on the config, so a file always names the config it was
built for (:class:`hw.config.ConfigStamp`); :meth:`DramImage.check_config` (called by the golden
model) raises :class:`hw.config.ConfigMismatchError` naming both fingerprints when they differ.
Images that exist only in memory may be unstamped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hw.config import AcceleratorConfig, ConfigError, ConfigStamp
from hw.errors import NmxError

__all__ = ["DRAM_MAGIC", "DramImage", "DramImageError", "Region"]

DRAM_MAGIC = b"NMXDRAM2"
_HEADER = struct.Struct("<8sQIHH10s6s")
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
    """A byte-addressed DRAM image (``data``, uint8), named regions and the config it is for.

    ``stamp`` is the :class:`~hw.config.ConfigStamp` of the config the image was built for
    (required to save it as a file; ``None`` for purely in-memory images).
    """

    data: np.ndarray
    regions: dict[str, Region] = field(default_factory=dict)
    stamp: ConfigStamp | None = None

    @classmethod
    def zeros(cls, size: int, config: AcceleratorConfig | None = None) -> DramImage:
        """An all-zero image of ``size`` bytes, stamped with ``config`` when given."""
        if size <= 0:
            raise DramImageError(f"DRAM size must be positive, got {size}")
        return cls(np.zeros(size, dtype=np.uint8), stamp=config.stamp if config else None)

    def check_config(self, config: AcceleratorConfig, what: str = "DRAM image") -> None:
        """Raise :class:`~hw.config.ConfigMismatchError` if the image is stamped for another
        config (unstamped in-memory images pass)."""
        if self.stamp is not None:
            self.stamp.check(config, what)

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
        dt = np.dtype(dtype).newbyteorder("<")
        if r.length % dt.itemsize:
            raise DramImageError(
                f"region {name!r} holds {r.length} bytes, not a whole number of {dt.itemsize}-byte "
                f"{np.dtype(dtype)} values"
            )
        arr = self.data[r.addr : r.end].view(dt).copy()
        if shape is None:
            return arr
        try:
            return arr.reshape(shape)
        except ValueError:
            raise DramImageError(
                f"region {name!r} holds {arr.size} {np.dtype(dtype)} values, which do not form "
                f"shape {shape}"
            ) from None

    def copy(self) -> DramImage:
        """A deep copy."""
        return DramImage(self.data.copy(), dict(self.regions), self.stamp)

    def to_bytes(self) -> bytes:
        """The file form (see the module docstring); an unstamped image raises DramImageError."""
        st = self.stamp
        if st is None:
            raise DramImageError(
                "DRAM image has no config stamp: build it with DramImage.zeros(size, config) "
                "so that the file names the config it is for"
            )
        parts = [
            _HEADER.pack(
                DRAM_MAGIC, self.size, len(self.regions), st.rows, st.cols,
                st.fingerprint.encode("ascii"), bytes(6),
            )
        ]
        for r in self.regions.values():
            name = r.name.encode()
            parts.append(_REGION.pack(r.addr, r.length, len(name)) + name)
        parts.append(self.data.tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, blob: bytes, *, source: str = "DRAM image") -> DramImage:
        """Parse the file form; any inconsistency raises DramImageError naming ``source``."""
        if blob[:8] == b"NMXDRAM1":
            raise DramImageError(
                f"{source}: format NMXDRAM1 carries no config fingerprint; rebuild the image"
            )
        if len(blob) < _HEADER.size:
            raise DramImageError(f"{source}: {len(blob)} bytes, shorter than the header")
        magic, size, n, rows, cols, fp, reserved = _HEADER.unpack_from(blob)
        if magic != DRAM_MAGIC:
            raise DramImageError(f"{source}: bad magic {magic!r}, expected {DRAM_MAGIC!r}")
        if any(reserved) or size == 0:
            raise DramImageError(
                f"{source}: invalid header (size {size}, reserved bytes {reserved.hex()})"
            )
        try:
            stamp = ConfigStamp(fp.decode("ascii"), rows, cols)
        except (UnicodeDecodeError, ConfigError) as e:
            raise DramImageError(f"{source}: invalid config stamp in the header: {e}") from None
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
        img = cls(np.frombuffer(blob, dtype=np.uint8, offset=pos, count=size).copy(), stamp=stamp)
        for r in entries:
            try:
                img.reserve(r.name, r.addr, r.length)
            except DramImageError as e:
                raise DramImageError(f"{source}: {e}") from None
        return img

    def save(self, path) -> None:
        """Write the file form to ``path``; failure raises DramImageError."""
        blob = self.to_bytes()
        try:
            Path(path).write_bytes(blob)
        except OSError as e:
            raise DramImageError(f"cannot write DRAM image {str(path)!r}: {e.strerror}") from None

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
