"""The decision rule: Spark ML's ``thresholds`` on the model, and thresholds tuned on validation rows."""

import numpy as np
import pytest
from conftest import assert_same_predictions, model_of, parts_of, predictions

from skol_spark import BiLSTMClassificationModel, BiLSTMClassifier
from skol_spark.core.thresholds import check_thresholds, macro_f1, predict_with_thresholds, tune_thresholds

# -- the rule, in numpy ------------------------------------------------------------------------


def test_the_prediction_is_the_largest_probability_over_threshold():
    probs = np.array([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.0, 0.9, 0.1]])
    assert predict_with_thresholds(probs).tolist() == [0, 1, 1]
    assert predict_with_thresholds(probs, None).tolist() == [0, 1, 1]
    assert predict_with_thresholds(probs, [1.0, 1.0, 1.0]).tolist() == [0, 1, 1]
    # p / t: 0.2 / 0.25 > 0.5 in the first row, 0.3 / 0.25 > 0.5 in the second, 0.1 / 0.25 < 0.9 in the third.
    assert predict_with_thresholds(probs, [1.0, 1.0, 0.25]).tolist() == [2, 2, 1]
    # A zero threshold wins wherever its probability is above 0 (Spark's p / 0 = infinity).
    assert predict_with_thresholds(probs, [0.0, 1.0, 1.0]).tolist() == [0, 0, 1]


def test_thresholds_follow_spark_rules():
    assert check_thresholds([1, 2, 0]) == [1.0, 2.0, 0.0]
    for bad in ([], [-0.1, 1.0], [0.0, 0.0, 1.0], [float("nan"), 1.0], [float("inf"), 1.0]):
        with pytest.raises(ValueError, match="Expected thresholds to be finite values >= 0 with at most one 0"):
            check_thresholds(bad)
    with pytest.raises(ValueError, match=r"Expected one threshold per class \(3\). Received: 2 thresholds"):
        check_thresholds([0.5, 0.5], num_classes=3)


def test_macro_f1_counts_only_classes_that_occur():
    y = np.array([0, 0, 1, 1])
    assert macro_f1(y, np.array([0, 0, 1, 1]), 3) == (1.0, 1.0)
    f1, accuracy = macro_f1(y, np.array([0, 1, 1, 1]), 3)
    assert accuracy == 0.75 and f1 == pytest.approx((2 / 3 + 0.8) / 2)


def _over_predicting(n=3000, seed=0):
    """Probabilities of a model that favours class 1, as class weights make a network do."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    probs = rng.dirichlet([1, 1, 1], n)
    probs[np.arange(n), y] += 0.5
    probs[:, 1] += 0.6
    return probs / probs.sum(axis=1, keepdims=True), y


def test_tuning_recovers_what_a_biased_model_gives_away():
    probs, y = _over_predicting()
    thresholds, before, after = tune_thresholds(probs, y, 3)
    assert after > before + 0.1
    assert after == pytest.approx(macro_f1(y, predict_with_thresholds(probs, thresholds), 3)[0])
    assert sum(thresholds) == pytest.approx(1.0)
    assert thresholds[1] == max(thresholds)  # the favoured class must clear a higher bar
    # Tuned on one sample, the thresholds also help on another (they are not noise fitted).
    other, y_other = _over_predicting(seed=1)
    assert macro_f1(y_other, predict_with_thresholds(other, thresholds), 3)[0] > (
        macro_f1(y_other, other.argmax(axis=1), 3)[0] + 0.1
    )


def test_tuning_leaves_a_perfect_decision_alone():
    probs, y = _over_predicting()
    truth = np.eye(3)[y] * 0.8 + 0.2 / 3
    thresholds, before, after = tune_thresholds(truth, y, 3)
    assert before == after == 1.0
    assert np.allclose(thresholds, 1 / 3)


# -- on the model ------------------------------------------------------------------------------


def _rows(model, df):
    """{(doc_id, line_number): (probability, prediction)}, in key order."""
    rows = model.transform(df).select("doc_id", "line_number", "probability", "prediction").collect()
    by_key = {(r.doc_id, r.line_number): (np.asarray(r.probability.toArray()), r.prediction) for r in rows}
    return {key: by_key[key] for key in sorted(by_key)}


def test_model_thresholds_change_the_prediction_only(fitted, test_df):
    plain = _rows(fitted, test_df)
    thresholds = [1.0, 0.05, 1.0]
    tuned = fitted.copy().setThresholds(thresholds)
    assert not fitted.isSet(fitted.thresholds)  # copy() left the original alone
    shifted = _rows(tuned, test_df)
    assert list(plain) == list(shifted)
    probs = np.stack([p for p, _ in plain.values()])
    assert np.allclose(probs, np.stack([p for p, _ in shifted.values()]))
    expected = predict_with_thresholds(probs, thresholds)
    assert [pred for _, pred in shifted.values()] == expected.astype(float).tolist()
    assert (expected != probs.argmax(axis=1)).any()  # the thresholds did change some decisions
    cleared = _rows(tuned.clearThresholds(), test_df)
    assert [pred for _, pred in cleared.values()] == [pred for _, pred in plain.values()]


def test_model_thresholds_need_one_per_class(fitted, test_df):
    with pytest.raises(ValueError, match=r"Expected one threshold per class \(3\). Received: 2 thresholds"):
        fitted.copy().setThresholds([0.5, 0.5]).transform(test_df)
    with pytest.raises(ValueError, match="Expected thresholds to be finite values >= 0 with at most one 0"):
        fitted.copy().setThresholds([0.0, 0.0, 1.0])


def test_estimator_thresholds_are_checked_before_training_and_copied(train_df, test_df, tiny_params):
    with pytest.raises(ValueError, match=r"Expected one threshold per class \(3\)"):
        BiLSTMClassifier(thresholds=[1.0, 1.0], **tiny_params).fit(train_df)
    model = BiLSTMClassifier(thresholds=[1.0, 0.5, 2.0], **{**tiny_params, "epochs": 1}).fit(train_df)
    assert model.getThresholds() == [1.0, 0.5, 2.0]


def test_tuning_needs_validation_documents_and_no_explicit_thresholds(train_df, tiny_params):
    with pytest.raises(ValueError, match="Expected validationFraction > 0 with tuneThresholds=True"):
        BiLSTMClassifier(tuneThresholds=True, validationFraction=0.0, **tiny_params).fit(train_df)
    with pytest.raises(ValueError, match="Expected either thresholds or tuneThresholds=True, not both"):
        BiLSTMClassifier(
            tuneThresholds=True, validationFraction=0.2, thresholds=[1.0, 1.0, 1.0], **tiny_params
        ).fit(train_df)
    assert BiLSTMClassifier().getTuneThresholds() is False


@pytest.fixture(scope="module")
def tuned(train_df, tiny_params):
    # Strong class weights and few epochs: a model that over-predicts the rare classes.
    return BiLSTMClassifier(
        tuneThresholds=True, validationFraction=0.25, weightStrategy="inverse", **tiny_params
    ).fit(train_df)


def test_fit_tunes_thresholds_on_the_validation_rows(spark, tuned, train_df, tiny_params):
    from skol_spark.fit.training import split_validation

    thresholds = tuned.getThresholds()
    assert len(thresholds) == 3 and sum(thresholds) == pytest.approx(1.0)
    # Same split, same seed: the thresholds are those that maximise macro-F1 on the held-out
    # runs, each predicted as a document of its own (as fit predicted them).
    keys = sorted((r.doc_id, r.line_number) for r in train_df.select("doc_id", "line_number").collect())
    docs = sorted({d for d, _ in keys})
    lengths = np.array([sum(1 for d, _ in keys if d == doc) for doc in docs])
    split = split_validation(lengths, 0.25, tiny_params["seed"], tiny_params["windowSize"])
    run_of = {}
    for run, (offset, length) in enumerate(zip(split.val_offsets, split.val_lengths)):
        for i in range(offset, offset + length):
            run_of[keys[i]] = f"run-{run}"
    runs = spark.createDataFrame([(d, p, r) for (d, p), r in run_of.items()], "doc_id string, line_number int, run string")
    validation = train_df.join(runs, ["doc_id", "line_number"]).drop("doc_id").withColumnRenamed("run", "doc_id")
    rows = tuned.transform(validation).select("label", "probability").collect()
    assert len(rows) == int(split.val_lengths.sum())
    y = np.array([int(r.label) for r in rows])
    probs = np.stack([r.probability.toArray() for r in rows])
    tuned_f1 = macro_f1(y, predict_with_thresholds(probs, thresholds), 3)[0]
    assert tuned_f1 >= macro_f1(y, probs.argmax(axis=1), 3)[0]
    assert tuned_f1 == pytest.approx(tune_thresholds(probs, y, 3)[2], abs=0.01)


def test_tuned_thresholds_survive_every_store(tuned, test_df, tmp_path, redis_url):
    from pyspark.ml import Pipeline, PipelineModel

    expected = _rows(tuned, test_df)
    tuned.write().overwrite().save(str(tmp_path / "model"))
    PipelineModel(stages=[tuned]).write().overwrite().save(str(tmp_path / "pipeline"))
    tuned.saveToRedis(redis_url, "skol:thresholds")
    loaded = [
        BiLSTMClassificationModel.load(str(tmp_path / "model")),
        PipelineModel.load(str(tmp_path / "pipeline")).stages[0],
        BiLSTMClassificationModel.loadFromRedis(redis_url, "skol:thresholds"),
        model_of(*parts_of(tuned)),
    ]
    for model in loaded:
        assert model.getThresholds() == tuned.getThresholds()
        got = _rows(model, test_df)
        assert_same_predictions({k: v[0] for k, v in expected.items()}, {k: v[0] for k, v in got.items()})
        assert {k: v[1] for k, v in got.items()} == {k: v[1] for k, v in expected.items()}
    # The estimator's Params round-trip too (a Pipeline of the unfitted stage).
    Pipeline(stages=[BiLSTMClassifier(tuneThresholds=True, validationFraction=0.1)]).write().overwrite().save(
        str(tmp_path / "estimator")
    )
    stage = Pipeline.load(str(tmp_path / "estimator")).getStages()[0]
    assert stage.getTuneThresholds() is True and stage.getValidationFraction() == 0.1


def test_models_saved_without_thresholds_predict_by_argmax(fitted, test_df):
    assert not fitted.isDefined(fitted.thresholds)
    plain = _rows(fitted, test_df)
    assert all(pred == float(np.argmax(p)) for p, pred in plain.values())
    assert predictions(fitted, test_df).keys() == plain.keys()
