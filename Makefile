# psft-edu: `make compare` runs the main experiment, `make test` runs everything CI checks.
#
# Set-up installs into .venv/. PyTorch comes first, pinned by TORCH_SPEC (default torch==2.13.0),
# so that the package's open range `torch>=2.4` installs nothing more: a machine with a local
# CPU wheel of that version uses it; on Linux, PyPI's wheel of that version is the CUDA build.
# Override, e.g.  make setup TORCH_SPEC="torch==2.13.0" TORCH_INDEX_URL=<a CPU or CUDA wheel index>

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PRESET ?= small
MODEL ?=
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX_URL ?=
STAMP := $(VENV)/.psft-edu-installed
CHROMIUM ?= $(shell command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null || \
                    command -v google-chrome 2>/dev/null)
# make lab: extra flags for `jupyter lab` (e.g. ARGS="--port=8899 --no-browser"); as root, --allow-root is added.
ARGS ?=
USER_ID ?= $(shell id -u)
TEST_ENV := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PSFT_EDU_PRESET=tiny MPLBACKEND=Agg TQDM_DISABLE=1

.PHONY: setup test test-unit test-notebooks test-browser compare lab bench data student book clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(PY) -m pip install --quiet -e ".[test,trl,book,lab]"
	@touch $(STAMP)

# The wheel, fresh-runtime and student-edition tests run in test-unit; the course-site test in test-browser.
test: setup test-unit test-notebooks test-browser

test-unit: setup
	$(VENV)/bin/ruff check .
	$(TEST_ENV) $(PY) -m pytest -q -m "not browser" tests

test-notebooks: setup
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
	  $(TEST_ENV) $(PY) -m pytest -q --nbval-lax -p no:randomly notebooks; \
	else echo "no notebooks yet"; fi

# Needs Chromium (or Chrome): $(CHROMIUM), else Debian's package is installed when running as root.
test-browser: setup
	@if [ -z "$(CHROMIUM)" ]; then \
	  if [ "$(USER_ID)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "no Chromium found: install it, or set CHROMIUM=/path/to/chromium" >&2; exit 1; fi; \
	fi
	$(TEST_ENV) $(if $(CHROMIUM),CHROMIUM=$(CHROMIUM)) $(PY) -m pytest -q -m browser tests

# MODEL=hf:gpt2 (or a folder): a pretrained model as the base, mid-trained on the task world first.
# Run again, it reuses the runs an earlier (or interrupted) call finished with the same settings; FRESH=1 starts over.
compare: setup
	$(PY) -m psft_edu compare --preset $(PRESET) --out runs/compare $(if $(FRESH),--overwrite,--resume) \
	  $(if $(MODEL),--model $(MODEL))

bench: setup
	$(PY) -m psft_edu bench --preset $(PRESET)

data: setup
	$(PY) -m psft_edu data

# Jupyter refuses to run as root unless told to (containers, workshop servers are often root).
lab: setup
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(USER_ID)),--allow-root) $(ARGS) notebooks/

# Workshop kit: student copies of the notebooks in student/ (solution cells removed, exercises kept).
student: setup
	$(PY) -m psft_edu.course student notebooks student

# Course site: static HTML of the committed notebooks in _build/book/html (offline, MathJax included).
book: setup
	$(PY) -m psft_edu.course book notebooks _build/book
	@echo "open _build/book/html/index.html"

clean:
	rm -rf runs student _build .pytest_cache .ruff_cache .hypothesis
