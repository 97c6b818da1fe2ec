"""Spark Connect: the tests marked ``connect`` rerun on a Connect session, and Connect's own checks.

pyspark 4 refuses ``SparkSession.builder.remote("local[2]")`` while a classic
session runs, and once a Connect session started it marks the whole process
as Connect (``is_remote()``), so the two modes cannot share a process.
:func:`test_connect_marked_tests_pass_under_spark_connect` therefore reruns
every test marked ``connect`` in one pytest subprocess with ``--spark-connect``
(collecting only the modules that hold such tests), and hands models across:
there, ``fitted`` is the classic run's model loaded from disk and must predict
the same (with its own and with another window stride), and the
PipelineModel fitted under Connect must load and predict the same here.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CONNECT_EXCHANGE, assert_same_predictions, predictions
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import StringIndexer, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import functions as F

from skol_spark import BiLSTMClassificationModel, BiLSTMClassifier
from skol_spark.compat.connect import check_connect_support, is_remote
from skol_spark.errors import SparkConnectUnsupportedError

ROOT = Path(__file__).resolve().parents[1]


def _dump_predictions(preds, path):
    path.write_text(json.dumps({f"{d}\t{p}": v.tolist() for (d, p), v in preds.items()}))


def _read_predictions(path):
    raw = json.loads(path.read_text())
    return {(k.split("\t")[0], int(k.split("\t")[1])): np.asarray(v) for k, v in raw.items()}


def _assembler_input(train_df):
    """Eight documents with a string label and two feature columns to assemble."""
    names = F.array(*[F.lit(n) for n in ("other", "name", "description")])
    return train_df.filter(F.col("doc_id") < "doc-00008").select(
        "doc_id",
        "line_number",
        names[F.col("label").cast("int")].alias("label_name"),
        F.col("features").alias("base"),
        (vector_to_array("base")[0] * 2).alias("extra"),
    )


# The window stride of the second set of predictions handed across: the Connect run's transform of
# a copied model with another stride equals the classic one (which test_estimator's plain-Keras
# test checks against an independent computation).
OTHER_STRIDE = 5


def _connect_modules():
    """The test modules holding tests marked ``connect`` (found in their source, without importing
    them): the Connect run collects only these."""
    return sorted(str(p) for p in (ROOT / "tests").glob("test_*.py") if "pytest.mark.connect" in p.read_text())


@pytest.mark.slow
def test_connect_marked_tests_pass_under_spark_connect(spark_connect, fitted, train_df, test_df, tmp_path):
    if spark_connect:
        pytest.skip("this is the Connect run")
    fitted.write().save(str(tmp_path / "classic-model"))
    _dump_predictions(predictions(fitted, test_df), tmp_path / "classic-predictions.json")
    strided = fitted.copy({fitted.windowStride: OTHER_STRIDE})
    _dump_predictions(predictions(strided, test_df), tmp_path / "classic-strided-predictions.json")
    command = [
        sys.executable, "-m", "pytest", "--spark-connect", "-m", "connect", "-q", "-x",
        "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'basetemp'}", *_connect_modules(),
    ]
    done = subprocess.run(
        command, cwd=ROOT, env=dict(os.environ, **{CONNECT_EXCHANGE: str(tmp_path)}),
        capture_output=True, text=True, timeout=1800,
    )
    output = (done.stdout + done.stderr).splitlines()
    assert done.returncode == 0, "the Connect run failed:\n" + "\n".join(output[-120:])
    print(next((line for line in reversed(done.stdout.splitlines()) if " passed" in line), ""))
    # The PipelineModel the Connect run fitted and saved loads here, in classic Spark, and predicts the same.
    from_connect = PipelineModel.load(str(tmp_path / "connect-pipeline"))
    assert_same_predictions(
        predictions(from_connect, _assembler_input(train_df)),
        _read_predictions(tmp_path / "connect-predictions.json"),
    )


@pytest.mark.connect
def test_classic_model_predicts_the_same_under_connect(spark_connect, fitted, test_df):
    exchange = os.environ.get(CONNECT_EXCHANGE)
    if not (spark_connect and exchange):
        pytest.skip("runs in the Connect run that test_connect_marked_tests_pass_under_spark_connect starts")
    # conftest's fitted is, in that run, the classic run's model loaded from the shared directory.
    classic_predictions = _read_predictions(Path(exchange) / "classic-predictions.json")
    assert_same_predictions(predictions(fitted, test_df), classic_predictions)
    strided = _read_predictions(Path(exchange) / "classic-strided-predictions.json")
    assert_same_predictions(predictions(fitted.copy({fitted.windowStride: OTHER_STRIDE}), test_df), strided)


@pytest.mark.connect
def test_session_is_the_mode_asked_for(spark, spark_connect):
    assert is_remote() == spark_connect
    assert type(spark).__module__.startswith("pyspark.sql.connect") == spark_connect


@pytest.mark.connect
def test_connect_clients_before_pyspark_4_are_refused(spark_connect):
    check_connect_support("fit", "4.0.0")
    if not spark_connect:
        check_connect_support("fit", "3.5.1")  # classic Spark 3.5 stays supported
        return
    with pytest.raises(
        SparkConnectUnsupportedError,
        match=r"fit on Spark Connect needs pyspark >= 4\.0 on the client\. Received: pyspark 3\.5\.1, "
        r"whose Connect DataFrame has no toArrow\(\)",
    ):
        check_connect_support("fit", "3.5.1")
    with pytest.raises(SparkConnectUnsupportedError, match="saving on Spark Connect needs pyspark >= 4.0"):
        check_connect_support("saving", "3.4.0")


@pytest.mark.connect
def test_overwrite_empties_the_directory_and_plain_save_refuses(fitted, tmp_path):
    path = tmp_path / "model"
    fitted.save(str(path))
    (path / "stale").mkdir()
    (path / "stale" / "part-0").write_text("left from an older save")
    fitted.write().overwrite().save(str(path))
    assert sorted(p.name for p in path.iterdir()) == ["metadata", "weights"]
    with pytest.raises(Exception, match="(?i)already exists"):
        fitted.save(str(path))
    assert BiLSTMClassificationModel.load(str(path)).getModelWeights() == fitted.getModelWeights()


@pytest.mark.connect
def test_pipeline_with_string_indexer_and_vector_assembler_round_trip(spark_connect, train_df, tiny_params, tmp_path):
    if not spark_connect:
        pytest.skip("classic Spark: test_persistence's Pipeline test covers this; here it would only add time")
    raw = _assembler_input(train_df)
    pipeline = Pipeline(
        stages=[
            StringIndexer(inputCol="label_name", outputCol="label"),
            VectorAssembler(inputCols=["base", "extra"], outputCol="features"),
            BiLSTMClassifier(**dict(tiny_params, epochs=1)),
        ]
    )
    pipeline.write().overwrite().save(str(tmp_path / "pipeline"))
    stages = Pipeline.load(str(tmp_path / "pipeline")).getStages()
    assert [type(s) for s in stages] == [StringIndexer, VectorAssembler, BiLSTMClassifier]
    assert stages[-1].getEpochs() == 1
    fitted = pipeline.fit(raw)  # trains the BiLSTM on a Connect DataFrame
    model = fitted.stages[-1]
    assert sorted(model.labels_) == ["description", "name", "other"] and model.getNumFeatures() == 9
    path = str(tmp_path / "pipeline_model")
    fitted.write().overwrite().save(path)
    fitted.write().overwrite().save(path)  # overwriting a saved PipelineModel works too
    loaded = PipelineModel.load(path)
    assert loaded.stages[-1].uid == model.uid
    expected = predictions(fitted, raw)
    assert_same_predictions(predictions(loaded, raw), expected)
    exchange = os.environ.get(CONNECT_EXCHANGE)
    if exchange:  # for the classic run to load
        fitted.write().save(os.path.join(exchange, "connect-pipeline"))
        _dump_predictions(expected, Path(exchange) / "connect-predictions.json")
