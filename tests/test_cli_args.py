"""Argument errors of the nmx commands: one line on stderr, exit status 2, nothing run or written.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from compiler import ConvertError, convert
from hw.config import preset
from nmx.cli import main
from nmx.commands.ops import public_ops
from sim.dram_image import DramImage


def _one_line_exit_2(capsys, argv, *needles):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    for n in needles:
        assert n in err, err


@pytest.mark.parametrize("argv,needle", [
    (["convert", "--model", "mlp", "--segments", "0"], "--segments: 0 is outside 1..64"),
    (["convert", "--model", "mlp", "--segments", "65"], "outside 1..64"),
    (["convert", "--model", "mlp", "--wide-budget", "-0.1"], "--wide-budget"),
    (["convert", "--model", "mlp", "--lr", "0"], "--lr"),
])
def test_convert_argument_errors(capsys, argv, needle):
    _one_line_exit_2(capsys, argv, needle)


def test_pwl_png_into_a_missing_folder_is_refused(tmp_path, capsys):
    png = tmp_path / "missing" / "p.png"
    assert main(["pwl", "tanh", "--segments", "4", "--grid", "256", "--png", str(png)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not png.parent.exists()


def test_asm_refuses_an_empty_program(tmp_path, capsys):
    src = tmp_path / "empty.nmasm"
    src.write_text("; nothing\n")
    out = tmp_path / "p.bin"
    assert main(["asm", str(src), "-o", str(out)]) == 2
    assert "empty program" in capsys.readouterr().err
    assert not out.exists()


def test_run_golden_checks_show_and_expect_before_running(tmp_path, capsys):
    src = tmp_path / "p.nmasm"
    src.write_text("halt\n")
    prog = tmp_path / "p.bin"
    assert main(["asm", str(src), "-o", str(prog)]) == 0
    dram = tmp_path / "d.dram"
    img = DramImage.zeros(64, preset("default"))
    img.add("r", 0, np.zeros(4, np.int8))
    img.save(dram)
    capsys.readouterr()
    assert main(["run-golden", str(prog), "--dram", str(dram), "--show", "nosuch:int8"]) == 2
    out = capsys.readouterr()
    assert "no region 'nosuch'" in out.err and "status" not in out.out
    txt = tmp_path / "e.txt"
    txt.write_text("hello")
    assert main(["run-golden", str(prog), "--dram", str(dram), "--expect", f"r={txt}"]) == 2
    out = capsys.readouterr()
    assert "not a NumPy" in out.err and "status" not in out.out


def test_nmx_ops_lists_user_ops_without_internal_ones(capsys):
    assert main(["ops"]) == 0
    out = capsys.readouterr().out
    assert "aten.conv2d" in out and "aten.scaled_dot_product_attention" in out
    assert "aten.upsample_bilinear2d" in out and "leaky_relu" in out
    assert "aten._" not in out and "aten.lift_fresh_copy" not in out
    assert public_ops(["aten.linear.default", "aten._to_copy.default"]) == ["aten.linear"]


def test_example_inputs_as_a_bare_tensor_is_refused_asking_for_a_tuple():
    m = nn.Linear(4, 2).eval()
    x = torch.randn(2, 4)
    with pytest.raises(ConvertError, match="a tuple"):
        convert(m, x, [(x,)])
