# Two commands, as in README.md: `make demo` and `make test`. Both create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test lint

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and exactly: the local CPU wheel; a range would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[test,triton]'
	# librosa compiles its numba ufuncs on first use (~20 s); do it once here, not inside a test.
	$(PY) -c "import numpy, librosa; librosa.feature.melspectrogram(y=numpy.zeros(4096, 'float32'), sr=12500)"
	# hm2bp's CPU kernels likewise (~40 s); numba caches them in kernels/__pycache__.
	$(PY) -c "from hm2bp.kernels.cpu_backend import warm_up; warm_up()"
	touch $@

# A real MLflow server for the tests that kill and restart one: full MLflow (Flask, uvicorn) in a
# venv of its own, since its pins (python-dateutil) differ from the client's, as on a real cluster.
MLFLOW_VENV ?= .venv-mlflow
$(MLFLOW_VENV)/.installed: constraints.txt
	python3 -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/pip install -q "mlflow==$$(sed -n 's/^mlflow-skinny==//p' constraints.txt)"
	touch $@

# A real S3 server (moto's server mode) for the tests of shards and checkpoints on shared storage:
# a venv of its own too, since botocore pins python-dateutil<3 (constraints-s3.txt: exact pins).
S3_VENV ?= .venv-s3
$(S3_VENV)/.installed: constraints-s3.txt
	python3 -m venv $(S3_VENV)
	$(S3_VENV)/bin/pip install -q -c constraints-s3.txt "moto[server]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/hm2bp demo

# pytest exits 5 when it collects no tests; that is not a failure of the project.
test: $(VENV)/.installed $(MLFLOW_VENV)/.installed $(S3_VENV)/.installed
	$(PY) -m ruff check .
	HM2BP_MLFLOW_SERVER=$(abspath $(MLFLOW_VENV))/bin/mlflow \
	HM2BP_S3_SERVER=$(abspath $(S3_VENV))/bin/moto_server \
	$(PY) -m pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]

lint: $(VENV)/.installed
	$(PY) -m ruff check . && $(PY) -m ruff format --check .
