"""Readable output: explainParams summaries, and quiet TensorFlow C++ logs on workers."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.ml.param import Params

from skol_spark.params import _SUMMARIZED

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.connect
def test_explain_params_summarizes_the_network_params(fitted):
    text = fitted.explainParams()
    lines = {line.split(":", 1)[0]: line for line in text.splitlines()}
    for name in _SUMMARIZED:
        value = fitted.getOrDefault(name)
        assert value not in text and len(lines[name]) < 200, lines[name]
    assert f"{len(fitted.getModelWeights()):,} characters" in lines["modelWeights"]
    assert f"<{len(fitted.history['loss'])} epochs of " in lines["trainingHistory"]
    assert "val_macro_f1" in lines["trainingHistory"]
    # Other Params are explained as pyspark does.
    assert lines["windowSize"] == Params.explainParam(fitted, "windowSize")
    assert len(text) < 8000  # ~5,000 characters of Param docs; the weights alone were 33,831


_WORKER = """
import os, sys
import numpy as np
from skol_spark.predict import tensorflow_logs_at_warning
with tensorflow_logs_at_warning():
    print("during:", os.environ.get("TF_CPP_MIN_LOG_LEVEL"), flush=True)
    import keras
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model(np.zeros((1, 3), "float32"))
print("after:", os.environ.get("TF_CPP_MIN_LOG_LEVEL"), flush=True)
model(np.ones((2, 3), "float32"))  # a later task in the same worker
"""


@pytest.mark.parametrize("user_level", [None, "0"], ids=["unset", "user-set-0"])
def test_workers_keep_tensorflow_logs_at_warning_unless_the_user_chose(user_level):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(ROOT)
    if user_level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = user_level
    done = subprocess.run([sys.executable, "-c", _WORKER], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    # cudart_stub's line, and on CPUs with AVX-512 port.cc's oneDNN notice, are printed by absl
    # before TensorFlow's logging starts: no level hides them (seen with TensorFlow 2.21).
    info = [
        line
        for line in done.stderr.splitlines()
        if line.startswith(("I0000", "I tensorflow", "W0000"))
        and "cudart_stub" not in line
        and "oneDNN custom operations are on" not in line
    ]
    if user_level is None:
        assert "during: 2" in done.stdout and "after: None" in done.stdout
        assert info == [], info
    else:  # the user's level is kept, and TensorFlow does log at info level here
        assert "during: 0" in done.stdout and "after: 0" in done.stdout
        assert info, done.stderr
