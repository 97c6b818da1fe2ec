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

    stages = skol_pipeline().getStages()
    assert [s.getNumFeatures() for s in stages if s.hasParam("numFeatures")][0] == DEFAULT_NUM_FEATURES
    bilstm, plain = stages[-1], BiLSTMClassifier()
    assert {p.name for p in bilstm._paramMap} == {"featuresCol", "labelCol"}
    for param in plain.params:
        if plain.hasDefault(param) and not bilstm.isSet(param.name):
            assert bilstm.getOrDefault(param.name) == plain.getOrDefault(param), param.name
    tuned = skol_pipeline(epochs=2, outputLayer="crf").getStages()[-1]
    assert {p.name: v for p, v in tuned._paramMap.items()} == {
        "featuresCol": "features", "labelCol": "label_index", "epochs": 2, "outputLayer": "crf"
    }
