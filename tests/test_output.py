"""Readable output: explainParams summaries."""

import pytest
from pyspark.ml.param import Params

from skol_spark.stages.params import _SUMMARIZED


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
