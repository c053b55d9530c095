"""The FuseSoC core (neuralmatrix.core): its generator, and the lint target run end to end.

``test_lint_target_on_tiny`` runs ``fusesoc --cores-root . run --target=lint --flag preset_tiny``
from the repository root as a user would (build root in a temporary folder); the generator's
cache (build/fusesoc/rtl/) makes reruns cost one Verilator lint of the tiny accelerator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hw.config import preset
from nmx.fpga import fusesoc_generator as gen
from nmx.fpga.fusesoc_generator import CORE_FILE, GeneratorError, cache_root, generate

REPO_ROOT = Path(__file__).resolve().parents[1]
CORE = "neuralmatrix:nmx:accelerator"


def _gapi(path: Path, files_root: Path, parameters: dict, vlnv="nmx:test:rtl-gen:0") -> Path:
    path.write_text(yaml.safe_dump({"files_root": str(files_root), "gapi": "1.0",
                                    "vlnv": vlnv, "parameters": parameters}))
    return path


def test_generator_writes_verilog_sidecar_and_core_and_caches(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    inp = _gapi(tmp_path / "in.yml", root, {"preset": "tiny"})
    tiny = preset("tiny")
    first = generate(inp, tmp_path / "gen1")
    assert not first.cache_hit
    assert first.verilog.name == f"{tiny.artifact_stem('nmx_accelerator')}.v"
    assert "module nmx_accelerator(" in first.verilog.read_text()
    sidecar = json.loads(first.sidecar.read_text())
    assert sidecar["fingerprint"] == tiny.fingerprint and sidecar["config"] == tiny.to_dict()

    core_text = first.core_file.read_text()
    assert core_text.startswith("CAPI=2:\n") and first.core_file.name == CORE_FILE
    core = yaml.safe_load(core_text)
    assert core["name"] == "nmx:test:rtl-gen:0"
    assert core["filesets"]["rtl"] == {"files": [first.verilog.name],
                                       "file_type": "verilogSource"}
    make_opts = core["targets"]["default"]["flow_options"]["flow_make_options"]
    assert make_opts == [f"EDALIZE_LAUNCHER={sys.executable} -m nmx.fpga.edalize_launcher"]
    assert (tmp_path / "gen1" / "FUSESOC_IGNORE").is_file()

    # The cache entry records the repository files that generating it imported.
    entry = next(p for p in cache_root(root).iterdir() if p.is_dir())
    deps = json.loads((entry / "deps.json").read_text())
    assert {"hw/accelerator.py", "hw/config.py", "hw/rtl.py"} <= set(deps)

    second = generate(inp, tmp_path / "gen2")
    assert second.cache_hit
    assert second.verilog.read_bytes() == first.verilog.read_bytes()

    # A changed source (here: its recorded digest no longer matches) regenerates the entry.
    deps["hw/accelerator.py"] = "0" * 64
    (entry / "deps.json").write_text(json.dumps(deps))
    third = generate(inp, tmp_path / "gen3")
    assert not third.cache_hit
    assert third.verilog.read_bytes() == first.verilog.read_bytes()


def test_generator_parameters_resolve_like_nmx_rtl(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "mine.json").write_text(json.dumps(preset("tiny").to_dict()))
    config = gen._resolve_config({"preset": "cfg/mine.json", "set": ["rows=8"]}, tmp_path)
    assert config == preset("tiny").replace(rows=8)
    assert gen._resolve_config({"preset": "ecp5", "set": "cols=4"}, tmp_path) == \
        preset("ecp5").replace(cols=4)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({}, "parameter 'preset' must name a config preset"),
        ({"preset": "tiny", "rows": 8}, r"unknown generator parameter\(s\) \['rows'\]"),
        ({"preset": "huge"}, "config 'huge'"),
        ({"preset": "tiny", "set": ["rows=0"]}, "rows"),
        ({"preset": "tiny", "set": [3]}, "list of FIELD=VALUE strings"),
    ],
)
def test_generator_rejects_bad_parameters(tmp_path, parameters, message):
    inp = _gapi(tmp_path / "in.yml", tmp_path, parameters)
    with pytest.raises(GeneratorError, match=message):
        generate(inp, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_generator_rejects_malformed_input(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("gapi: '1.0'\nparameters: {preset: tiny}\n")
    with pytest.raises(GeneratorError, match=r"lacks \['files_root', 'vlnv'\]"):
        generate(bad, tmp_path / "out")
    assert gen.main([str(bad)]) == 1
    assert gen.main([]) == 2


def test_generator_script_runs_outside_the_venv(tmp_path):
    """FuseSoC starts the generator with the `python3` on PATH, which need not be the project's
    interpreter: the script then re-executes itself with .venv/bin/python."""
    system_python = Path("/usr/bin/python3")
    if not system_python.is_file():
        pytest.skip("no /usr/bin/python3 to play FuseSoC's interpreter")
    inp = _gapi(tmp_path / "in.yml", tmp_path, {"preset": "tiny", "rows": 1})
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(system_python), str(REPO_ROOT / "fpga" / "rtl_generator.py"),
                           str(inp)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 1, done.stderr
    assert "unknown generator parameter(s) ['rows']" in done.stderr


@pytest.mark.rtl
def test_lint_target_on_tiny(tmp_path):
    fusesoc = Path(sys.executable).with_name("fusesoc")
    build = tmp_path / "build"
    cmd = [str(fusesoc), "--cores-root", ".", "run", "--build-root", str(build),
           "--target=lint", "--flag", "preset_tiny", CORE]
    env = {k: v for k, v in os.environ.items() if k != "EDALIZE_LAUNCHER"}
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          check=False, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert "%Warning" not in log and "%Error" not in log
    work = build / "neuralmatrix_nmx_accelerator_0.1.0" / "lint"
    vc = (work / "neuralmatrix_nmx_accelerator_0.1.0.vc").read_text().split("\n")
    tiny = preset("tiny").artifact_stem("nmx_accelerator")
    assert "--lint-only" in vc and "-Wall" in vc and "--top-module nmx_accelerator" in vc
    assert any(line.endswith("sim/verilator_waivers.vlt") for line in vc)
    assert any(line.endswith(f"{tiny}.v") for line in vc)
    assert "-m nmx.fpga.edalize_launcher verilator -f" in log
