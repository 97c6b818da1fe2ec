# One command for the main job, one for the tests; each sets itself up.
#   make demo   train, transform and evaluate on local Spark with synthetic data
#   make test   run the test suite
#   make test-lts   the core tests on the Spark 3.5 LTS stack (.ci/constraints-lts.txt)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-lts install clean journals journals-transfer

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PYSPARK_PYTHON=$(abspath $(PY)) $(PY) -m skol_spark demo

test: $(STAMP)
	PYSPARK_PYTHON=$(abspath $(PY)) $(PY) -m pytest -n 2

# The LTS leg: the runtime's packages first, pinned as on Databricks 15.4/16.4
# LTS ML, then skol_spark under the same pins (an install_requires that wanted
# to replace one of them fails here), then pip check. TensorFlow 2.16 has no
# wheels past Python 3.12.
PYTHON_LTS ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.10 || echo python3)
VENV_LTS ?= .venv-lts
PY_LTS := $(VENV_LTS)/bin/python
STAMP_LTS := $(VENV_LTS)/.installed
LTS_CONSTRAINTS := .ci/constraints-lts.txt
RUNTIME_PACKAGES := pyspark pandas pyarrow numpy tensorflow-cpu keras
# The core tests: fit, transform, handleInvalid, persistence (directory,
# Pipeline, Keras files), the Redis store, the CLI, the version shims.
CORE_TESTS := tests/test_compat.py tests/test_estimator.py tests/test_invalid.py \
	tests/test_persistence.py tests/test_redis_store.py tests/test_cli.py

$(STAMP_LTS): setup.cfg pyproject.toml $(LTS_CONSTRAINTS)
	test -x $(PY_LTS) || $(PYTHON_LTS) -m venv $(VENV_LTS)
	$(PY_LTS) -m pip install --quiet --upgrade pip
	$(PY_LTS) -m pip install --quiet -c $(LTS_CONSTRAINTS) $(RUNTIME_PACKAGES)
	$(PY_LTS) -m pip install --quiet -c $(LTS_CONSTRAINTS) -e ".[test-core]"
	$(PY_LTS) -m pip check
	touch $(STAMP_LTS)

test-lts: $(STAMP_LTS)
	PYSPARK_PYTHON=$(abspath $(PY_LTS)) $(PY_LTS) -m pytest -n 2 $(CORE_TESTS)

clean:
	rm -rf $(VENV) $(VENV_LTS) build dist *.egg-info .pytest_cache

# The real-data comparison of BENCHMARKS.md (needs ../shared/data/skol-annotated):
# BiLSTM, linear-chain CRF and logistic regression on the public split, and
# across journals. JOURNALS_ARGS=--baselines-only skips the BiLSTM.
JOURNALS_ARGS ?=
journals: $(STAMP)
	PYSPARK_PYTHON=$(abspath $(PY)) $(PY) -m skol_spark journals --json journals.json $(JOURNALS_ARGS)

journals-transfer: $(STAMP)
	PYSPARK_PYTHON=$(abspath $(PY)) $(PY) -m skol_spark journals --transfer --json journals-transfer.json $(JOURNALS_ARGS)
