"""The training run of the fast harness's profile-guided optimisation (``sim.rtl_harness``).

GCC's profile-guided optimisation (:func:`sim.verilator.build_library` with a
:class:`~sim.verilator.ProfileTraining`) compiles the Verilated accelerator once with
instrumentation, runs it on a fixed program, and compiles it again using the branch and call
counts that run recorded. The fixed program is :func:`training_program`: the double-buffered
tiled GEMM of ``nmx bench gemm`` (LOAD, GEMM, EPI with a PWL table, STORE, dependency tokens:
every unit of the accelerator busy), sized to the config. :func:`training_for` names it for the
build's cache key by its content (program words, DRAM image, harness settings, this module's
source), so a change to any of them gives a new build.

Run as ``python -m sim.harness_training DIR LIBRARY``: ``DIR`` holds ``training.json`` (the
config and the harness settings), ``program.json`` (the words) and ``image.npy``, written by
:func:`training_for`. The run checks every pass against the golden model (status and the whole
final DRAM image) and exits non-zero on any difference, so a profile only comes from a correct
run.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from hw.config import AcceleratorConfig
from hw.errors import NmxError

__all__ = ["TRAINING_PASSES", "training_for", "training_program"]

#: The harness settings of the training passes: (read/write latency, backpressure, seed). The
#: first is the benchmark's (no latency), the second a ``make sim`` machine's DRAM latency with
#: pauses, so the DRAM model's waiting paths are profiled too.
TRAINING_PASSES = ((0, 0.0, 1), (32, 0.25, 2))


def training_program(config: AcceleratorConfig):
    """The tiled GEMM the profile is trained on: ``16 R`` square with blocks of ``4 R`` rows, or
    the largest smaller one that fits ``config``'s memories. Returns ``(program, image)``."""
    from nmx.commands.bench import tiled_gemm

    r = config.rows
    for size, m in ((16 * r, 4 * r), (8 * r, 2 * r), (4 * r, r), (2 * r, r), (r, r)):
        try:
            program, image, _ = tiled_gemm(config, size, size, size, m)
        except ValueError:
            continue
        return program, image
    raise NmxError(f"no training GEMM fits config {config.fingerprint} "
                   f"({config.rows}x{config.cols})")


def training_for(config: AcceleratorConfig, root: Path):
    """Write the training inputs for ``config`` under ``root`` and return the
    :class:`~sim.verilator.ProfileTraining` that runs them.

    The folder is named by the content hash that is also the training's identity; it is
    written once (an existing one is reused).
    """
    from sim.verilator import ProfileTraining

    program, image = training_program(config)
    words = json.dumps([int(w) for w in program.words()]).encode()
    data = np.asarray(image.data, dtype=np.uint8)
    settings = {"config": config.to_dict(), "passes": [list(p) for p in TRAINING_PASSES]}
    h = hashlib.sha256()
    for part in (words, data.tobytes(), json.dumps(settings, sort_keys=True).encode(),
                 Path(__file__).read_bytes()):
        h.update(hashlib.sha256(part).digest())
    identity = h.hexdigest()[:16]
    folder = root / f"{config.fingerprint}_{identity}"
    if not (folder / "training.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "program.json").write_bytes(words)
        np.save(folder / "image.npy", data)
        tmp = folder / "training.json.tmp"
        tmp.write_text(json.dumps(settings, indent=1, sort_keys=True))
        tmp.replace(folder / "training.json")
    return ProfileTraining(
        identity=f"sim.harness_training {identity}",
        command=(sys.executable, "-m", "sim.harness_training", str(folder), "{library}"),
    )


def main(argv=None) -> int:
    from nmx.runtime import Device
    from sim.golden import GoldenModel
    from sim.rtl_harness import VerilatorTransport

    folder, library = (Path(a) for a in (argv if argv is not None else sys.argv[1:]))
    settings = json.loads((folder / "training.json").read_text())
    config = AcceleratorConfig.from_dict(settings["config"])
    words = [int(w) for w in json.loads((folder / "program.json").read_text())]
    data = np.load(folder / "image.npy")
    want = GoldenModel(config).run(words, data)
    mem = -(-data.size // 4096) * 4096 + 16 * len(words)
    for latency, backpressure, seed in settings["passes"]:
        with VerilatorTransport(config, mem_size=mem, latency=latency,
                                backpressure=backpressure, seed=seed, library=library) as t:
            run = Device(t, config).execute(words, data, timeout=3600)
        if run.status != want.status or not np.array_equal(run.dram.data, want.dram.data):
            print(f"training pass (latency {latency}, backpressure {backpressure}): the "
                  f"instrumented model differs from the golden model (status {run.status} vs "
                  f"{want.status})", file=sys.stderr)
            return 1
        print(f"training pass (latency {latency}, backpressure {backpressure}): "
              f"{run.cycles} cycles, equal to the golden model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
