# NeuralMatrix accelerator toolkit. Every target works on a fresh clone: it sets up .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= default
MODEL ?= bert
SAMPLES ?= 32
RTL_PRESETS ?= tiny default ecp5
PYTEST_WORKERS ?= auto
FPGA_CONFIG ?= ecp5
FPGA_SEEDS ?= 1 2 3
FPGA_FLAGS ?=
# How the whole accelerator routes on the ECP5-85F (docs/fpga.md, "Whole accelerator, sessions
# 12, 14 and 15"): the array's multipliers and the accumulator's block RAMs on fixed sites, router2
# with wider margins, the static placer (timing-driven). Empty it to run nextpnr's defaults.
FPGA_ROUTE_FLAGS ?= --dsp-layout columns --bram-layout 9,5 --pnr-setting router2/bbMargin/x=5 \
	--pnr-setting router2/bbMargin/y=5 --pnr-flags "--placer static"
# Minutes one nextpnr run (one seed) of the whole accelerator may take before it is stopped as
# not routed: router2 can go on iterating on a congested placement without converging.
FPGA_PNR_TIMEOUT ?= 120
FPGA_STAMP := $(VENV)/.fpga-installed
export AMARANTH_USE_YOSYS := builtin

.PHONY: setup rtl sim test test-slow lint bench bench-backend bench-rtl calibrate example synth clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

## Verilog for each preset in RTL_PRESETS, named with the config fingerprint, under build/rtl/.
rtl: $(STAMP)
	for c in $(RTL_PRESETS); do $(BIN)/nmx rtl --config $$c --out build/rtl || exit 1; done

## The main job: a zoo network (MODEL=bert|resnet|mobilenet|vit|gcn|mlp|all) compiled and run on
## the Verilated accelerator, checked against the golden model and PyTorch; report in build/sim/.
sim: $(STAMP)
	$(BIN)/nmx sim --model $(MODEL) --config $(CONFIG) --samples $(SAMPLES)

## The fast test suite (CI runs this).
test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m "not slow" tests tb

## Long sweeps and larger configurations.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m slow tests tb

lint: $(STAMP) rtl
	$(BIN)/ruff check hw compiler sim nmx tb tests examples fpga $(wildcard scripts)
	$(BIN)/python -m sim.lint build/rtl

## Golden-model speed and a tiled GEMM through the cycle model.
bench: $(STAMP)
	$(BIN)/nmx bench golden --m 16
	$(BIN)/nmx bench gemm

## The back end's figures: 512^3 GEMM, ResNet-18 conv stack, BERT-base layer (cycle model).
bench-backend: $(STAMP)
	$(BIN)/python scripts/bench_backend.py gemm
	$(BIN)/python scripts/bench_backend.py conv --layers 2
	$(BIN)/python scripts/bench_backend.py bert

## The fast C++ Verilator path against cocotb (cycles/s) and issue 8's numbers from the RTL's counters.
bench-rtl: $(STAMP)
	$(BIN)/python scripts/bench_rtl.py
	$(BIN)/python scripts/bench_rtl_counters.py

## Refit the cycle model's constants to the RTL (sim/cycle_calibration.json).
calibrate: $(STAMP)
	$(BIN)/python scripts/calibrate_cycle_model.py --write

## The hand-written MLP + GELU + softmax microcode on the golden model, checked bit-exactly.
example: $(STAMP)
	$(BIN)/python examples/build_mlp_image.py --out build/mlp
	$(BIN)/nmx asm examples/mlp.nmasm -o build/mlp/mlp.bin
	$(BIN)/nmx run-golden build/mlp/mlp.bin --dram build/mlp/mlp.dram --show probs:int8:16 --expect probs=build/mlp/probs_int8.npy

$(FPGA_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev,fpga]'
	touch $(FPGA_STAMP)

## FPGA Fmax and resources on an ECP5-85F (docs/fpga.md); minutes, the first run compiles WebAssembly.
synth: $(FPGA_STAMP)
	$(BIN)/python scripts/synth_ecp5.py --config $(FPGA_CONFIG) --top array --seeds $(FPGA_SEEDS) $(FPGA_FLAGS)
	$(BIN)/python scripts/synth_ecp5.py --config $(FPGA_CONFIG) --top accelerator --seeds $(FPGA_SEEDS) \
		--pnr-timeout $(FPGA_PNR_TIMEOUT) $(FPGA_ROUTE_FLAGS) $(FPGA_FLAGS)
	$(BIN)/python scripts/synth_xilinx.py --config $(FPGA_CONFIG)

clean:
	rm -rf build .pytest_cache .ruff_cache .hypothesis .benchmarks
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
