"""The bundle: program file, DRAM image and manifest of a compiled network.

A bundle directory holds ``program.nmxp`` (``hw.isa.Program`` file, config-stamped),
``dram.nmxd`` (``sim.dram_image`` format: constants, tables, input and output regions),
``manifest.json`` (config, inputs and outputs with shape, dtype, scale, region and
layout, per-node instruction ranges and figures, host pre/post-processing) and, when the network
has host pre-processing ops, ``host.pkl`` (those ops, pickled; aten operators by name).
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from compiler.backend.errors import CompileError
from compiler.graph import Im2col, Pad, Permute, Reshape, Slice, TensorRef
from compiler.ir.interpret import view
from hw.config import AcceleratorConfig
from hw.isa import Program
from sim.dram_image import DramImage

__all__ = ["Bundle", "BundleResult", "MANIFEST_VERSION"]

MANIFEST_VERSION = 1
_VIEWS = {c.__name__: c for c in (Reshape, Permute, Slice, Pad, Im2col)}


def _ref_to_json(ref: TensorRef) -> dict:
    return {"source": ref.source, "source_shape": list(ref.source_shape),
            "views": [{"kind": type(v).__name__, **{k: (list(x) if isinstance(x, tuple) else x)
                                                     for k, x in dataclasses.asdict(v).items()}}
                      for v in ref.views]}


def _ref_from_json(d: dict) -> TensorRef:
    views = []
    for v in d["views"]:
        v = dict(v)
        cls = _VIEWS[v.pop("kind")]
        views.append(cls(**{k: (tuple(x) if isinstance(x, list) else x) for k, x in v.items()}))
    return TensorRef(d["source"], tuple(d["source_shape"]), tuple(views))


def _aten_op(name: str):
    """The aten operator called ``name`` (``"aten.unsqueeze.default"``)."""
    ns, op, overload = name.split(".")
    return getattr(getattr(getattr(torch.ops, ns), op), overload)


class _HostPickler(pickle.Pickler):
    """Pickles host pre-processing ops; aten operators by name."""

    def reducer_override(self, obj):
        if isinstance(obj, torch._ops.OpOverload):
            return _aten_op, (f"{obj.namespace}.{obj._opname}.{obj._overloadname}",)
        return NotImplemented


@dataclass
class BundleResult:
    """Outcome of :meth:`Bundle.run`: real-valued outputs, integer outputs, the run (the golden
    model's ``RunResult`` or the RTL's ``DeviceRun``; both have ``status``)."""

    outputs: list[torch.Tensor]
    int_outputs: list[torch.Tensor]
    run: object = None


@dataclass
class Bundle:
    """A compiled network: program, DRAM image and manifest (see the module docstring)."""

    config: AcceleratorConfig
    program: Program | None
    image: DramImage
    manifest: dict
    host: dict | None = None
    extra: dict = field(default_factory=dict)
    #: a profile compile (``mode="profile"``): (node name, program) per node, run in order on
    #: one DRAM image; ``program`` is then None
    node_programs: list[tuple[str, Program]] | None = None

    # ------------------------------------------------------------------ files

    def save(self, directory) -> Path:
        """Write the bundle into ``directory`` (created); returns the path."""
        if self.program is None:
            raise CompileError(f"bundle {self.manifest.get('name')}", "a profile compile (one "
                               "program per node) is run in-process and has no bundle files; "
                               "save a 'program' or 'debug' compile")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "program.nmxp").write_bytes(self.program.to_bytes(self.config))
        self.image.save(d / "dram.nmxd")
        (d / "manifest.json").write_text(json.dumps(self.manifest, indent=1))
        if self.host and self.host.get("ops"):
            try:
                with open(d / "host.pkl", "wb") as f:
                    _HostPickler(f).dump(self.host)
            except Exception as e:  # noqa: BLE001 - any unpicklable host op: say which
                (d / "host.pkl").unlink(missing_ok=True)
                self.manifest["host_pickle_error"] = f"{type(e).__name__}: {e}"
                (d / "manifest.json").write_text(json.dumps(self.manifest, indent=1))
        return d

    @classmethod
    def load(cls, directory) -> Bundle:
        """Read a bundle written by :meth:`save` (config and stamps checked)."""
        d = Path(directory)
        for f in ("program.nmxp", "dram.nmxd", "manifest.json"):
            if not (d / f).is_file():
                raise CompileError(f"bundle {d}", f"missing file {f}")
        manifest = json.loads((d / "manifest.json").read_text())
        if manifest.get("version") != MANIFEST_VERSION:
            raise CompileError(f"bundle {d}", f"manifest version {manifest.get('version')} "
                               f"(supported: {MANIFEST_VERSION})")
        config = AcceleratorConfig.from_dict(manifest["config"])
        program = Program.from_bytes((d / "program.nmxp").read_bytes(), config,
                                     source=str(d / "program.nmxp"))
        image = DramImage.load(d / "dram.nmxd")
        image.check_config(config, str(d / "dram.nmxd"))
        host = None
        if (d / "host.pkl").is_file():
            with open(d / "host.pkl", "rb") as f:
                host = pickle.load(f)
        return cls(config, program, image, manifest, host)

    # ------------------------------------------------------------------ running

    @property
    def batch(self) -> int:
        """Samples per run (the ``batch`` the bundle was compiled for)."""
        return int(self.manifest["batch"])

    def quantize_inputs(self, inputs) -> dict[str, np.ndarray]:
        """Host pre-processing + input quantisation: int8 arrays per entering tensor,
        shape ``(batch, *shape)``. ``inputs`` are sample-stacked tensors, one per graph input
        (leading dim = ``batch``)."""
        from compiler.execute import _quantize_input, _run_host

        man = self.manifest
        if len(inputs) != len(man["graph_inputs"]):
            raise CompileError("bundle.run", f"expected {len(man['graph_inputs'])} inputs, got "
                               f"{len(inputs)}")
        raw = {}
        for gi, x in zip(man["graph_inputs"], inputs, strict=True):
            x = torch.as_tensor(x)
            want = (self.batch, *gi["shape"])
            if tuple(x.shape) != want:
                raise CompileError("bundle.run", f"input {gi['name']} has shape "
                                   f"{tuple(x.shape)}; the bundle was compiled for {want}")
            raw[gi["name"]] = x
        if man["host_ops"]:
            if self.host is None:
                raise CompileError("bundle.run", "the network has host pre-processing ops "
                                   f"({', '.join(man['host_ops'])}) but the bundle holds none "
                                   f"({man.get('host_pickle_error', 'host.pkl missing')})")
            _run_host(self.host["graph"], raw)
        out = {}
        for spec in man["inputs"]:
            v = raw[spec["name"]]
            if v.dtype.is_floating_point:
                v = _quantize_input(v, spec["scale"], spec.get("bits", 8))
            out[spec["name"]] = v.numpy().astype(np.int64)
        return out

    def image_for(self, qinputs: dict[str, np.ndarray]) -> DramImage:
        """The DRAM image with the quantised inputs written into their regions."""
        img = self.image.copy()
        for spec in self.manifest["inputs"]:
            v = qinputs[spec["name"]]
            if spec.get("bits", 8) == 16:  # the host splits it: 256 hi + lo
                from compiler.quant.wide import WIDE_MAX, WIDE_MIN, split_int16

                if v.size and (v.min() < WIDE_MIN or v.max() > WIDE_MAX):
                    raise CompileError("bundle.run", f"input {spec['name']} is outside the "
                                       f"16-bit split range {WIDE_MIN}..{WIDE_MAX}")
                hi, lo = split_int16(v)
                planes = {"hi": hi, "lo": lo}
            else:
                if v.size and (v.min() < -128 or v.max() > 127):
                    raise CompileError("bundle.run", f"input {spec['name']} is not int8")
                planes = {"int8": v}
            n = spec["bytes"]
            for plane, pv in planes.items():
                addr = spec.get("planes", {}).get(plane, spec["addr"])
                if spec.get("order"):
                    pv = pv.transpose(spec["order"])
                raw = np.ascontiguousarray(pv.astype(np.int8)).view(np.uint8).reshape(-1)
                if raw.size != n:
                    raise CompileError("bundle.run", f"input {spec['name']}: {raw.size} bytes "
                                       f"for a {n}-byte region")
                img.data[addr : addr + n] = raw
        return img

    def run(self, inputs, backend: str = "golden", **options) -> BundleResult:
        """Run on ``backend``: PyTorch outputs (dequantised) and the integer outputs, each with a
        leading sample dim of ``batch``.

        ``"golden"``: the golden model (``run`` is its :class:`~sim.golden.RunResult`).
        ``"rtl"``: the Verilated accelerator through :class:`nmx.runtime.device.Device` and
        :class:`sim.rtl_harness.VerilatorTransport` (``run`` is a
        :class:`~nmx.runtime.device.DeviceRun` with the RTL's counters); ``options`` go to
        :func:`sim.rtl_harness.run_bundle` (``transport``, ``latency``, ``backpressure``,
        ``seed``, ``timeout``). A non-zero status raises on either backend.
        """
        if backend == "rtl":
            from sim.rtl_harness import run_bundle

            run, outs, ints = run_bundle(self, inputs, **options)
            return BundleResult(outs, ints, run)
        if backend != "golden":
            raise CompileError("bundle.run", f"backend {backend!r} unknown (supported: golden, "
                               "rtl)")
        if options:
            raise CompileError("bundle.run", f"backend 'golden' takes no options, got "
                               f"{sorted(options)}")
        from sim.golden import GoldenModel

        img = self.image_for(self.quantize_inputs(inputs))
        if self.node_programs is not None:
            for node, program in self.node_programs:
                res = GoldenModel(self.config).run(program, img)
                if not res.ok:
                    raise CompileError(f"bundle.run, node {node}", str(res.status))
                img = res.dram
        else:
            res = GoldenModel(self.config).run(self.program, img)
            res.raise_for_status()
        outs, ints = self.read_outputs(res.dram)
        return BundleResult(outs, ints, res)

    def read_outputs(self, dram: DramImage) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Integer and real outputs from a final DRAM image (host post-processing: the output
        views and the dequantisation)."""
        outs, ints = [], []
        for spec in self.manifest["outputs"]:
            shape = (self.batch, *spec["shape"])
            n = int(np.prod(shape))
            planes = spec["planes"]
            if "int32" in planes:
                a = planes["int32"]
                v = dram.data[a : a + 4 * n].view("<i4").astype(np.int64)
            elif "hi" in planes:
                hi = dram.data[planes["hi"] : planes["hi"] + n].view(np.int8).astype(np.int64)
                lo = dram.data[planes["lo"] : planes["lo"] + n].view(np.int8).astype(np.int64)
                v = 256 * hi + lo
            else:
                a = planes["int8"]
                v = dram.data[a : a + n].view(np.int8).astype(np.int64)
            order = spec.get("order")
            if order:
                v = v.reshape([shape[d] for d in order]).transpose(np.argsort(order))
            t = torch.from_numpy(np.ascontiguousarray(v.reshape(shape)))
            t = view(_ref_from_json(spec["ref"]), t)
            ints.append(t)
            outs.append((t.double() * spec["scale"]).float())
        return outs, ints


def ref_to_json(ref: TensorRef) -> dict:
    """JSON form of a tensor reference (source and views) for the manifest."""
    return _ref_to_json(ref)
