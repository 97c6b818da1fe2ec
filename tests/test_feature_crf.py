"""The feature-rich CRF as a stage (skol_spark.skol.feature_crf) and ProbabilityBlend (skol_spark.stages.blend)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED_DATA
from pyspark.ml.linalg import Vectors, VectorUDT
from pyspark.sql import types as T

from skol_spark.stages.blend import ProbabilityBlend, ProbabilityBlendModel, blend_probabilities, prior_bias

JOURNALS = SHARED_DATA / "journals"
needs_data = pytest.mark.skipif(
    not JOURNALS.is_dir(), reason=f"SKOL annotated journals not found at {JOURNALS} (../shared is absent)"
)
SCHEMA = T.StructType([
    T.StructField("id", T.IntegerType()), T.StructField("label", T.DoubleType()),
    T.StructField("a", VectorUDT()), T.StructField("b", VectorUDT()),
])


@pytest.fixture(scope="module")
def scored(spark):
    """Two models' probabilities over 3 classes, labels of skewed frequency, and one row without."""
    rng = np.random.default_rng(0)
    a, b = rng.dirichlet([1, 1, 1], 40), rng.dirichlet([1, 1, 1], 40)
    labels = [1.0] * 30 + [0.0] * 6 + [2.0] * 4
    rows = [(i, labels[i], Vectors.dense(a[i]), Vectors.dense(b[i])) for i in range(40)]
    rows.append((40, None, None, Vectors.dense(b[0])))
    return spark.createDataFrame(rows, SCHEMA), a, b


def test_prior_bias_is_the_count_ratio_to_a_power():
    assert prior_bias([30, 6, 3], 1.0) == [1.0, 5.0, 10.0]
    assert prior_bias([30, 6, 0], 0.5) == [1.0, pytest.approx(5 ** 0.5), 1.0]  # an unseen class is not moved
    assert prior_bias([30, 6, 3], 0.0) == [1.0, 1.0, 1.0]


@pytest.mark.connect
def test_blend_is_the_weighted_geometric_mean_with_the_prior_correction(scored, tmp_path):
    df, a, b = scored
    model = ProbabilityBlend(probabilityCols=["a", "b"], weights=[0.4, 0.6], priorCorrection=0.6).fit(df)
    assert model.getClassBias() == pytest.approx([(30 / 6) ** 0.6, 1.0, (30 / 4) ** 0.6])
    assert model.labels_ == ["0", "1", "2"]  # no ML attributes on the label column: the indices
    rows = sorted(model.transform(df).collect(), key=lambda r: r.id)
    expected = blend_probabilities([a, b], [0.4, 0.6], model.getClassBias())
    by_hand = (a ** 0.4) * (b ** 0.6) * np.asarray(model.getClassBias())
    np.testing.assert_allclose(expected, by_hand / by_hand.sum(axis=1, keepdims=True), atol=1e-12)
    got = np.array([r.probability.toArray() for r in rows[:40]])
    np.testing.assert_allclose(got, expected, atol=1e-12)
    np.testing.assert_allclose(np.array([r.rawPrediction.toArray() for r in rows[:40]]), np.log(expected), atol=1e-9)
    assert [r.prediction for r in rows[:40]] == expected.argmax(axis=1).astype(float).tolist()
    assert rows[40].prediction is None and rows[40].probability is None  # a missing input gives no output
    model.write().overwrite().save(str(tmp_path / "blend"))
    loaded = ProbabilityBlendModel.load(str(tmp_path / "blend"))
    assert loaded.uid == model.uid and loaded.getClassBias() == model.getClassBias()
    again = sorted(loaded.transform(df).collect(), key=lambda r: r.id)
    assert [r.probability for r in again] == [r.probability for r in rows]


def test_blend_refuses_what_it_cannot_combine(scored):
    df, _, _ = scored
    with pytest.raises(ValueError, match="needs probabilityCols, two or more"):
        ProbabilityBlend(probabilityCols=["a"])
    with pytest.raises(ValueError, match="weights to be 2 finite numbers >= 0"):
        ProbabilityBlend(probabilityCols=["a", "b"], weights=[1.0])
    with pytest.raises(ValueError, match="weights to be 2 finite numbers >= 0"):
        ProbabilityBlend(probabilityCols=["a", "b"], weights=[0.0, 0.0])
    with pytest.raises(ValueError, match="priorCorrection to be a finite number >= 0"):
        ProbabilityBlend(probabilityCols=["a", "b"], priorCorrection=-1.0)
    with pytest.raises(TypeError, match="unknown name"):
        ProbabilityBlend(probabilityCol=["a", "b"], weight=[1.0])
    with pytest.raises(ValueError, match="labels to be class indices"):
        ProbabilityBlend(probabilityCols=["a", "b"]).fit(df.withColumn("label", df.label + 0.5))
    with pytest.raises(ValueError, match=r"labels to be class indices 0, 1, ... Received: \['0.0', '1.0', '2.0'\]"):
        ProbabilityBlend(probabilityCols=["a", "b"]).fit(df.withColumn("label", df.label.cast("string")))
    model = ProbabilityBlend(probabilityCols=["a", "b"]).fit(df)
    with pytest.raises(ValueError, match=r"the input has no column\(s\) \['b'\]"):
        model.transform(df.drop("b"))
    short = df.sparkSession.createDataFrame([(99, 1.0, Vectors.dense([0.2, 0.3, 0.5]), Vectors.dense([0.5, 0.5]))],
                                            SCHEMA)
    two = df.union(short)
    with pytest.raises(Exception, match="expects 3 classes in each of"):
        model.transform(two).collect()


@pytest.fixture(scope="module")
def journal(spark):
    from pyspark.ml.feature import StringIndexer

    from skol_spark.skol.datasets import read_yedda, with_three_classes

    df, _ = read_yedda(spark, JOURNALS, ["Mycotaxon/Vol117"], unclosed="skip")
    df = with_three_classes(df)
    indexed = StringIndexer(inputCol="label3", outputCol="label_index", stringOrderType="alphabetAsc").fit(df)
    df = indexed.transform(df).cache()
    return df.filter("doc_id < 'Mycotaxon/Vol117/s2'"), df.filter("doc_id >= 'Mycotaxon/Vol117/s2'")


@needs_data
def test_feature_crf_gives_the_baselines_marginals_on_every_row_and_round_trips(spark, journal, tmp_path):
    from skol_spark.skol.crf_baseline import FEATURE_CRF, collect_documents, document_features
    from skol_spark.skol.feature_crf import FeatureCRF, FeatureCRFModel

    train, test = journal
    model = FeatureCRF(labelCol="label_index", maxIter=30).fit(train)
    assert model.getNumClasses() == 3
    out = model.transform(test).select("doc_id", "line_number", "label_index", "crfPrediction", "crfProbability")
    rows = {(r.doc_id, r.line_number): r for r in out.collect()}
    assert len(rows) == test.count()
    # The same marginals as the tagger applied to each whole document on the driver.
    documents = collect_documents(test, labelCol="label_index")
    for doc, positions, texts in zip(documents.doc_ids, documents.positions, documents.texts):
        expected = model.marginals(texts)
        got = np.array([rows[(doc, p)].crfProbability.toArray() for p in positions])
        np.testing.assert_allclose(got, expected, atol=1e-12)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-9)
        assert [rows[(doc, p)].crfPrediction for p in positions] == expected.argmax(axis=1).astype(float).tolist()
    assert len(document_features(documents.texts[0], FEATURE_CRF)) == len(documents.texts[0])
    accuracy = np.mean([r.crfPrediction == r.label_index for r in rows.values()])
    assert accuracy > 0.85, accuracy
    # Documents split across Arrow batches are labelled whole.
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "7")
    try:
        small = {(r.doc_id, r.line_number): r.crfProbability for r in model.transform(test).collect()}
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    assert small == {key: r.crfProbability for key, r in rows.items()}
    model.write().overwrite().save(str(tmp_path / "crf"))
    loaded = FeatureCRFModel.load(str(tmp_path / "crf"))
    again = {(r.doc_id, r.line_number): r.crfProbability for r in loaded.transform(test).collect()}
    assert again == {key: r.crfProbability for key, r in rows.items()}


@needs_data
def test_feature_crf_refuses_labels_that_are_not_class_indices(journal):
    from skol_spark.skol.feature_crf import FeatureCRF

    train, _ = journal
    with pytest.raises(ValueError, match="labels to be class indices"):
        FeatureCRF(labelCol="label_index", maxIter=1).fit(train.withColumn("label_index", train.label_index - 1))
    with pytest.raises(ValueError, match=r"labels to be class indices 0, 1, ... Received: \['Description'"):
        FeatureCRF(labelCol="label3", maxIter=1).fit(train)
    with pytest.raises(ValueError, match=r"the input has no column\(s\) \['paragraph'\]"):
        FeatureCRF(labelCol="label_index", textCol="paragraph").fit(train)
    with pytest.raises(ValueError, match="maxIter >= 1"):
        FeatureCRF(labelCol="label_index", maxIter=0).fit(train)
    with pytest.raises(ValueError, match="has none"):
        FeatureCRF(labelCol="label_index").fit(train.where("label_index IS NULL"))
