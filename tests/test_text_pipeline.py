"""The text features: token shapes, nomenclatural cues, layout; all stock Spark stages that save and load."""

import numpy as np
import pytest
from pyspark.ml import Pipeline, PipelineModel

from skol_spark.skol.text_pipeline import (
    CUE_COLUMNS,
    DEFAULT_NUM_SHAPE_FEATURES,
    LAYOUT_COLUMNS,
    shape_stages,
    text_feature_stages,
)

ROWS = [
    ("Agaricus niger Smith, sp. nov. MycoBank MB 512345 (Fig. 3) 1887, 1990. ≡ Boletus niger (Fr.) Sacc.",),
    ("= Boletus A. Smith, comb. nov., nom. illeg.\nsecond line",),
    ("Pileus 2-5 cm broad, brown (Smith et al. 2001); gen. nov.",),
    ("We thank the curators",),
]


@pytest.fixture(scope="module")
def paragraphs(spark):
    return spark.createDataFrame(ROWS, ["text"])


def _fit(df, **options):
    return Pipeline(stages=text_feature_stages(numFeatures=64, **options)).fit(df)


def test_shapes_keep_case_digits_and_punctuation(paragraphs):
    out = _fit(paragraphs).transform(paragraphs).select("shapes", "shape_terms").collect()
    first = out[0].shapes
    assert first[:6] == ["Xxxxx", "xxxx", "Xxxxx", ",", "xx.", "xxx."]  # Agaricus niger Smith , sp. nov.
    assert "XX" in first and "dddd" in first and "(" in first and "Xxx." in first and "≡" in first
    assert out[1].shapes[:3] == ["=", "Xxxxx", "X."]
    assert out[3].shapes == ["Xx", "xxxx", "xxx", "xxxx"]  # runs cut to four: "thank" -> "xxxx"
    assert "Xx xxxx" in out[3].shape_terms  # shape bigrams, beside the shapes
    assert "Xx xxxx xxx" in out[3].shape_terms  # and trigrams (DEFAULT_SHAPE_NGRAMS = 3)


@pytest.mark.parametrize("ngrams, terms", [
    (1, ["Xx", "xxxx", "xxx", "xxxx"]),
    (2, ["Xx", "xxxx", "xxx", "xxxx", "Xx xxxx", "xxxx xxx", "xxx xxxx"]),
    (4, ["Xx", "xxxx", "xxx", "xxxx", "Xx xxxx", "xxxx xxx", "xxx xxxx", "Xx xxxx xxx", "xxxx xxx xxxx",
         "Xx xxxx xxx xxxx"]),
])
def test_shape_terms_are_the_runs_of_up_to_shape_ngrams(paragraphs, ngrams, terms):
    out = _fit(paragraphs, shapeNgrams=ngrams).transform(paragraphs).select("shape_terms").collect()
    assert out[3].shape_terms == terms  # "We thank the curators"


def test_cues_mark_nomenclature_and_citations(paragraphs):
    rows = _fit(paragraphs).transform(paragraphs).select(*CUE_COLUMNS).collect()
    on = [{c for c in CUE_COLUMNS if r[c] > 0} for r in rows]
    assert on[0] == {"cue_year", "cue_sp_nov", "cue_mycobank", "cue_fig", "cue_equiv", "cue_author_parens",
                     "cue_years"}
    assert on[1] == {"cue_starts_equals", "cue_comb_nov", "cue_nom_status"}
    assert on[2] == {"cue_year", "cue_et_al", "cue_gen_nov", "cue_years"}
    assert on[3] == set()
    assert rows[0].cue_years == pytest.approx(np.log1p(2) / 3)
    assert all(r[c] in (0.0, 1.0) for r in rows for c in CUE_COLUMNS if c != "cue_years")


def test_feature_width_follows_the_options(paragraphs):
    def width(**options):
        return len(_fit(paragraphs, **options).transform(paragraphs).first().features)

    cues, layout = len(CUE_COLUMNS), len(LAYOUT_COLUMNS)
    assert width() == 64 + DEFAULT_NUM_SHAPE_FEATURES + cues + layout
    assert width(numShapeFeatures=32) == 64 + 32 + cues + layout
    assert width(shape=False, cues=False) == 64 + layout  # the earlier feature set
    assert width(shape=False, cues=False, layout=False) == 64
    assert width(cues=False, layout=False) == 64 + DEFAULT_NUM_SHAPE_FEATURES


def test_refuses_an_empty_shape_space():
    with pytest.raises(ValueError, match="Expected numShapeFeatures >= 1. Received: 0"):
        text_feature_stages(numShapeFeatures=0)


def test_refuses_shape_runs_shorter_than_one():
    with pytest.raises(ValueError, match="Expected shapeNgrams >= 1. Received: 0"):
        text_feature_stages(shapeNgrams=0)
    with pytest.raises(ValueError, match="Expected ngrams >= 1. Received: 0"):
        shape_stages(ngrams=0)


@pytest.mark.parametrize("options", [{}, {"shape": False, "cues": False}, {"shapeNgrams": 1}])
def test_fitted_features_save_and_load(paragraphs, tmp_path, options):
    model = _fit(paragraphs, **options)
    path = str(tmp_path / "features")
    model.write().overwrite().save(path)
    before = [r.features.toArray() for r in model.transform(paragraphs).select("features").collect()]
    after = [r.features.toArray() for r in PipelineModel.load(path).transform(paragraphs).select("features").collect()]
    assert len(before) == len(after) == len(ROWS)
    assert all(np.allclose(a, b) for a, b in zip(before, after))


def test_skol_pipeline_passes_classifier_params_through_and_keeps_the_estimators_defaults(spark):
    from skol_spark import BiLSTMClassifier
    from skol_spark.skol.text_pipeline import DEFAULT_NUM_FEATURES, skol_pipeline

    stages = skol_pipeline(crf=False).getStages()
    assert [s.getNumFeatures() for s in stages if s.hasParam("numFeatures")][0] == DEFAULT_NUM_FEATURES
    bilstm, plain = stages[-1], BiLSTMClassifier()
    assert {p.name for p in bilstm._paramMap} == {"featuresCol", "labelCol"}
    for param in plain.params:
        if plain.hasDefault(param) and not bilstm.isSet(param.name):
            assert bilstm.getOrDefault(param.name) == plain.getOrDefault(param), param.name
    tuned = skol_pipeline(epochs=2, outputLayer="crf", crf=False).getStages()[-1]
    assert {p.name: v for p, v in tuned._paramMap.items()} == {
        "featuresCol": "features", "labelCol": "label_index", "epochs": 2, "outputLayer": "crf"
    }


def test_skol_pipeline_puts_the_crf_beside_the_bilstm_and_blends_them_into_the_output_columns(spark):
    from skol_spark import BiLSTMClassifier
    from skol_spark.skol.feature_crf import FeatureCRF
    from skol_spark.skol.text_pipeline import DEFAULT_CRF_WEIGHT, DEFAULT_PRIOR_CORRECTION, skol_pipeline
    from skol_spark.stages.blend import ProbabilityBlend

    *_, crf, bilstm, blend = skol_pipeline(epochs=2, probabilityCol="p", docIdCol="doc").getStages()
    assert isinstance(crf, FeatureCRF) and isinstance(bilstm, BiLSTMClassifier) and isinstance(blend, ProbabilityBlend)
    assert (bilstm.getEpochs(), bilstm.getProbabilityCol(), bilstm.getPredictionCol()) == (
        2, "bilstmProbability", "bilstmPrediction")
    assert crf.getDocIdCol() == "doc" and crf.getLabelCol() == blend.getLabelCol() == "label_index"
    assert blend.getProbabilityCols() == ["bilstmProbability", "crfProbability"]
    assert blend.getWeights() == [1 - DEFAULT_CRF_WEIGHT, DEFAULT_CRF_WEIGHT]
    assert blend.getPriorCorrection() == DEFAULT_PRIOR_CORRECTION
    assert (blend.getProbabilityCol(), blend.getPredictionCol()) == ("p", "prediction")
    with pytest.raises(ValueError, match=r"Expected crfWeight to be in \[0, 1\]"):
        skol_pipeline(crfWeight=1.5)


def test_word_terms_are_bigrams_suffixes_and_first_and_last_words(paragraphs):
    out = _fit(paragraphs, wordTerms=True).transform(paragraphs).select("word_terms").collect()
    terms = out[2].word_terms  # "Pileus 2-5 cm broad, brown (Smith et al. 2001); gen. nov."
    assert terms[:3] == ["pileus 2", "2 5", "5 cm"]
    assert {"s3:eus", "s4:leus", "s3:oad", "s4:road", "s3:own", "s4:rown", "s3:ith", "s4:mith"} <= set(terms)
    assert "s3:cm" not in terms and not any(t.startswith("s3:") and t.endswith("001") for t in terms)
    assert terms[-2:] == ["first:pileus", "last:nov"]
    assert out[3].word_terms == ["we thank", "thank the", "the curators", "s3:ank", "s3:ors", "s4:hank", "s4:tors",
                                 "first:we", "last:curators"]


def test_word_terms_of_an_empty_paragraph_are_empty(spark):
    df = spark.createDataFrame([("",), ("...",), ("Agaricus",)], ["text"])
    rows = Pipeline(stages=text_feature_stages(numFeatures=16, wordTerms=True)).fit(df).transform(df).collect()
    assert [r.word_terms for r in rows] == [[], [], ["s3:cus", "s4:icus", "first:agaricus", "last:agaricus"]]


def test_taxon_cues_count_binomials_citations_ranges_and_flag_types(spark):
    from skol_spark.skol.text_pipeline import TAXON_CUE_COLUMNS

    df = spark.createDataFrame([
        ("Holotype: Agaricus niger (Fr.) Smith, Boletus albus; spores 5-7 × 3-4 µm, 2,5–3 μm. Etymology: dark.",),
        ("Specimens examined: Amanita muscaria, Amanita rubra, Amanita alba, Amanita nova, Amanita vera.",),
        ("We thank the curators",),
    ], ["text"])
    rows = Pipeline(stages=text_feature_stages(numFeatures=16, taxonCues=True)).fit(df).transform(df).collect()
    first, second, third = ({c: r[c] for c in TAXON_CUE_COLUMNS} for r in rows)
    assert first == {"cue_binomials": 0.5, "cue_citations": 0.25, "cue_ranges": 0.75, "cue_type": 1.0,
                     "cue_etymology": 1.0, "cue_examined": 0.0, "cue_micrometres": 1.0, "cue_times": 1.0}
    assert second["cue_binomials"] == 1.0 and second["cue_examined"] == 1.0  # five binomials, capped at 4
    assert set(third.values()) == {0.0}


def test_position_and_relative_layout_look_at_the_whole_document(spark):
    from skol_spark.skol.text_pipeline import RELATIVE_LAYOUT_COLUMNS

    long = "a long paragraph with many words\n" * 4
    df = spark.createDataFrame(
        [("a", 10, "short"), ("a", 11, long), ("a", 12, "short"), ("b", 0, "alone")],
        ["doc_id", "line_number", "text"],
    )
    stages = text_feature_stages(numFeatures=16, position=True, relativeLayout=True)
    rows = {(r.doc_id, r.line_number): r for r in Pipeline(stages=stages).fit(df).transform(df).collect()}
    assert [rows["a", p].position_relative for p in (10, 11, 12)] == [0.0, 0.5, 1.0]
    assert rows["b", 0].position_relative == 0.0
    length = np.log1p([5, len(long), 5])
    z = (length - length.mean()) / length.std() / 3
    assert [rows["a", p].layout_rel_length for p in (10, 11, 12)] == pytest.approx(z)
    assert rows["a", 11].layout_rel_lines > 0 > rows["a", 10].layout_rel_lines
    assert all(-1 <= rows[k][c] <= 1 for k in rows for c in RELATIVE_LAYOUT_COLUMNS)
    assert all(rows["b", 0][c] == 0.0 for c in RELATIVE_LAYOUT_COLUMNS)  # one paragraph: no spread


def test_word_vectors_are_fitted_on_the_training_text(spark):
    df = spark.createDataFrame(ROWS * 5, ["text"])  # Word2Vec keeps words seen 5 times or more
    model = _fit(df, wordVectors=8, shape=False, cues=False, layout=False)
    word2vec = [s for s in model.stages if type(s).__name__ == "Word2VecModel"][0]
    vocabulary = {r.word for r in word2vec.getVectors().collect()}
    assert word2vec.getVectorSize() == 8 and {"agaricus", "curators", "pileus"} <= vocabulary
    rows = model.transform(df).select("word_vector", "features").collect()
    assert len(rows[0].features) == 64 + 8 and np.allclose(rows[0].features.toArray()[64:], rows[0].word_vector)


def test_feature_width_with_the_optional_inputs(paragraphs):
    from skol_spark.skol.text_pipeline import RELATIVE_LAYOUT_COLUMNS, TAXON_CUE_COLUMNS

    base = len(_fit(paragraphs, shape=False).transform(paragraphs).first().features)
    df = paragraphs.selectExpr("'doc' AS doc_id", "monotonically_increasing_id() AS line_number", "text")
    full = _fit(df, shape=False, wordTerms=True, numWordTermFeatures=32, taxonCues=True, position=True,
                relativeLayout=True)
    assert len(full.transform(df).first().features) == (
        base + 32 + len(TAXON_CUE_COLUMNS) + 1 + len(RELATIVE_LAYOUT_COLUMNS)
    )


def test_refuses_bad_optional_inputs():
    with pytest.raises(ValueError, match="Expected numWordTermFeatures >= 1. Received: 0"):
        text_feature_stages(wordTerms=True, numWordTermFeatures=0)
    with pytest.raises(ValueError, match=r"Expected wordVectors >= 0 \(0: no word vectors\). Received: -1"):
        text_feature_stages(wordVectors=-1)


def test_optional_inputs_save_and_load(spark, tmp_path):
    df = spark.createDataFrame([(f"d{i % 2}", i, text) for i, (text,) in enumerate(ROWS * 5)],
                               ["doc_id", "line_number", "text"])
    model = _fit(df, wordTerms=True, taxonCues=True, position=True, relativeLayout=True, wordVectors=4)
    path = str(tmp_path / "features")
    model.write().overwrite().save(path)
    order = ["doc_id", "line_number"]
    before = [r.features.toArray() for r in model.transform(df).orderBy(*order).select("features").collect()]
    after = [r.features.toArray()
             for r in PipelineModel.load(path).transform(df).orderBy(*order).select("features").collect()]
    assert len(before) == len(ROWS) * 5 and all(np.allclose(a, b) for a, b in zip(before, after))
