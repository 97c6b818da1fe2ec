"""A whole PipelineModel in Redis (skol_spark.stages.pipeline_store), against a real redis-server.

The Pipeline is SKOL's text one with its 3-class label stage: fitted Spark
feature stages (IDF, StringIndexer, SQL transformers, the assembler), the
feature CRF, a BiLSTM wrapped from an untrained Keras network (no training
needed) and the blend of the two.
"""

from __future__ import annotations

import pytest
from conftest import MODEL_CLASS

from skol_spark.errors import ChecksumMismatchError, ModelExistsError, WrongModelClassError

BLOCKS = [
    ("Agaricus minor{i} sp. nov. Mycotaxon {i}: 12 (1990).", "Nomenclature"),
    ("Pileus {i} mm broad, convex, brown; lamellae free, crowded.", "Description"),
    ("Smith J. ({i}). Fungi of the north. Mycologia 3: 1-9.", "Bibliography"),
    ("We thank the curators of herbarium {i} for loans.", "Misc-exposition"),
]


@pytest.fixture(scope="module")
def text_data(spark):
    rows = [(f"doc{d}", n, text.format(i=d * 10 + n), label)
            for d in range(4) for n, (text, label) in enumerate(BLOCKS * 3)]
    return spark.createDataFrame(rows, "doc_id string, line_number int, text string, label string")


@pytest.fixture(scope="module")
def pipeline(text_data):
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.feature import StringIndexer

    from skol_spark import BiLSTMClassificationModel
    from skol_spark.nn.network import build_network
    from skol_spark.skol.datasets import three_class_labels
    from skol_spark.skol.feature_crf import FeatureCRF
    from skol_spark.skol.text_pipeline import text_feature_stages
    from skol_spark.stages.blend import ProbabilityBlend

    features = Pipeline(stages=[
        three_class_labels("label", "label3"),
        *text_feature_stages("text", "features", numFeatures=32, shape=True, numShapeFeatures=16, minDocFreq=1),
        StringIndexer(inputCol="label3", outputCol="label_index", stringOrderType="alphabetAsc"),
    ]).fit(text_data)
    width = features.transform(text_data).first().features.size
    labels = list(features.stages[-1].labelsArray[0])
    network = build_network(8, width, len(labels), hidden_size=4, num_layers=1, dropout=0.0, seed=5)
    bilstm = BiLSTMClassificationModel.fromKeras(network, labels=labels, labelCol="label_index")
    bilstm.setPredictionCol("bilstmPrediction").setProbabilityCol("bilstmProbability")
    bilstm.setRawPredictionCol("bilstmRawPrediction")
    indexed = features.transform(text_data)
    crf = FeatureCRF(labelCol="label_index", maxIter=5).fit(indexed)
    blend = ProbabilityBlend(probabilityCols=["bilstmProbability", "crfProbability"], weights=[0.4, 0.6],
                             priorCorrection=0.6, labelCol="label_index").fit(indexed)
    return PipelineModel(stages=[*features.stages, crf, bilstm, blend])


def _probabilities(model, df):
    rows = model.transform(df).select("doc_id", "line_number", "probability").collect()
    return {(r.doc_id, r.line_number): r.probability.toArray().tolist() for r in rows}


def test_a_text_pipeline_round_trips_through_redis_with_equal_predictions(pipeline, text_data, redis_url):
    from pyspark.ml.feature import IDFModel, StringIndexerModel

    from skol_spark.stages.pipeline_store import load_model_from_redis, load_pipeline_from_redis, save_pipeline_to_redis

    kinds = {type(stage).__name__ for stage in pipeline.stages}
    assert {"MergeLabels", "IDFModel", "StringIndexerModel", "SQLTransformer", "VectorAssembler", "FeatureCRFModel",
            "ProbabilityBlendModel"} <= kinds
    save_pipeline_to_redis(pipeline, redis_url, "pipeline:text", chunkBytes=4096)  # several chunks
    loaded = load_pipeline_from_redis(redis_url, "pipeline:text")
    assert loaded.uid == pipeline.uid
    assert [(type(s).__name__, s.uid) for s in loaded.stages] == [(type(s).__name__, s.uid) for s in pipeline.stages]
    for before, after in zip(pipeline.stages, loaded.stages):
        if isinstance(before, IDFModel):
            assert after.idf == before.idf and after.docFreq == before.docFreq and after.numDocs == before.numDocs
        if isinstance(before, StringIndexerModel):
            assert after.labelsArray == before.labelsArray and after.getInputCol() == before.getInputCol()
    expected = _probabilities(pipeline, text_data)
    assert _probabilities(loaded, text_data) == expected
    assert _probabilities(load_model_from_redis(redis_url, "pipeline:text"), text_data) == expected
    unlabelled = text_data.drop("label")  # the label stages pass rows without labels
    assert _probabilities(loaded, unlabelled) == expected


def test_the_stored_pipeline_is_checked_and_keeps_the_stores_rules(pipeline, redis_url):
    import redis

    from skol_spark import BiLSTMClassificationModel
    from skol_spark.stages.pipeline_store import load_pipeline_from_redis, save_pipeline_to_redis

    save_pipeline_to_redis(pipeline, redis_url, "pipeline:checked", chunkBytes=4096)
    with pytest.raises(ModelExistsError, match="'pipeline:checked'"):
        save_pipeline_to_redis(pipeline, redis_url, "pipeline:checked", overwrite=False)
    with pytest.raises(WrongModelClassError, match=f"written by pyspark.ml.pipeline.PipelineModel, not {MODEL_CLASS}"):
        BiLSTMClassificationModel.loadFromRedis(redis_url, "pipeline:checked")
    client = redis.Redis.from_url(redis_url)
    chunk = bytearray(client.hget("pipeline:checked", "chunk:0"))
    chunk[50] ^= 0xFF
    client.hset("pipeline:checked", "chunk:0", bytes(chunk))
    with pytest.raises(ChecksumMismatchError, match="'pipeline:checked'.*SHA-256 does not match"):
        load_pipeline_from_redis(redis_url, "pipeline:checked")


def test_stages_the_store_does_not_know_are_refused_naming_them(spark, text_data, redis_url):
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import CountVectorizer, ElementwiseProduct, Tokenizer
    from pyspark.ml.linalg import Vectors

    from skol_spark.stages.pipeline_store import save_pipeline_to_redis

    tokens = Tokenizer(inputCol="text", outputCol="tokens")
    counts = CountVectorizer(inputCol="tokens", outputCol="tf").fit(tokens.transform(text_data))
    with pytest.raises(ValueError, match=r"stage 1 \(CountVectorizerModel .*fitted state is not one this store knows"):
        save_pipeline_to_redis(PipelineModel(stages=[tokens, counts]), redis_url, "pipeline:refused")
    scaled = ElementwiseProduct(scalingVec=Vectors.dense([2.0]), inputCol="tf", outputCol="scaled")
    with pytest.raises(ValueError, match="its Param scalingVec holds a DenseVector. Save this PipelineModel to a"):
        save_pipeline_to_redis(PipelineModel(stages=[scaled]), redis_url, "pipeline:refused")
