"""Lint generated Verilog with ``verilator --lint-only -Wall`` and the project's waiver file.

Usage: ``python -m sim.lint DIR [DIR|FILE ...]`` lints every ``.v`` file found (each one on its
own, as a complete design). It prints every message and exits 1 when any file draws a warning or
an error, and 2 when there is nothing to lint. Waivers live in ``sim/verilator_waivers.vlt``; see
``docs/simulation.md`` for the policy.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hw.errors import NmxError
from sim.verilator import WAIVER_FILE, verilator_env, verilator_root

__all__ = ["LintResult", "lint_file", "main", "verilog_files"]


@dataclass(frozen=True)
class LintResult:
    """Verilator's verdict on one file.

    Attributes
    ----------
    path : pathlib.Path
        The file linted.
    returncode : int
        Verilator's exit status.
    messages : str
        Everything Verilator printed (warnings and errors).
    """

    path: Path
    returncode: int
    messages: str

    @property
    def clean(self) -> bool:
        """True when Verilator exited 0 and printed no warning or error."""
        return (
            self.returncode == 0
            and "%Warning" not in self.messages
            and ("%Error" not in self.messages)
        )


def lint_file(path: str | Path, extra_args: tuple[str, ...] = ()) -> LintResult:
    """Run ``verilator --lint-only -Wall`` with the waiver file on one Verilog file."""
    path = Path(path)
    cmd = [
        str(verilator_root() / "bin" / "verilator"),
        "--lint-only",
        "-Wall",
        "--quiet-exit",
        str(WAIVER_FILE),
        str(path),
        *extra_args,
    ]
    done = subprocess.run(cmd, env=verilator_env(), capture_output=True, text=True, check=False)
    return LintResult(path, done.returncode, (done.stdout + done.stderr).strip())


def verilog_files(targets: list[str | Path]) -> list[Path]:
    """The ``.v`` files named by ``targets`` (files, or folders searched non-recursively)."""
    found: list[Path] = []
    for target in map(Path, targets):
        if target.is_dir():
            found.extend(sorted(target.glob("*.v")))
        elif target.is_file():
            found.append(target)
        else:
            raise NmxError(f"lint target {str(target)!r} does not exist")
    return found


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m sim.lint", description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="+", help="Verilog files or folders of .v files")
    args = parser.parse_args(argv)
    try:
        files = verilog_files(args.targets)
    except NmxError as e:
        print(f"sim.lint: error: {e}", file=sys.stderr)
        return 2
    if not files:
        print(f"sim.lint: error: no .v files in {', '.join(args.targets)}", file=sys.stderr)
        return 2
    dirty = 0
    for path in files:
        result = lint_file(path)
        if result.clean:
            print(f"clean: {path}")
        else:
            dirty += 1
            print(f"FAILED: {path} (verilator exit {result.returncode})")
            print(result.messages)
    print(f"{len(files) - dirty} of {len(files)} files lint clean")
    return 1 if dirty else 0


if __name__ == "__main__":
    sys.exit(main())
