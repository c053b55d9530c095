"""Reading and writing the user's files for the ``nmx`` commands, failing with one-line errors.

Every failure (missing file, a directory where a file was expected, permission denied, a missing
or non-folder parent, a full disk) raises :class:`~hw.errors.NmxError` whose message names the
option or role of the file (``what``, e.g. ``"--json"`` or ``"program"``), its path and the
reason, e.g. ``--json 'out/r.json': cannot write: folder 'out' does not exist``. ``nmx`` prints
it as one line and exits 2.

The hardware and simulator layers (hw/, sim/) sit below nmx/ and raise their own NmxError
subclasses for the files they read themselves (assembler text, DRAM images).
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hw.errors import NmxError

__all__ = [
    "check_writable",
    "read_bytes",
    "read_text",
    "reading",
    "write_bytes",
    "write_json",
    "write_text",
    "writing",
]


def _not_a_folder(path: Path) -> Path | None:
    """The first of ``path`` and its parents (outermost first) that exists but is not a folder."""
    for p in (*reversed(path.parents), path):
        if p.exists() and not p.is_dir():
            return p
    return None


def _error(what: str, path, e: OSError, writing: bool) -> NmxError:
    path = Path(path)
    failed = Path(e.filename) if e.filename is not None else path
    where = f" {str(failed)!r}" if failed != path else ""
    blocker = _not_a_folder(failed) if e.errno in (errno.ENOTDIR, errno.EEXIST) else None
    if blocker is not None:
        where, reason = "", f"Not a directory: {str(blocker)!r}"
    elif e.errno == errno.ENOENT and writing:
        where, reason = "", f"folder {str(failed.parent)!r} does not exist"
    elif e.errno == errno.ENOENT:
        reason = "not found"
    elif e.errno == errno.EISDIR:
        reason = "it is a directory, not a file"
    else:
        reason = e.strerror or str(e)
    verb = "cannot write" if writing else "cannot read"
    return NmxError(f"{what} {str(path)!r}: {verb}{where}: {reason}")


@contextmanager
def reading(path, what: str) -> Iterator[None]:
    """Turn an :class:`OSError` raised inside the block into a one-line NmxError about reading
    ``path`` (for readers that take a path themselves, e.g. ``numpy.load``)."""
    try:
        yield
    except OSError as e:
        raise _error(what, path, e, writing=False) from None


@contextmanager
def writing(path, what: str) -> Iterator[None]:
    """Turn an :class:`OSError` raised inside the block into a one-line NmxError about writing
    ``path`` (a file, or a folder that the block writes files into)."""
    try:
        yield
    except OSError as e:
        raise _error(what, path, e, writing=True) from None


def read_bytes(path, what: str) -> bytes:
    """The content of the file at ``path``; ``what`` names it in the error message."""
    with reading(path, what):
        return Path(path).read_bytes()


def read_text(path, what: str) -> str:
    """The content of the UTF-8 text file at ``path``; other encodings are an error."""
    blob = read_bytes(path, what)
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError as e:
        line = blob[: e.start].count(b"\n") + 1
        raise NmxError(
            f"{what} {str(path)!r}: not UTF-8 text (line {line}, byte {e.start})"
        ) from None


def _prepare(path, what: str, parents: bool) -> Path:
    p = Path(path)
    if parents:
        with writing(p, what):
            p.parent.mkdir(parents=True, exist_ok=True)
    return p


def write_bytes(path, data: bytes, what: str, *, parents: bool = False) -> None:
    """Write ``data`` to ``path`` (replacing it); ``parents`` creates missing folders first."""
    p = _prepare(path, what, parents)
    with writing(p, what):
        p.write_bytes(data)


def write_text(path, text: str, what: str, *, parents: bool = False) -> None:
    """Write ``text`` as UTF-8 to ``path`` (replacing it); ``parents`` creates missing folders."""
    write_bytes(path, text.encode("utf-8"), what, parents=parents)


def write_json(path, obj, what: str, *, parents: bool = False, indent: int = 2) -> None:
    """Write ``obj`` as JSON (UTF-8, ending in a newline) to ``path``.

    The text is built before the file is opened, so an object that JSON cannot hold (a bug, not
    the user's to fix: it keeps its ``TypeError``) leaves an existing file untouched.
    """
    write_text(path, json.dumps(obj, indent=indent) + "\n", what, parents=parents)


def check_writable(path, what: str, *, parents: bool = False) -> None:
    """Fail now, with the error a later write would give, if ``path`` cannot be written.

    For commands that write their results only after a long computation. The check opens the
    file for appending (creating ``parents`` first if asked) and removes it again if it did not
    exist, so it holds for any user, root included, and leaves an existing file unchanged.
    """
    p = _prepare(path, what, parents)
    existed = os.path.lexists(p)
    with writing(p, what):
        with open(p, "ab"):
            pass
        if not existed:
            os.unlink(p)
