# One command for the main job, one for the tests; each sets itself up.
#   make demo   train, transform and evaluate on local Spark with synthetic data
#               (installs .[spark,tensorflow] only)
#   make test   run the main test suite (everything not marked slow; < 10 min)
#   make test-slow   the end-to-end tests marked slow: spark-submit, local-cluster,
#               a Spark Connect server, notebooks, data-parallel workers
#   make test-lts   the core tests on the Spark 3.5 LTS stack (.ci/constraints-lts.txt)
#   make test-spark40   the core tests on Spark 4.0 (.ci/constraints-spark40.txt)
#   make test-spark41   the core tests on Spark 4.1 (.ci/constraints-spark41.txt)
#   make test-spark42   the core tests on Spark 4.2 (.ci/constraints-spark42.txt)
#   make lint   ruff check with the project's config (pyproject.toml)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# One stamp per set of extras in the venv: the demo needs pyspark and TensorFlow only,
# the tests everything (JAX, MLflow, the notebooks' kernel, ...).
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: demo test test-slow test-lts test-spark40 test-spark41 test-spark42 lint install clean journals journals-transfer journals-lovo

$(STAMP): EXTRAS := test
$(DEMO_STAMP): EXTRAS := spark,tensorflow
$(STAMP) $(DEMO_STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP)

demo: $(DEMO_STAMP)
	PYSPARK_PYTHON=$(abspath $(PY)) $(PY) -m skol_spark demo

# Two test processes (pytest-xdist), each with its own local Spark (DEVELOPERS.md). loadfile:
# a test file runs in one of them, so its module fixtures (fitted models, a data-parallel fit)
# are built once, not once in each process that draws one of its tests.
PYTEST := PYSPARK_PYTHON=$(abspath $(PY)) $(PY) -m pytest -n 2 --dist loadfile --durations=15

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
#   spark41   Spark 4.1 (Databricks 18): the Arrow UDF path on the oldest
#             pandas (2.2), pyarrow (15) and numpy (1.26) pyspark 4.1 accepts
#   spark42   Spark 4.2: pyarrow 18 (its floor), numpy 2.1, pandas 2.3
# TensorFlow 2.16 has no wheels past Python 3.12.
PINNED_LEGS := lts spark40 spark41 spark42
PYTHON_PINNED ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.10 || echo python3)
RUNTIME_PACKAGES := pyspark pandas pyarrow numpy tensorflow-cpu keras
# The core tests (marked core): fit, transform (Keras and ONNX Runtime), handleInvalid, persistence
# (directory, Pipeline, Keras files), the Redis store,
# Arrow and vector conversion, the version shims, the streaming error: what
# differs between the lines. The main leg runs every test.
CORE_TESTS := tests/test_compat.py tests/test_estimator.py tests/test_invalid.py \
	tests/test_persistence.py tests/test_redis_store.py tests/test_streaming.py \
	tests/test_fast_inference.py

# --no-compile: .ci/run installs these venvs beside the slow leg, and compiling every
# module's bytecode up front was half of an install's CPU (54 s of user time against
# 23 s for the lts venv); the core tests compile what they import.
.PRECIOUS: .venv-%/.installed
.venv-%/.installed: .ci/constraints-%.txt setup.cfg pyproject.toml
	test -x .venv-$*/bin/python || $(PYTHON_PINNED) -m venv .venv-$*
	.venv-$*/bin/python -m pip install --quiet --upgrade pip
	.venv-$*/bin/python -m pip install --quiet --no-compile -c $< $(RUNTIME_PACKAGES)
	.venv-$*/bin/python -m pip install --quiet --no-compile -c $< -e ".[test-core,fast]" $(RUNTIME_PACKAGES)
	.venv-$*/bin/python -m pip check
	touch $@

# One pytest process a leg: its 26 tests took 100 s so, 111-117 s in two (each paying a Spark
# start, the TensorFlow import and the fitted fixtures); .ci/run runs two legs side by side.
$(addprefix test-,$(PINNED_LEGS)): test-%: .venv-%/.installed
	PYSPARK_PYTHON=$(abspath .venv-$*/bin/python) .venv-$*/bin/python -m pytest -m core $(CORE_TESTS)

clean:
	rm -rf $(VENV) $(addprefix .venv-,$(PINNED_LEGS)) build dist *.egg-info .pytest_cache

# The real-data comparison of BENCHMARKS.md (needs ../shared/data/skol-annotated):
# BiLSTM, the feature-rich and the plain linear-chain CRF and logistic
# regression on the public split, each journal left out (transfer), and each
# of the nine volumes left out (lovo). JOURNALS_ARGS=--baselines-only skips
# the BiLSTM; JOURNALS_ARGS="--folds Mycotaxon/Vol056" runs one LOVO fold.
JOURNALS_ARGS ?=
journals: $(STAMP)
	PYSPARK_PYTHON=$(abspath $(PY)) $(PY) -m skol_spark journals --json journals.json $(JOURNALS_ARGS)

journals-transfer: $(STAMP)
	PYSPARK_PYTHON=$(abspath $(PY)) $(PY) -m skol_spark journals --transfer --json journals-transfer.json $(JOURNALS_ARGS)

journals-lovo: $(STAMP)
	PYSPARK_PYTHON=$(abspath $(PY)) $(PY) -m skol_spark journals --lovo --json journals-lovo.json $(JOURNALS_ARGS)
