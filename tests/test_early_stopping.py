"""Early stopping on validation macro-F1: it stops, keeps the best epoch's weights, and says which."""

import pytest
from conftest import assert_same_predictions, predictions

from skol_spark import BiLSTMClassifier


def test_early_stopping_needs_a_validation_split(train_df, tiny_params):
    from skol_spark.stages.params import HELD_OUT_FRACTION

    assert BiLSTMClassifier(earlyStoppingPatience=2).effectiveValidationFraction() == HELD_OUT_FRACTION
    with pytest.raises(ValueError, match="Expected validationFraction > 0 with earlyStoppingPatience > 0"):
        BiLSTMClassifier(earlyStoppingPatience=2, validationFraction=0.0, **tiny_params).fit(train_df)
    with pytest.raises(ValueError, match="Expected earlyStoppingPatience to be an integer >= 0"):
        BiLSTMClassifier(earlyStoppingPatience=-1)


def test_early_stopping_is_off_by_default(tiny_params):
    assert BiLSTMClassifier(**tiny_params).getEarlyStoppingPatience() == 0


def test_early_stopping_stops_and_restores_the_best_epoch(train_df, test_df, tiny_params):
    params = {**tiny_params, "epochs": 40, "validationFraction": 0.25}
    model = BiLSTMClassifier(earlyStoppingPatience=2, **params).fit(train_df)
    history = model.history
    ran = len(history["loss"])
    best = int(history["best_epoch"][0])
    scores = history["val_macro_f1"]
    assert len(scores) == ran < 40  # it stopped
    assert ran == best + 2  # two epochs without a better score after the best one
    assert scores[best - 1] == max(scores) and max(scores[: best - 1], default=0) < scores[best - 1]
    # The kept weights are the best epoch's: the same run stopped there predicts the same.
    at_best = BiLSTMClassifier(**{**params, "epochs": best}).fit(train_df)
    assert "best_epoch" not in at_best.history
    assert_same_predictions(predictions(model, test_df), predictions(at_best, test_df))
