"""Verilog generation: the accelerator's top component, converted by Amaranth's builtin Yosys.

Output is deterministic: :func:`write_rtl` produces byte-identical files on every run for one
config (no source locations, no timestamps) and leaves a file untouched, mtime included, when its
content has not changed, so the simulation cache (``sim.verilator``) and ``make`` see no change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hw.config import AcceleratorConfig

__all__ = [
    "TOPS",
    "TOP_MODULE",
    "top_component",
    "verilog_text",
    "write_if_changed",
    "write_rtl",
]

#: The tops ``write_rtl`` can generate: name -> Verilog module name. ``accelerator`` is the whole
#: machine (hw.accelerator.Accelerator); ``array`` the systolic array alone (array demo, timing).
TOPS = {"accelerator": "nmx_accelerator", "array": "systolic_array"}
#: Verilog module name of the default top level, the accelerator.
TOP_MODULE = TOPS["accelerator"]


def verilog_text(component, name: str, target=None) -> str:
    """Convert an Amaranth component to Verilog text.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The design; its signature's ports become the module's ports (nested interface names
        joined with ``__``).
    name : str
        Verilog module name of the top level.
    target : hw.target.GenerationTarget, optional
        Vendor primitives the generators may instantiate (``hw.target.ECP5``); the default,
        ``None``, is portable RTL, the only form the simulators run.

    Returns
    -------
    str
        The Verilog source, without source-location attributes (``emit_src=False``).

    Notes
    -----
    Conversion uses Amaranth's builtin Yosys: ``AMARANTH_USE_YOSYS`` is set to ``builtin`` in
    ``os.environ`` when it is unset, so output does not depend on a system Yosys.
    """
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    from amaranth.back import verilog

    return verilog.convert(component, name=name, emit_src=False, platform=target)


def top_component(config: AcceleratorConfig, top: str = "accelerator"):
    """Return the top-level component ``top`` (a key of :data:`TOPS`) for ``config``.

    ``accelerator`` is :class:`hw.accelerator.Accelerator`, ``array`` is
    :class:`hw.systolic_array.SystolicArray`; another name raises ValueError listing them.
    """
    if top == "accelerator":
        from hw.accelerator import Accelerator

        return Accelerator(config)
    if top == "array":
        from hw.systolic_array import SystolicArray

        return SystolicArray(config)
    raise ValueError(f"unknown top {top!r}; known: {', '.join(TOPS)}")


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` unless it already holds exactly that; return whether it wrote.

    The write goes to a temporary file that replaces ``path`` atomically, so concurrent writers
    of the same content (parallel test workers) never expose a partial file.
    """
    path = Path(path)
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def write_rtl(
    config: AcceleratorConfig, out_dir: str | os.PathLike, top: str = "accelerator"
) -> Path:
    """Generate the Verilog of top level ``top`` for ``config`` into ``out_dir``.

    Writes ``<out_dir>/<stem>.v`` (module ``TOPS[top]``) and the sidecar ``<stem>.json``
    (the config's fields, its fingerprint and the module name), where ``stem`` is
    ``config.artifact_stem(TOPS[top])``. Files whose content is unchanged are not rewritten.

    Parameters
    ----------
    config : AcceleratorConfig
        The accelerator instance to generate.
    out_dir : path-like
        Output folder, created if missing.
    top : str
        ``"accelerator"`` (default) or ``"array"`` (:data:`TOPS`).

    Returns
    -------
    pathlib.Path
        Path of the Verilog file.
    """
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
    component = top_component(config, top)
    module = TOPS[top]
    out = Path(out_dir)
    stem = config.artifact_stem(module)
    text = verilog_text(component, module)
    verilog_path = out / f"{stem}.v"
    write_if_changed(verilog_path, text.encode())
    sidecar = {
        "module": module,
        "verilog": verilog_path.name,
        "fingerprint": config.fingerprint,
        "config": config.to_dict(),
    }
    sidecar_text = json.dumps(sidecar, indent=2, sort_keys=True) + "\n"
    write_if_changed(out / f"{stem}.json", sidecar_text.encode())
    return verilog_path
