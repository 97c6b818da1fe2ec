"""trainingEngine: the driver fit on JAX, in a child process of the driver (skol_spark.fit.jax_driver).

Real local Spark and a real JAX child process. The choice of engine is a
pure function (no Spark); the fits compare a JAX fit with the TensorFlow fit
of the same Params: the same history keys and a model of the same quality
that saves, loads and predicts like any other.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import psutil
import pytest
from conftest import assert_same_predictions, macro_f1_of, predictions, skol_log_messages

from skol_spark import BiLSTMClassificationModel, BiLSTMClassifier
from skol_spark.errors import InvalidRowError, TrainingEngineError
from skol_spark.fit.jax_driver import JAX_FROM_STEPS, choose_engine, estimated_steps

needs_jax = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None and not os.environ.get("CI"),
    reason="jax is not installed (pip install -e '.[test]')",
)
TRAINING = dict(validation_fraction=0.0, window_size=50, batch_size=16, ensemble_size=3, epochs=8)


def _children() -> list[psutil.Process]:
    """This process's live JAX training children."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "skol_spark.fit.distributed.worker" in " ".join(p.cmdline()):
                found.append(p)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):  # ended (another test's, or being reaped)
            pass
    return found


def test_estimated_steps_count_every_network_and_epoch():
    # 40,000 rows in windows of 50, batches of 16: 50 steps an epoch, 8 epochs, 3 networks.
    assert estimated_steps(40_000, TRAINING) == 3 * 8 * 50
    assert estimated_steps(40_000, {**TRAINING, "validation_fraction": 0.5}) == 3 * 8 * 25


@pytest.mark.parametrize(
    "engine, output_layer, use_gpu, steps, expected",
    [
        ("auto", "softmax", False, JAX_FROM_STEPS, "jax"),  # a long fit pays for the child's start
        ("auto", "softmax", False, JAX_FROM_STEPS - 1, "tensorflow"),  # a short one does not
        ("auto", "crf", False, 10**6, "tensorflow"),  # the CRF wrapper trains on TensorFlow
        ("auto", "softmax", True, 10**6, "tensorflow"),  # useGpu: TensorFlow's GPU
        ("tensorflow", "softmax", False, 10**6, "tensorflow"),
        ("jax", "softmax", False, 1, "jax"),
    ],
)
def test_auto_trains_on_jax_only_where_it_pays(engine, output_layer, use_gpu, steps, expected):
    if expected == "jax" and engine == "auto" and importlib.util.find_spec("jax") is None:
        expected = "tensorflow"
    assert choose_engine(engine, output_layer=output_layer, use_gpu=use_gpu, steps=steps) == expected


def test_auto_without_jax_trains_on_tensorflow(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)  # how Python marks a module that cannot be imported
    assert choose_engine("auto", output_layer="softmax", use_gpu=False, steps=10**6) == "tensorflow"


def test_param_errors(train_df, tiny_params):
    with pytest.raises(ValueError, match=r"Expected trainingEngine to be one of 'auto', 'tensorflow', 'jax'"):
        BiLSTMClassifier(trainingEngine="torch")
    with pytest.raises(ValueError, match=r"Expected outputLayer='softmax' with trainingEngine='jax'.*'crf'"):
        BiLSTMClassifier(trainingEngine="jax", outputLayer="crf", **tiny_params).fit(train_df)
    with pytest.raises(ValueError, match=r"Expected useGpu=False with trainingEngine='jax'"):
        BiLSTMClassifier(trainingEngine="jax", useGpu=True, **tiny_params).fit(train_df)


def test_jax_without_the_package_is_an_error(monkeypatch, train_df, tiny_params):
    monkeypatch.setitem(sys.modules, "jax", None)
    with pytest.raises(TrainingEngineError, match=r"trainingEngine='jax' needs the jax package on the driver"):
        BiLSTMClassifier(trainingEngine="jax", **tiny_params).fit(train_df)


@needs_jax
def test_an_invalid_row_fails_on_the_driver_and_leaves_no_child(train_df, tiny_params):
    from pyspark.sql import functions as F

    broken = train_df.withColumn(
        "features",
        F.when((F.col("doc_id") == "doc-00003") & (F.col("line_number") == 5), F.lit(None)).otherwise(
            F.col("features")
        ),
    )
    with pytest.raises(InvalidRowError, match=r"'features'.*'doc-00003', line_number=5"):
        BiLSTMClassifier(trainingEngine="jax", **tiny_params).fit(broken)
    assert not _children()


@pytest.fixture(scope="module")
def both_engines(train_df, tiny_params):
    """The same Params (a sparse-input ensemble with validation rows and early stopping) fit by each engine."""
    params = {**tiny_params, "embeddingSize": 4, "ensembleSize": 2, "validationFraction": 0.2,
              "earlyStoppingPatience": 2, "epochs": 6, "tuneThresholds": True}
    with skol_log_messages() as messages:
        on_jax = BiLSTMClassifier(trainingEngine="jax", **params).fit(train_df)
    on_tensorflow = BiLSTMClassifier(trainingEngine="tensorflow", **params).fit(train_df)
    return on_jax, on_tensorflow, messages


@needs_jax
def test_a_jax_fit_keeps_the_tensorflow_fits_history_and_quality(both_engines, test_df):
    on_jax, on_tensorflow, messages = both_engines
    assert any(m.startswith("driver fit on JAX: ") for m in messages), messages
    assert not _children()
    assert on_jax.history.keys() == on_tensorflow.history.keys()
    assert len(on_jax.history["best_epoch"]) == 2 and 0 <= on_jax.history["ensemble_val_macro_f1"][0] <= 1
    assert on_jax.history["loss"][-1] < on_jax.history["loss"][0]
    assert on_jax.getThresholds() is not None and len(on_jax.getThresholds()) == on_jax.numClasses
    assert on_jax.getTrainingEngine() == "jax" and on_jax.getEnsembleSize() == 2
    assert abs(macro_f1_of(on_jax, test_df) - macro_f1_of(on_tensorflow, test_df)) < 0.1
    assert macro_f1_of(on_jax, test_df) > 0.5


@needs_jax
def test_a_jax_fit_saves_loads_and_predicts_like_any_other_model(both_engines, test_df, tmp_path):
    on_jax = both_engines[0]
    on_jax.save(str(tmp_path / "model"))
    loaded = BiLSTMClassificationModel.load(str(tmp_path / "model"))
    assert_same_predictions(predictions(on_jax, test_df), predictions(loaded, test_df))


@needs_jax
def test_a_jax_fit_of_sparse_rows_warm_starts_from_a_tensorflow_fit(spark, train_df, tiny_params):
    from pyspark.ml.functions import vector_to_array
    from pyspark.ml.linalg import SparseVector, VectorUDT
    from pyspark.sql import functions as F

    wide = F.udf(
        lambda v: SparseVector(1000, {i * 97 % 1000: float(x) for i, x in enumerate(v) if x}), VectorUDT()
    )
    sparse = train_df.withColumn("features", wide(vector_to_array("features")))
    params = {**tiny_params, "embeddingSize": 4, "epochs": 2}
    first = BiLSTMClassifier(trainingEngine="tensorflow", **params).fit(sparse)
    with skol_log_messages() as messages:
        warm = BiLSTMClassifier(trainingEngine="jax", initialModel=first, **{**params, "epochs": 1}).fit(sparse)
    [summary] = [m for m in messages if m.startswith("driver fit on JAX: ")]
    assert "row-sparse steps" in summary and "one rank: nothing exchanged" in summary, summary
    assert warm.getNumFeatures() == 1000
    assert warm.history["loss"][0] < first.history["loss"][0]  # started from the trained weights
