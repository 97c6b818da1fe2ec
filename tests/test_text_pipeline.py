"""The text features: token shapes, nomenclatural cues, layout; all stock Spark stages that save and load."""

import numpy as np
import pytest
from pyspark.ml import Pipeline, PipelineModel

from skol_spark.text_pipeline import (
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


def test_skol_pipeline_uses_the_chosen_settings_unless_told_otherwise(spark):
    from skol_spark.text_pipeline import DEFAULT_CLASSIFIER, DEFAULT_NUM_FEATURES, skol_pipeline

    stages = skol_pipeline().getStages()
    assert [s.getNumFeatures() for s in stages if s.hasParam("numFeatures")][0] == DEFAULT_NUM_FEATURES
    bilstm = stages[-1]
    for param, value in DEFAULT_CLASSIFIER.items():
        assert bilstm.getOrDefault(param) == value, param
    assert skol_pipeline(epochs=2).getStages()[-1].getEpochs() == 2


@pytest.mark.parametrize(
    "overrides", [dict(outputLayer="crf"), dict(embeddingSize=0), dict(numWorkers=2)], ids=["crf", "no-projection", "workers"]
)
def test_an_ensemble_falls_back_to_one_network_where_it_cannot_be(spark, overrides):
    from skol_spark.estimator import BiLSTMClassifier
    from skol_spark.text_pipeline import DEFAULT_CLASSIFIER, classifier_settings, skol_pipeline

    assert DEFAULT_CLASSIFIER["ensembleSize"] > 1
    settings = classifier_settings(**overrides)
    assert settings == {**DEFAULT_CLASSIFIER, **overrides, "ensembleSize": 1}
    BiLSTMClassifier(**settings)._check_training_params()  # what fit checks first: no conflict left
    assert skol_pipeline(**overrides).getStages()[-1].getEnsembleSize() == 1
    # An ensemble asked for is kept, and the estimator names the conflict.
    asked = classifier_settings(ensembleSize=2, **overrides)
    assert asked["ensembleSize"] == 2
    with pytest.raises(ValueError, match=r"Expected (outputLayer='softmax' and embeddingSize > 0|numWorkers=1) with ensembleSize > 1"):
        BiLSTMClassifier(**asked)._check_training_params()


@pytest.mark.parametrize("overrides", [dict(tuneThresholds=True), dict(earlyStoppingPatience=2)])
def test_held_out_rows_come_with_the_options_that_need_them(overrides):
    from skol_spark.estimator import BiLSTMClassifier
    from skol_spark.text_pipeline import DEFAULT_CLASSIFIER, HELD_OUT_FRACTION, classifier_settings

    assert DEFAULT_CLASSIFIER["validationFraction"] == 0.0
    settings = classifier_settings(**overrides)
    assert settings["validationFraction"] == HELD_OUT_FRACTION > 0
    BiLSTMClassifier(**settings)._check_training_params()
    assert classifier_settings(validationFraction=0.25, **overrides)["validationFraction"] == 0.25
    # Named as 0, it stays 0, and the estimator says why that cannot work.
    refused = classifier_settings(validationFraction=0.0, **overrides)
    with pytest.raises(ValueError, match=r"Expected validationFraction > 0 with (tuneThresholds=True|earlyStoppingPatience > 0)"):
        BiLSTMClassifier(**refused)._check_training_params()
