# One command for the main job, one for the tests; each sets itself up.
#   make demo   train, transform and evaluate on local Spark with synthetic data
#   make test   run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean journals journals-transfer

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

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache

# The real-data comparison of BENCHMARKS.md (needs ../shared/data/skol-annotated):
# BiLSTM, linear-chain CRF and logistic regression on the public split, and
# across journals. JOURNALS_ARGS=--baselines-only skips the BiLSTM.
JOURNALS_ARGS ?=
journals: $(STAMP)
	PYSPARK_PYTHON=$(abspath $(PY)) $(PY) -m skol_spark journals --json journals.json $(JOURNALS_ARGS)

journals-transfer: $(STAMP)
	PYSPARK_PYTHON=$(abspath $(PY)) $(PY) -m skol_spark journals --transfer --json journals-transfer.json $(JOURNALS_ARGS)
