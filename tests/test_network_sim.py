"""``nmx sim``'s network run (sim/network.py) on the golden backend, and a faulty machine whose
mismatch the locator pins on the node whose weights it corrupts."""

from __future__ import annotations

import json

import pytest

import sim.network
from hw.config import preset
from nmx.cli import main
from sim.network import GoldenMachine, MachinePool, simulate


def test_mlp_on_the_golden_backend_writes_its_report(tmp_path, capsys):
    assert main(["sim", "--model", "mlp", "--config", "tiny", "--samples", "12",
                 "--backend", "golden", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "OK  final DRAM equal to the golden model's" in out
    assert "OK  outputs equal to the integer executor's" in out
    rep = json.loads((tmp_path / "mlp" / "report.json").read_text())
    assert (tmp_path / "mlp" / "utilisation.png").stat().st_size > 0
    assert rep["ok"] and rep["samples"] == 12 and rep["runs"] == 2 and rep["mismatch"] is None
    assert [n["node"] for n in rep["nodes"]] == ["layers_0", "layers_2", "layers_4"]
    assert all(n["rtl_cycles"] is None and n["model_cycles"] > 0 for n in rep["nodes"])
    assert rep["accuracy"]["hardware"] >= rep["accuracy"]["float"] - 0.1
    assert {t["metric"] for t in rep["targets"]} == {"drop_pp", "agreement_decisive"}


class _WeightFault(GoldenMachine):
    """The golden model on an image whose weight bytes of ``node`` have their sign flipped."""

    name = "faulty"
    node = "layers_2"

    def run(self, program, image):
        image = image.copy()
        r = image.regions[f"{self.node}.p0.b"]
        image.data[r.addr : r.end] ^= 0x80
        return super().run(program, image)


def test_a_faulty_machine_fails_and_is_located(monkeypatch, tmp_path):
    monkeypatch.setattr(sim.network, "_machine", lambda backend, config, **_o: _WeightFault(config))
    res = simulate("mlp", preset("tiny"), samples=6, backend="golden", out_dir=tmp_path,
                   progress=False)
    assert not res.ok
    assert res.checks["final DRAM equal to the golden model's"] is False
    m = res.mismatch
    assert m["run"] == 0 and m["against"] == "golden model"
    assert m["first"]["node"] == "layers_2" and "node layers_2 (layers.2)" in m["text"]
    assert json.loads((tmp_path / "report.json").read_text())["mismatch"]["first"]["node"] == (
        "layers_2")


def test_bad_requests_are_errors():
    from hw.errors import NmxError

    with pytest.raises(NmxError, match="unknown model 'lenet'"):
        simulate("lenet", preset("tiny"))
    with pytest.raises(NmxError, match="backend 'fpga' unknown"):
        simulate("mlp", preset("tiny"), backend="fpga")
    with pytest.raises(NmxError, match="jobs must be an int from 1 to 64, got 0"):
        simulate("mlp", preset("tiny"), jobs=0)


class _Recorder:
    """A machine that records which machine ran which program; the first run of each waits
    until the other machine runs too (so both must run at once)."""

    name = "recorder"

    def __init__(self, ident, log, barrier):
        self.ident, self.log, self.barrier, self.first = ident, log, barrier, True

    def run(self, program, image):
        if self.first:
            self.first = False
            self.barrier.wait(timeout=30)
        self.log.append((self.ident, program))
        return (self.ident, program, image)

    def close(self):
        self.log.append((self.ident, "closed"))


def test_machine_pool_runs_on_every_machine_and_keeps_order():
    import threading

    log = []
    barrier = threading.Barrier(2)
    pool = MachinePool(_Recorder(i, log, barrier) for i in range(2))
    futs = [pool.submit(p, f"image {p}") for p in range(8)]
    got = [f.result() for f in futs]
    assert [(p, im) for _, p, im in got] == [(p, f"image {p}") for p in range(8)]
    assert {who for who, _, _ in got} == {0, 1}
    pool.close()
    assert sorted(x for x in log if x[1] == "closed") == [(0, "closed"), (1, "closed")]


@pytest.mark.rtl
def test_mlp_on_the_rtl_backend_counts_what_the_golden_model_counts(tmp_path):
    """The Verilated accelerator (C++ harness): bit-exact runs; per node and in total the RTL's
    ARRAY_MACS equal the MACs of the golden model's trace of the same program."""
    res = simulate("mlp", preset("tiny"), samples=8, backend="rtl", out_dir=tmp_path,
                   progress=False, jobs=2)
    assert res.ok and res.mismatch is None and all(res.checks.values())
    assert res.checks["per-node runs' final DRAM equal to the golden model's"]
    assert res.timing["jobs"] == 2
    for n in res.nodes:
        assert n["rtl_cycles"] > 0 and n["array_macs"] == n["model_macs"] > 0
        assert n["counters"]["CYCLES"] == n["rtl_cycles"]
    t = res.totals
    assert t["array_macs"] == t["array_macs_model"]
    assert t["per_node_rtl_cycles"] > 0 and t["rtl_cycles"] > 0
    assert res.timing["simulated_cycles_per_second"] > 0
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["backend"] == "rtl" and rep["nodes"][0]["counters"]["ARRAY_MACS"] > 0
