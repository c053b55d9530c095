"""The FuseSoC generator behind ``neuralmatrix.core``: ``nmx rtl`` for a config, as a core.

FuseSoC runs it (through ``fpga/rtl_generator.py``) with a GAPI 1.0 input file and an empty
working folder. :func:`generate` then

1. resolves the config from the parameters ``preset`` (a preset name or a JSON config file,
   relative to ``files_root``) and ``set`` (``FIELD=VALUE`` overrides), as ``nmx rtl`` does;
2. runs ``nmx rtl --config ... --out <cache entry>`` unless the cache holds that config's
   Verilog already, and copies the Verilog and its sidecar into the working folder;
3. writes ``nmx_rtl.core``, named by the input's VLNV: fileset ``rtl`` (the Verilog), fileset
   ``sidecar`` (the JSON: config, fingerprint, module name) and a default target that also sets
   the flow option ``flow_make_options: [EDALIZE_LAUNCHER=...]``, so that the Makefile edalize
   writes starts every tool through :mod:`nmx.fpga.edalize_launcher` with this interpreter.
   (The launcher is set here because only the generator knows, on the machine that runs the
   flow, where the interpreter and the repository are; FuseSoC merges the generated core's
   flow options into the flow's.)

**Cache.** ``<files_root>/build/fusesoc/rtl/<key>/``, where the key hashes the resolved config,
the top level, and the Python and Amaranth versions. An entry holds the Verilog, the sidecar and
``deps.json``: the SHA-256 of every file of the repository that producing it imported (the
``hw`` modules and whatever they use). It is reused while every recorded file is unchanged and
rebuilt otherwise; a lock file serialises concurrent generators of one entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import json
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from hw.config import AcceleratorConfig
from hw.errors import NmxError
from hw.rtl import TOPS

__all__ = [
    "CORE_FILE",
    "GeneratedRtl",
    "GeneratorError",
    "cache_root",
    "generate",
    "launcher_command",
    "main",
]

#: Name of the core file the generator writes.
CORE_FILE = "nmx_rtl.core"
#: Parameters the generator understands.
PARAMETERS = ("preset", "set")
_REPO_ROOT = Path(__file__).resolve().parents[2]
_DEPS = "deps.json"


class GeneratorError(NmxError):
    """Malformed generator input or a config that ``nmx rtl`` rejects."""


@dataclass(frozen=True)
class GeneratedRtl:
    """What one generator run produced.

    Attributes
    ----------
    config : AcceleratorConfig
        The resolved config.
    verilog, sidecar, core_file : pathlib.Path
        The files written into the working folder.
    cache_hit : bool
        True when the Verilog came from the cache (``nmx rtl`` did not run).
    """

    config: AcceleratorConfig
    verilog: Path
    sidecar: Path
    core_file: Path
    cache_hit: bool


def cache_root(files_root: Path) -> Path:
    """Folder of the generator's cache for the core rooted at ``files_root``."""
    return Path(files_root) / "build" / "fusesoc" / "rtl"


def launcher_command() -> str:
    """The ``EDALIZE_LAUNCHER`` value: this interpreter running :mod:`nmx.fpga.edalize_launcher`.

    The parts are shell-quoted: make hands the expanded recipe line to ``/bin/sh``.
    """
    return f"{shlex.quote(sys.executable)} -m nmx.fpga.edalize_launcher"


def _read_input(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise GeneratorError(f"cannot read the generator input {str(path)!r}: {e}") from None
    if not isinstance(data, dict):
        raise GeneratorError(f"generator input {str(path)!r} is not a mapping")
    missing = [k for k in ("files_root", "vlnv", "parameters") if k not in data]
    if missing:
        raise GeneratorError(f"generator input {str(path)!r} lacks {missing} (GAPI 1.0 input "
                             "has files_root, gapi, vlnv, parameters)")
    if str(data.get("gapi", "1.0")) != "1.0":
        raise GeneratorError(f"generator input {str(path)!r}: gapi {data['gapi']!r} is not "
                             "the supported 1.0")
    return data


def _resolve_config(params: object, files_root: Path) -> AcceleratorConfig:
    from nmx.commands.rtl import load_config

    if not isinstance(params, dict):
        raise GeneratorError(f"parameters must be a mapping, got {params!r}")
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise GeneratorError(f"unknown generator parameter(s) {unknown}; known: "
                             f"{list(PARAMETERS)}")
    preset = params.get("preset")
    if not isinstance(preset, str) or not preset:
        raise GeneratorError(f"parameter 'preset' must name a config preset or JSON file, got "
                             f"{preset!r}")
    overrides = params.get("set", [])
    if isinstance(overrides, str):
        overrides = [overrides]
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise GeneratorError(f"parameter 'set' must be a list of FIELD=VALUE strings, got "
                             f"{overrides!r}")
    spec = preset
    if spec.endswith(".json") and not Path(spec).is_absolute():
        spec = str(files_root / spec)
    try:
        return load_config(spec, overrides)
    except NmxError as e:
        raise GeneratorError(f"config {preset!r} {overrides}: {e}") from None


def _cache_key(config: AcceleratorConfig, top: str) -> str:
    key = {
        "config": config.to_dict(),
        "top": top,
        "python": sys.version,
        "amaranth": importlib.metadata.version("amaranth"),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _repo_sources() -> dict[str, str]:
    """SHA-256 of every imported module file inside the repository, by relative path."""
    found: dict[str, str] = {}
    for module in list(sys.modules.values()):
        name = getattr(module, "__file__", None)
        if not name or not os.path.isabs(name) or not os.path.isfile(name):
            continue  # builtins, namespace packages, extension-made pseudo files
        path = Path(name).resolve()
        if _REPO_ROOT in path.parents and ".venv" not in path.relative_to(_REPO_ROOT).parts:
            found[str(path.relative_to(_REPO_ROOT))] = _sha256(path)
    return dict(sorted(found.items()))


def _entry_valid(entry: Path, stem: str) -> bool:
    try:
        deps = json.loads((entry / _DEPS).read_text())
    except (OSError, ValueError):
        return False
    if not (entry / f"{stem}.v").is_file() or not (entry / f"{stem}.json").is_file():
        return False
    for rel, digest in deps.items():
        try:
            if _sha256(_REPO_ROOT / rel) != digest:
                return False
        except OSError:
            return False
    return bool(deps)


def _run_nmx_rtl(config: AcceleratorConfig, out: Path) -> None:
    """``nmx rtl`` in this process (so that the modules it imports can be recorded)."""
    from nmx.cli import main as nmx_main

    out.mkdir(parents=True, exist_ok=True)
    config_file = out / "config.json"
    config_file.write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = nmx_main(["rtl", "--config", str(config_file), "--out", str(out)])
    if status:
        raise GeneratorError(f"nmx rtl failed (exit {status}): {stderr.getvalue().strip()}")


def _core_text(vlnv: str, verilog: str, sidecar: str, config: AcceleratorConfig) -> str:
    import yaml

    core = {
        "name": vlnv,
        "description": f"NeuralMatrix accelerator {config.rows}x{config.cols} "
                       f"(config fingerprint {config.fingerprint}), generated by nmx rtl",
        "filesets": {
            "rtl": {"files": [verilog], "file_type": "verilogSource"},
            "sidecar": {"files": [sidecar], "file_type": "user"},
        },
        "targets": {
            "default": {
                "filesets": ["rtl", "sidecar"],
                "flow_options": {
                    "flow_make_options": [f"EDALIZE_LAUNCHER={launcher_command()}"],
                },
            },
        },
    }
    return "CAPI=2:\n" + yaml.safe_dump(core, sort_keys=False, width=1000)


def generate(input_file: Path, work_dir: Path, top: str = "accelerator") -> GeneratedRtl:
    """Run the generator on GAPI input ``input_file``, writing into ``work_dir``.

    Raises
    ------
    GeneratorError
        Unreadable or malformed input, unknown parameters, a config ``nmx rtl`` rejects.
    """
    if top not in TOPS:
        raise GeneratorError(f"unknown top {top!r}; known: {', '.join(TOPS)}")
    data = _read_input(Path(input_file))
    files_root = Path(data["files_root"])
    config = _resolve_config(data["parameters"], files_root)
    stem = config.artifact_stem(TOPS[top])
    entry = cache_root(files_root) / _cache_key(config, top)
    entry.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(entry) + ".lock"):
        hit = _entry_valid(entry, stem)
        if not hit:
            shutil.rmtree(entry, ignore_errors=True)
            _run_nmx_rtl(config, entry)
            (entry / _DEPS).write_text(json.dumps(_repo_sources(), indent=1) + "\n")
        work_dir.mkdir(parents=True, exist_ok=True)
        for suffix in (".v", ".json"):
            shutil.copyfile(entry / f"{stem}{suffix}", work_dir / f"{stem}{suffix}")
    # The working folder sits under the build root, inside --cores-root . when that is the
    # repository: keep FuseSoC's library scan out of it (the generated core is injected anyway).
    (work_dir / "FUSESOC_IGNORE").touch()
    core_file = work_dir / CORE_FILE
    core_file.write_text(_core_text(str(data["vlnv"]), f"{stem}.v", f"{stem}.json", config))
    return GeneratedRtl(config, work_dir / f"{stem}.v", work_dir / f"{stem}.json", core_file, hit)


def main(argv: list[str]) -> int:
    """``rtl_generator.py GAPI_INPUT.yml``: generate into the current folder; exit status."""
    if len(argv) != 1:
        print("usage: rtl_generator.py GAPI_INPUT.yml", file=sys.stderr)
        return 2
    try:
        result = generate(Path(argv[0]), Path(os.getcwd()))
    except NmxError as e:
        print(f"nmx_rtl generator: error: {e}", file=sys.stderr)
        return 1
    source = "cache" if result.cache_hit else "nmx rtl"
    print(f"nmx_rtl generator: {result.verilog.name} ({source}), {result.core_file.name}")
    return 0
