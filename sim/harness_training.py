"""The training run of the fast harness's profile-guided optimisation (``sim.rtl_harness``).

GCC's profile-guided optimisation (:func:`sim.verilator.build_library` with a
:class:`~sim.verilator.ProfileTraining`) compiles the Verilated accelerator once with
instrumentation, runs it on fixed programs, and compiles it again using the branch and call
counts that run recorded. The fixed programs are

- :func:`training_program`: the double-buffered tiled GEMM of ``nmx bench gemm`` (LOAD, GEMM,
  EPI with a PWL table, STORE, dependency tokens: every unit of the accelerator busy), sized to
  the config, run twice (:data:`TRAINING_PASSES`);
- :func:`network_program`: a compiled zoo network (:func:`training_network`: BERT on arrays of
  16x16 and more, the MLP on smaller ones), whose short loads, transposed operands, many
  epilogue functions and stores the GEMM does not have; run once (:data:`NETWORK_PASSES`).
  Compiling it takes seconds to tens of seconds, so the compiled program is cached under the
  training folder, keyed by the compiler's sources (:func:`sim.rtl_cache.import_closure` of the
  modules that compile it), the zoo's weights, the torch/numpy/Python versions, the config and
  the network.

:func:`training_for` names the training for the build's cache key by its content (program
words, DRAM images, harness settings, this module's source), so a change to any of them gives a
new build.

Run as ``python -m sim.harness_training DIR LIBRARY``: ``DIR`` holds ``training.json`` (the
config and the harness settings), ``program.json``/``image.npy`` (the GEMM) and
``network_program.json``/``network_image.npy``, written by :func:`training_for`. The run checks
every pass against the golden model (status and the whole final DRAM image) and exits non-zero
on any difference, so a profile only comes from a correct run.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from hw.config import AcceleratorConfig
from hw.errors import NmxError

__all__ = ["NETWORK_PASSES", "TRAINING_PASSES", "network_program", "training_for",
           "training_network", "training_program"]

#: The harness settings of the training passes: (read/write latency, backpressure, seed). The
#: first is the benchmark's (no latency), the second a ``make sim`` machine's DRAM latency with
#: pauses, so the DRAM model's waiting paths are profiled too.
TRAINING_PASSES = ((0, 0.0, 1), (32, 0.25, 2))


#: The harness settings of the network's training pass (the benchmark's: no latency).
NETWORK_PASSES = ((0, 0.0, 1),)
#: The modules that compile the training network (their import closure keys the cached program).
_COMPILER_MODULES = ("compiler.backend", "compiler.convert", "compiler.zoo",
                     "nmx.commands.compile")


def training_network(config: AcceleratorConfig) -> tuple[str, int]:
    """The zoo network and batch of the training for ``config``: ``("bert", 1)`` (``make sim``'s
    workload) on arrays of 16x16 and more, ``("mlp", 4)`` below (BERT takes millions of cycles
    on a small array)."""
    return ("bert", 1) if config.rows * config.cols >= 256 else ("mlp", 4)


def _network_key(config: AcceleratorConfig, model: str, batch: int) -> str:
    import importlib.metadata

    from sim.rtl_cache import REPO_ROOT, import_closure

    h = hashlib.sha256()
    spec = {"config": config.to_dict(), "model": model, "batch": batch,
            "python": list(sys.version_info[:2]),
            "versions": {d: importlib.metadata.version(d) for d in ("torch", "numpy")}}
    h.update(json.dumps(spec, sort_keys=True).encode())
    weights = sorted((REPO_ROOT / "compiler" / "zoo" / "weights").glob("*"))
    for path in (*import_closure(_COMPILER_MODULES), *weights, Path(__file__)):
        h.update(b"\0" + str(path.relative_to(REPO_ROOT)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def network_program(config: AcceleratorConfig, root: Path) -> tuple[list[int], np.ndarray]:
    """The compiled :func:`training_network` for ``config``: ``(program words, DRAM image)``,
    compiled once per compiler version (:func:`_network_key`) and cached as
    ``root/network_<fingerprint>_<model><batch>_<key>.npz``."""
    from filelock import FileLock

    model, batch = training_network(config)
    key = _network_key(config, model, batch)[:16]
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"network_{config.fingerprint}_{model}{batch}_{key}.npz"
    with FileLock(str(path) + ".lock"):
        if not path.is_file():
            import torch

            from compiler.backend import compile as compile_bundle
            from compiler.convert import convert
            from compiler.zoo import load
            from nmx.commands.compile import sample_inputs

            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                zm = load(model)
                cm = convert(zm.model, zm.example_inputs, zm.calibration)
                bundle = compile_bundle(cm, config, batch=batch, name=model)
                image = bundle.image_for(bundle.quantize_inputs(sample_inputs(zm, cm, batch)))
            finally:
                torch.set_num_threads(threads)
            tmp = path.with_name(path.stem + ".tmp.npz")
            np.savez(tmp, words=np.array([str(int(w)) for w in bundle.program.words()]),
                     image=np.asarray(image.data, dtype=np.uint8))
            tmp.replace(path)
        saved = np.load(path)
        return [int(w) for w in saved["words"]], saved["image"]


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
    net_words, net_data = network_program(config, root)
    net_words_json = json.dumps(net_words).encode()
    model, batch = training_network(config)
    settings = {"config": config.to_dict(), "passes": [list(p) for p in TRAINING_PASSES],
                "network": {"model": model, "batch": batch,
                            "passes": [list(p) for p in NETWORK_PASSES]}}
    h = hashlib.sha256()
    for part in (words, data.tobytes(), net_words_json, net_data.tobytes(),
                 json.dumps(settings, sort_keys=True).encode(), Path(__file__).read_bytes()):
        h.update(hashlib.sha256(part).digest())
    identity = h.hexdigest()[:16]
    folder = root / f"{config.fingerprint}_{identity}"
    if not (folder / "training.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "program.json").write_bytes(words)
        np.save(folder / "image.npy", data)
        (folder / "network_program.json").write_bytes(net_words_json)
        np.save(folder / "network_image.npy", net_data)
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
    programs = [("GEMM", "program.json", "image.npy", settings["passes"])]
    if "network" in settings:
        net = settings["network"]
        programs.append((f"{net['model']} (batch {net['batch']})", "network_program.json",
                         "network_image.npy", net["passes"]))
    for label, words_file, image_file, passes in programs:
        words = [int(w) for w in json.loads((folder / words_file).read_text())]
        data = np.load(folder / image_file)
        want = GoldenModel(config).run(words, data)
        mem = -(-data.size // 4096) * 4096 + 16 * len(words)
        for latency, backpressure, seed in passes:
            with VerilatorTransport(config, mem_size=mem, latency=latency,
                                    backpressure=backpressure, seed=seed, library=library) as t:
                run = Device(t, config).execute(words, data, timeout=3600)
            where = f"training pass {label} (latency {latency}, backpressure {backpressure})"
            if run.status != want.status or not np.array_equal(run.dram.data, want.dram.data):
                print(f"{where}: the instrumented model differs from the golden model (status "
                      f"{run.status} vs {want.status})", file=sys.stderr)
                return 1
            print(f"{where}: {run.cycles} cycles, equal to the golden model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
