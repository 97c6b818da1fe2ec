"""BiLSTMClassifier and its model on a real local Spark."""

import numpy as np
import pytest
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import functions as F

from skol_spark import BiLSTMClassificationModel, BiLSTMClassifier
from skol_spark.skol.datasets import SYNTHETIC_LABELS


def _by_key(rows, key=("doc_id", "line_number")):
    return {tuple(r[k] for k in key): r for r in rows}


@pytest.mark.core
@pytest.mark.connect
def test_transform_keeps_every_row_and_column_and_adds_outputs(fitted, test_df):
    out = fitted.transform(test_df.withColumn("text", F.concat(F.lit("line "), F.col("line_number"))))
    assert out.columns == ["doc_id", "line_number", "label", "features", "text", "prediction", "probability", "rawPrediction"]
    rows = out.collect()
    originals = _by_key(test_df.collect())
    assert len(rows) == len(originals) == len(_by_key(rows))
    for row in rows:
        original = originals[(row.doc_id, row.line_number)]
        assert row.label == original.label
        np.testing.assert_array_equal(row.features.toArray(), original.features.toArray())
        assert row.text == f"line {row.line_number}"
        probs = row.probability.toArray()
        assert probs.shape == (3,) and probs.sum() == pytest.approx(1.0, abs=1e-6)
        assert row.prediction == float(probs.argmax())
        np.testing.assert_allclose(np.exp(row.rawPrediction.toArray()), probs, rtol=1e-6)


def test_evaluator_works_unchanged_and_model_learns(fitted, test_df):
    from skol_spark.stages.evaluation import classification_report

    out = fitted.transform(test_df).cache()
    accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(out)
    f1 = MulticlassClassificationEvaluator(metricName="f1").evaluate(out)
    log_loss = MulticlassClassificationEvaluator(metricName="logLoss").evaluate(out)
    assert 0 < accuracy <= 1 and 0 < f1 <= 1 and np.isfinite(log_loss)
    report = classification_report(out, fitted.labels_)
    assert report.accuracy == pytest.approx(accuracy)
    # Always answering the majority class scores one F1 of at most 1 and two of 0.
    assert report.macro_f1 > 0.5


@pytest.mark.connect
def test_model_carries_uid_labels_weights_history_and_copies(fitted, tiny_params):
    assert fitted.uid.startswith("BiLSTMClassifier_")
    assert fitted.labels_ == SYNTHETIC_LABELS and fitted.numClasses == 3
    assert fitted.getWindowSize() == tiny_params["windowSize"]
    weights = fitted.getClassWeightsUsed()
    assert len(weights) == 3 and weights[1] > weights[2] > weights[0]  # inverse frequency
    history = fitted.history
    assert len(history["loss"]) == tiny_params["epochs"]
    assert len(history["val_macro_f1"]) == tiny_params["epochs"] and "val_loss" in history
    copy = fitted.copy({fitted.predictionCol: "label_hat"})
    assert copy.uid == fitted.uid and copy.getPredictionCol() == "label_hat"
    assert fitted.getPredictionCol() == "prediction"
    assert copy.getModelWeights() == fitted.getModelWeights()
    assert isinstance(copy, BiLSTMClassificationModel)


def test_weight_strategy_uses_spark_counts(spark, train_df, tiny_params):
    counts = {r.label: r["count"] for r in train_df.groupBy("label").count().collect()}
    n = [counts[0.0], counts[1.0], counts[2.0]]
    params = dict(tiny_params, epochs=1)
    model = BiLSTMClassifier(weightStrategy="balanced", **params).fit(train_df)
    np.testing.assert_allclose(model.getClassWeightsUsed(), [sum(n) / (3 * c) for c in n])
    explicit = BiLSTMClassifier(classWeights={"Nomenclature": 5.0}, **params).fit(train_df)
    assert explicit.getClassWeightsUsed() == [1.0, 5.0, 1.0]


def _global_draws():
    """One draw from each process-wide generator fit could move: Python, NumPy, TensorFlow."""
    import random

    import tensorflow as tf

    return random.random(), float(np.random.random()), float(tf.random.uniform(()))


def _keras_global_state():
    """The state of Keras' global seed generator (``keras.utils.set_random_seed`` does not reset
    it on every supported Keras, so it is compared directly rather than by reseeding)."""
    import random

    from keras.src.random.seed_generator import global_seed_generator

    python_state = random.getstate()  # creating the generator draws its seed from Python's
    try:
        return np.array(global_seed_generator().state).tolist()
    finally:
        random.setstate(python_state)


def _seed_globals(seed):
    import keras

    keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow


def test_same_seed_gives_same_predictions_and_fit_leaves_the_global_generators_alone(
    train_df, test_df, tiny_params
):
    params = dict(tiny_params, epochs=2, dropout=0.2)
    _seed_globals(11)
    expected = _global_draws()
    _seed_globals(11)
    keras_state = _keras_global_state()
    a = BiLSTMClassifier(**params).fit(train_df)
    assert _keras_global_state() == keras_state
    assert _global_draws() == expected  # neither reseeded nor drawn from by fit
    _seed_globals(12)  # other global seeds: the same model all the same
    b = BiLSTMClassifier(**params).fit(train_df)
    other = BiLSTMClassifier(**{**params, "seed": params["seed"] + 1}).fit(train_df)
    pa_, pb, po = (_by_key(m.transform(test_df).collect()) for m in (a, b, other))
    assert pa_.keys() == pb.keys() == po.keys() and len(pa_) == test_df.count()
    for key, row in pa_.items():
        np.testing.assert_allclose(row.probability.toArray(), pb[key].probability.toArray(), atol=1e-5)
    differs = [not np.allclose(row.probability.toArray(), po[key].probability.toArray(), atol=1e-3)
               for key, row in pa_.items()]
    assert sum(differs) > len(differs) // 2  # the seed Param decides the network


def test_labels_param_and_integer_doc_ids_and_array_features(spark, tiny_params):
    from skol_spark.skol.datasets import make_synthetic_documents

    df = make_synthetic_documents(spark, num_docs=10, mean_length=30, num_features=8, seed=9, as_vectors=False)
    df = df.select(
        F.regexp_extract("doc_id", r"(\d+)", 1).cast("long").alias("doc"),
        F.col("line_number").cast("double").alias("pos"),
        F.col("label").cast("double").alias("y"),  # cast drops the ML attributes
        "features",
    )
    model = BiLSTMClassifier(
        docIdCol="doc", positionCol="pos", labelCol="y", labels=["m", "n", "d"], **dict(tiny_params, epochs=1)
    ).fit(df)
    assert model.labels_ == ["m", "n", "d"]
    out = model.transform(df)
    assert out.count() == df.count()
    unnamed = BiLSTMClassifier(docIdCol="doc", positionCol="pos", labelCol="y", **dict(tiny_params, epochs=1)).fit(df)
    assert unnamed.labels_ == ["0", "1", "2"]


def test_one_line_documents_long_documents_and_overlapping_stride(spark, fitted):
    from skol_spark.skol.datasets import make_synthetic_documents

    long_doc = make_synthetic_documents(spark, num_docs=1, mean_length=500, num_features=8, seed=11)
    one_line = long_doc.filter("line_number = 0").withColumn("doc_id", F.lit("single"))
    df = long_doc.unionByName(one_line)
    for stride in (16, 5):
        out = fitted.copy({fitted.windowStride: stride}).transform(df).collect()
        assert len(out) == df.count()
        assert all(abs(sum(r.probability) - 1) < 1e-6 for r in out)
    single = [r for r in out if r.doc_id == "single"]
    assert len(single) == 1


def test_model_is_built_once_per_python_worker(spark, fitted, test_df):
    digest = fitted.trainedNetwork.digest

    def report(frames):
        import os

        import pandas as pd

        from skol_spark.transform import predict

        for _ in frames:
            pass
        yield pd.DataFrame({"pid": [os.getpid()], "builds": [predict.build_count(digest)]})

    def builds() -> dict[int, int]:
        """Each reused Python worker's builds of this network so far (earlier tests of this
        session may have built it, and their models may have pushed it out of the cache since)."""
        return {r.pid: r.builds for r in spark.range(0, 32, 1, 16).mapInPandas(report, "pid long, builds long").collect()}

    before = builds()
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "40")
    try:
        labelled = fitted.transform(test_df.repartition(8)).agg(F.count("prediction")).first()[0]
        # Every row labelled, in at least 10 Arrow batches of 40 rows.
        assert labelled == test_df.count() >= 400
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    after = builds()
    during = {pid: n - before.get(pid, 0) for pid, n in after.items()}
    assert max(during.values()) <= 1, (before, after)  # once per worker, not once per batch
    assert sum(after.values()) >= 1, after  # the workers that labelled built it (now or earlier)
    assert len(after) <= 2  # local[2]: at most two reused workers


@pytest.mark.core
@pytest.mark.connect
def test_pandas_udf_path_gives_the_same_output(monkeypatch, fitted, test_df):
    """Spark < 4.1 has no arrow_udf; its pandas path must agree with the Arrow one."""
    from skol_spark.stages import model as estimator

    arrow_rows = _by_key(fitted.transform(test_df).collect())
    monkeypatch.setattr(estimator, "USE_ARROW_UDF", False)
    pandas_out = fitted.transform(test_df)
    assert isinstance(pandas_out.schema["probability"].dataType, VectorUDT)
    for key, row in _by_key(pandas_out.collect()).items():
        assert row.prediction == arrow_rows[key].prediction
        np.testing.assert_allclose(row.probability.toArray(), arrow_rows[key].probability.toArray(), rtol=1e-5)


@pytest.mark.core
def test_sparse_vector_features(spark, tiny_params):
    from pyspark.ml.linalg import Vectors

    rows = []
    for doc in range(6):
        for pos in range(20):
            label = 1.0 if pos % 5 == 0 else 0.0
            vec = Vectors.sparse(50, [int(label), 10 + pos % 7], [1.0, 0.5])
            rows.append((f"d{doc}", pos, label, vec))
    df = spark.createDataFrame(rows, ["doc_id", "line_number", "label", "features"])
    model = BiLSTMClassifier(**dict(tiny_params, epochs=2)).fit(df)
    assert model.getNumFeatures() == 50
    assert model.transform(df).count() == len(rows)


def test_transform_equals_the_network_run_over_whole_documents_in_plain_keras(fitted, test_df):
    """An independent computation of the same thing: windows cut here, the Keras network called
    on each, overlapping windows averaged; no skol_spark windowing code involved. (Under Spark
    Connect, test_connect checks the same transforms, this stride's too, equal the classic ones.)"""
    import keras
    from conftest import predictions

    window, stride = fitted.getWindowSize(), 5
    network = fitted.getKerasModel()
    rows = sorted(test_df.collect(), key=lambda r: (r.doc_id, r.line_number))
    documents: dict = {}
    for row in rows:
        documents.setdefault(row.doc_id, []).append(row)
    expected = {}
    for doc, doc_rows in documents.items():
        x = np.array([r.features.toArray() for r in doc_rows], dtype="float32")
        n = len(x)
        starts = list(range(0, max(n - window, 0) + 1, stride))
        if starts[-1] + window < n:
            starts.append(n - window)  # the last window ends with the document
        sums, counts = np.zeros((n, fitted.numClasses)), np.zeros(n)
        for start in starts:
            length = min(window, n - start)
            batch = np.zeros((1, window, x.shape[1]), dtype="float32")
            batch[0, :length] = x[start : start + length]
            mask = np.zeros((1, window), dtype=bool)
            mask[0, :length] = True
            probs = keras.ops.convert_to_numpy(network([batch, mask], training=False))[0, :length]
            sums[start : start + length] += probs
            counts[start : start + length] += 1
        for row, probs in zip(doc_rows, sums / counts[:, None]):
            expected[(doc, row.line_number)] = probs
    got = predictions(fitted.copy({fitted.windowStride: stride}), test_df)
    assert got.keys() == expected.keys()
    for key, probs in expected.items():
        np.testing.assert_allclose(got[key], probs, atol=1e-5, err_msg=str(key))
