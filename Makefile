# The install path is the same for users, CI and the Docker images:
#   make install  -> .venv with pinned torch, sam2 (hash-pinned sdist, no CUDA build), the project
#   make test     -> install, start the services the tests need, run the whole suite
#   make demo     -> install, index example photos, search them, serve the API
#   make install-user -> $(USER_VENV) with only what the product needs (no test, scale or dev tools);
#                    extras on top: pip install ".[postgres]", ".[parquet]", ".[milvus]", ".[ray]"
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
USER_VENV ?= .venv-user
UPIP := $(USER_VENV)/bin/python -m pip

.PHONY: install install-user test test-fast demo serve bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt requirements/sam2.txt requirements/test.txt requirements/scale.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -c requirements/constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -c requirements/constraints.txt "numpy>=1.24" "pillow>=10" "tqdm>=4.66" "hydra-core>=1.3.2" "iopath>=0.1.10"
	SAM2_BUILD_CUDA=0 $(PIP) install -q --no-build-isolation --no-deps --require-hashes -r requirements/sam2.txt
	$(PIP) install -q -c requirements/constraints.txt -e ".[dev,postgres,eval,mcp]"
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(PIP) install -q -c requirements/constraints.txt -r requirements/test.txt
	$(PIP) install -q -c requirements/constraints.txt -r requirements/scale.txt
	touch $(STAMP)

# The product alone: the same pinned torch and hash-pinned sam2 as `install`, then the project
# (not editable) without extras.
install-user:
	test -x $(USER_VENV)/bin/python || $(PYTHON) -m venv $(USER_VENV)
	$(UPIP) install -q --upgrade pip setuptools wheel
	$(UPIP) install -q -c requirements/constraints.txt torch==2.14.1 torchvision==0.29.1
	$(UPIP) install -q -c requirements/constraints.txt "numpy>=1.24" "pillow>=10" "tqdm>=4.66" "hydra-core>=1.3.2" "iopath>=0.1.10"
	SAM2_BUILD_CUDA=0 $(UPIP) install -q --no-build-isolation --no-deps --require-hashes -r requirements/sam2.txt
	$(UPIP) install -q -c requirements/constraints.txt .

test: install
	bash .ci/system-deps.sh
	bash .ci/services.sh
	$(PY) -m pytest -ra $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -ra -m "not slow" $(PYTEST_ARGS)

demo: install
	$(VENV)/bin/regionsearch demo

serve: install
	$(VENV)/bin/regionsearch serve

clean:
	rm -rf $(VENV) regionsearch-data
