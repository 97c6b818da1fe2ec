# One command for the main job, one for the tests; each sets itself up.
#   make demo   train, transform and evaluate on local Spark with synthetic data
#   make test   run the main test suite (everything not marked slow; < 10 min)
#   make test-slow   the end-to-end tests marked slow: spark-submit, local-cluster,
#               a Spark Connect server, notebooks, data-parallel workers
#   make test-lts   the core tests on the Spark 3.5 LTS stack (.ci/constraints-lts.txt)
#   make test-spark40   the core tests on Spark 4.0 (.ci/constraints-spark40.txt)
#   make lint   ruff check with the project's config (pyproject.toml)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-lts test-spark40 lint install clean journals journals-transfer

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PYSPARK_PYTHON=$(abspath $(PY)) $(PY) -m skol_spark demo

# Two test processes (pytest-xdist), each with its own local Spark (DEVELOPERS.md).
PYTEST := PYSPARK_PYTHON=$(abspath $(PY)) $(PY) -m pytest -n 2

test: $(STAMP)
	$(PYTEST) -m "not slow"

test-slow: $(STAMP)
	$(PYTEST) -m slow

lint: $(STAMP)
	$(PY) -m ruff check skol_spark tests bench

# The pinned legs, one venv each (.venv-<leg>): the runtime's packages first,
# pinned by .ci/constraints-<leg>.txt as the runtime has them, then skol_spark
# with its fast extra under the same pins, resolved beside the runtime's
# packages so that pip keeps to their requirements (onnxruntime needs a
# protobuf, which TensorFlow 2.16 holds below 5); an install_requires that
# wanted to replace one of them fails here; then pip check; then the core tests.
#   lts       Spark 3.5 LTS (Databricks 14.3/15.4/16.4 LTS ML, EMR 7, Dataproc 2.2)
#   spark40   Spark 4.0 (Databricks 17.3 LTS): the pandas UDF path, with the
#             newest pandas, pyarrow, numpy and TensorFlow
# TensorFlow 2.16 has no wheels past Python 3.12.
PINNED_LEGS := lts spark40
PYTHON_PINNED ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.10 || echo python3)
RUNTIME_PACKAGES := pyspark pandas pyarrow numpy tensorflow-cpu keras
# The core tests: fit, transform (and its ONNX Runtime path), handleInvalid, persistence (directory,
# Pipeline, Keras files), the Redis store, the CLI, the version shims.
CORE_TESTS := tests/test_compat.py tests/test_estimator.py tests/test_invalid.py \
	tests/test_persistence.py tests/test_redis_store.py tests/test_cli.py tests/test_fast_inference.py

.PRECIOUS: .venv-%/.installed
.venv-%/.installed: .ci/constraints-%.txt setup.cfg pyproject.toml
	test -x .venv-$*/bin/python || $(PYTHON_PINNED) -m venv .venv-$*
	.venv-$*/bin/python -m pip install --quiet --upgrade pip
	.venv-$*/bin/python -m pip install --quiet -c $< $(RUNTIME_PACKAGES)
	.venv-$*/bin/python -m pip install --quiet -c $< -e ".[test-core,fast]" $(RUNTIME_PACKAGES)
	.venv-$*/bin/python -m pip check
	touch $@

$(addprefix test-,$(PINNED_LEGS)): test-%: .venv-%/.installed
	PYSPARK_PYTHON=$(abspath .venv-$*/bin/python) .venv-$*/bin/python -m pytest -n 2 $(CORE_TESTS)

clean:
	rm -rf $(VENV) $(addprefix .venv-,$(PINNED_LEGS)) build dist *.egg-info .pytest_cache

# The real-data comparison of BENCHMARKS.md (needs ../shared/data/skol-annotated):
# BiLSTM, linear-chain CRF and logistic regression on the public split, and
# across journals. JOURNALS_ARGS=--baselines-only skips the BiLSTM.
JOURNALS_ARGS ?=
journals: $(STAMP)
	PYSPARK_PYTHON=$(abspath $(PY)) $(PY) -m skol_spark journals --json journals.json $(JOURNALS_ARGS)

journals-transfer: $(STAMP)
	PYSPARK_PYTHON=$(abspath $(PY)) $(PY) -m skol_spark journals --transfer --json journals-transfer.json $(JOURNALS_ARGS)
