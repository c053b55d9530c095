"""``nmx rtl``: generate the accelerator's Verilog for a config preset or JSON file.

Example: ``nmx rtl --config tiny --set rows=8 --out build/rtl`` prints the path written,
``build/rtl/nmx_accelerator_8x4_<fingerprint>.v`` (plus its ``.json`` sidecar); ``--top array``
emits the systolic array alone (``systolic_array_8x4_<fingerprint>.v``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hw.config import PRESETS, AcceleratorConfig, ConfigError, preset, preset_names
from hw.errors import NmxError
from nmx import files

__all__ = ["add_arguments", "add_config_arguments", "config_from_args", "load_config", "run"]


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config NAME|PATH.json`` and ``--set FIELD=VALUE`` (repeatable) to ``parser``."""
    parser.add_argument(
        "--config",
        default="default",
        metavar="NAME|PATH.json",
        help=f"config preset ({', '.join(preset_names())}) or a JSON file of config fields "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override one config field (repeatable), e.g. --set rows=8",
    )


#: Top-level keys of the sidecar ``nmx rtl`` writes next to the Verilog (hw.rtl.write_rtl).
SIDECAR_KEYS = frozenset({"config", "fingerprint", "module", "verilog"})


def _load_json(path: Path) -> AcceleratorConfig:
    text = files.read_text(path, "config file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise NmxError(
            f"config file {str(path)!r}: invalid JSON at line {e.lineno}: {e.msg}"
        ) from None
    if not isinstance(data, dict):
        raise NmxError(f"config file {str(path)!r}: expected a JSON object of config fields")
    if "config" in data:
        # A sidecar written by `nmx rtl`: the fields are under "config", next to its own keys.
        unknown = sorted(set(data) - SIDECAR_KEYS)
        if unknown:
            raise ConfigError(
                f"{path}: unknown key(s) {unknown} next to 'config'; a file holds either the "
                f"config fields or an `nmx rtl` sidecar (keys {sorted(SIDECAR_KEYS)})"
            )
        if not isinstance(data["config"], dict):
            raise ConfigError(f"{path}: 'config' must be a JSON object of config fields")
        data = data["config"]
    try:
        return AcceleratorConfig.from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def load_config(spec: str, overrides: list[str] | tuple[str, ...] = ()) -> AcceleratorConfig:
    """Return the config named by ``spec`` with ``overrides`` applied.

    Parameters
    ----------
    spec : str
        A preset name, else the path of a JSON file (a ``.json`` name or an existing file) holding
        an object of config fields (or an ``nmx rtl`` sidecar).
    overrides : sequence of str
        ``FIELD=VALUE`` strings; values are integers (decimal, or ``0x``/``0b`` prefixed).

    Raises
    ------
    ConfigError
        Unknown preset or field, malformed override, or a value outside its allowed range; the
        message names the field and value.
    """
    path = Path(spec)
    if spec not in PRESETS and (spec.endswith(".json") or path.is_file()):
        config = _load_json(path)
    else:
        config = preset(spec)
    known = set(config.to_dict())
    changes: dict[str, int] = {}
    for item in overrides:
        field, sep, raw = item.partition("=")
        field, raw = field.strip(), raw.strip()
        if not sep or not field:
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE, e.g. --set rows=8")
        if field not in known:
            raise ConfigError(f"unknown config field {field!r}; known: {', '.join(sorted(known))}")
        try:
            changes[field] = int(raw, 0)
        except ValueError:
            raise ConfigError(f"config field {field!r}: expected an integer, got {raw!r}") from None
    return config.replace(**changes) if changes else config


def config_from_args(args: argparse.Namespace) -> AcceleratorConfig:
    """The config selected by the options of :func:`add_config_arguments`."""
    return load_config(args.config, args.overrides)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nmx rtl``."""
    add_config_arguments(parser)
    parser.add_argument(
        "--out", type=Path, default=Path("build/rtl"), help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--top",
        choices=("accelerator", "array"),
        default="accelerator",
        help="what to emit: the whole accelerator or the systolic array alone "
        "(default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    """Generate the Verilog and its sidecar; print the Verilog file's path."""
    from hw.rtl import write_rtl

    config = config_from_args(args)
    with files.writing(args.out, "--out"):
        path = write_rtl(config, args.out, args.top)
    print(path)
    return 0
