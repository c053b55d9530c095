"""FuseSoC generator ``nmx_rtl``: run ``nmx rtl`` for a config and describe the result as a core.

FuseSoC calls ``python3 fpga/rtl_generator.py <input>.yml`` in an empty folder (GAPI 1.0: the
input holds ``files_root``, ``vlnv`` and ``parameters``). Parameters:

``preset``
    A config preset name (``tiny``, ``default``, ``ecp5``, ...) or a JSON config file, relative
    to the core's root (``nmx rtl --config``). Required.
``set``
    Optional list of ``FIELD=VALUE`` overrides (``nmx rtl --set``).

It writes the Verilog and its JSON sidecar (``nmx_accelerator_<R>x<C>_<fingerprint>.v/.json``)
and ``nmx_rtl.core``, a core named by the input's VLNV that holds them. The work is done by
:mod:`nmx.fpga.fusesoc_generator` (see there: the generated core, the launcher it sets up, the
cache); this script only makes sure that it runs in the project's environment.

The script runs under the project's ``.venv`` interpreter: when the interpreter that FuseSoC
started cannot import this repository's ``hw`` package, it re-executes itself with
``<repository>/.venv/bin/python`` and fails with a message naming ``make setup`` when that does
not exist.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"


def _ensure_project_interpreter(argv: list[str]) -> None:
    """Re-execute under the repository's .venv unless this interpreter imports its ``hw``."""
    sys.path.insert(0, str(REPO_ROOT))
    try:
        import amaranth  # noqa: F401
        import yaml  # noqa: F401

        import hw

        if Path(hw.__file__).resolve().parent == REPO_ROOT / "hw":
            return
    except ImportError:
        pass
    if Path(sys.prefix).resolve() == VENV_PYTHON.parents[1].resolve():
        raise SystemExit(f"nmx_rtl generator: {VENV_PYTHON} cannot import amaranth, yaml and "
                         f"{REPO_ROOT / 'hw'}; rerun `make setup` in {REPO_ROOT}")
    if not VENV_PYTHON.is_file():
        raise SystemExit(f"nmx_rtl generator: {sys.executable} cannot import the toolkit and "
                         f"there is no {VENV_PYTHON}; run `make setup` in {REPO_ROOT}")
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), str(Path(__file__).resolve()), *argv])


def main(argv: list[str]) -> int:
    """Run the generator on the GAPI input file ``argv[0]``; return the exit status."""
    if len(argv) != 1:
        print("usage: rtl_generator.py GAPI_INPUT.yml", file=sys.stderr)
        return 2
    _ensure_project_interpreter(argv)
    from nmx.fpga.fusesoc_generator import main as generator_main

    return generator_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
